#!/usr/bin/env bash
# The marker checker must pass a good run and fail every broken one.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

printf 'a: ready\n# comment\n\nSELFTEST: one ok\nSELFTEST: two ok\n' >"$tmp/expected"

check() { # name, expect(pass|fail), console text
    printf '%b' "$3" >"$tmp/log"
    if scripts/check-markers.sh "$tmp/expected" "$tmp/log" >/dev/null 2>&1; then got=pass; else got=fail; fi
    if [ "$got" != "$2" ]; then
        echo "check-markers self-test '$1': expected $2, got $got" >&2
        exit 1
    fi
    echo "check-markers self-test '$1': $got as expected"
}

check good           pass 'boot\r\na: ready\nnoise\nSELFTEST: one ok\nSELFTEST: two ok\n'
check missing        fail 'a: ready\nSELFTEST: two ok\n'
check reordered      fail 'a: ready\nSELFTEST: two ok\nSELFTEST: one ok\n'
check substring-only fail 'a: ready\nxSELFTEST: one ok\nSELFTEST: two ok\n'
check prefix-only    fail 'a: ready\nSELFTEST: one ok!\nSELFTEST: two ok\n'
check panic          fail 'a: ready\nSELFTEST: one ok\nKERNEL PANIC: boom\nSELFTEST: two ok\n'
check selftest-fail  fail 'a: ready\nSELFTEST: one ok\nSELFTEST: FAIL x\nSELFTEST: two ok\n'
check empty          fail ''

# A marker listed twice must appear twice; once is "expected again", not
# "out of order".
printf 'a: ready\nSELFTEST: one ok\nSELFTEST: one ok\n' >"$tmp/expected"
check twice-listed   pass 'a: ready\nSELFTEST: one ok\nSELFTEST: one ok\n'
check twice-once     fail 'a: ready\nSELFTEST: one ok\n'
printf 'a: ready\nSELFTEST: one ok\n' >"$tmp/log"
out=$(scripts/check-markers.sh "$tmp/expected" "$tmp/log" 2>&1 || true)
if [[ "$out" == *"expected again: 'SELFTEST: one ok' is listed 2 times but appears 1 time(s)"* ]]; then
    echo "check-markers self-test 'twice-once-reason': says expected again"
else
    echo "check-markers self-test 'twice-once-reason': wrong reason" >&2
    exit 1
fi
