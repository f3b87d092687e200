#!/usr/bin/env bash
# check-markers.sh EXPECTED_FILE CONSOLE_LOG
#
# Checks that every line of EXPECTED_FILE (blank lines and lines starting
# with '#' ignored) appears in CONSOLE_LOG as an exact whole line, in the
# given order. Fails on a missing marker, a marker seen only out of order,
# or any panic/trap/FAIL line, and prints expected vs seen.
set -euo pipefail

expected_file=$1
log=$2

mapfile -t expected < <(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$expected_file")
# Console lines, carriage returns stripped.
mapfile -t seen < <(tr -d '\r' < "$log")

fail() {
    echo "marker check FAILED ($expected_file vs $log): $1" >&2
    echo "  expected, in order:" >&2
    printf '    %s\n' "${expected[@]}" >&2
    echo "  marker-like lines seen:" >&2
    grep -E '^(SELFTEST|logd|metricsd|traced|busd|dsoftbus|obsscraped|runtime|init|net|KERNEL)' <(printf '%s\n' "${seen[@]}") \
        | sed 's/^/    /' >&2 || true
    exit 1
}

for line in "${seen[@]}"; do
    case "$line" in
        *"KERNEL PANIC"* | *"KERNEL TRAP"* | *"panicked at"* | "SELFTEST: FAIL"*)
            fail "failure line: $line" ;;
    esac
done

pos=0
n=${#seen[@]}
for marker in "${expected[@]}"; do
    found=-1
    for ((i = pos; i < n; i++)); do
        if [[ "${seen[i]}" == "$marker" ]]; then
            found=$i
            break
        fi
    done
    if ((found < 0)); then
        listed=0
        for m in "${expected[@]}"; do
            [[ "$m" == "$marker" ]] && listed=$((listed + 1))
        done
        if ((listed > 1)); then
            shown=0
            for l in "${seen[@]}"; do
                [[ "$l" == "$marker" ]] && shown=$((shown + 1))
            done
            if ((shown > 0 && shown < listed)); then
                fail "expected again: '$marker' is listed $listed times but appears $shown time(s) on the console"
            fi
        fi
        for ((i = 0; i < pos; i++)); do
            if [[ "${seen[i]}" == "$marker" ]]; then
                fail "out of order: '$marker' appears at console line $((i + 1)), before the previous marker (line $pos)"
            fi
        done
        fail "missing: '$marker' (searched from console line $((pos + 1)))"
    fi
    pos=$((found + 1))
done
echo "markers ok: ${#expected[@]} in order ($(basename "$expected_file"))"
