#!/usr/bin/env bash
# qemu-test.sh: build the RISC-V image, boot it under QEMU virt, and check
# the console against the ordered marker lists in scripts/profiles/.
#
#   PROFILE=single        which profile (scripts/profiles/$PROFILE.bootN)
#   RUN_TIMEOUT=60        seconds per boot before QEMU is killed
#   RUN_UNTIL_MARKER=1    stop QEMU as soon as the last marker of a boot is seen
#   OUT=out/qemu          where images and console logs go
#
# The "single" profile boots twice on one disk image: the second boot must
# find the first boot's records in logd, restored from virtio-blk. After
# the runs, tools/nexus-state-dump reads the image from outside the guest.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${PROFILE:-single}
RUN_TIMEOUT=${RUN_TIMEOUT:-60}
RUN_TIMEOUT=${RUN_TIMEOUT%s}
RUN_UNTIL_MARKER=${RUN_UNTIL_MARKER:-1}
OUT=${OUT:-out/qemu}
TARGET=riscv64gc-unknown-none-elf
TARGET_DIR=$(scripts/target-dir.sh)
KERNEL=$TARGET_DIR/$TARGET/release/nexus-kernel

if ! command -v qemu-system-riscv64 >/dev/null; then
    echo "qemu-system-riscv64 missing: installing qemu-system-misc"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq qemu-system-misc >/dev/null
fi
rustup target list --installed | grep -qx $TARGET || rustup target add $TARGET

t0=$(date +%s.%N)
cargo build --release --target $TARGET -p nexus-kernel
cargo build --release -p nexus-state-dump
t1=$(date +%s.%N)
echo "build: $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s"

mkdir -p "$OUT"
img=$OUT/$PROFILE.img
rm -f "$img"
truncate -s 8M "$img"

boot() {
    local n=$1
    local expected=scripts/profiles/$PROFILE.boot$n
    local log=$OUT/$PROFILE.boot$n.log
    local last
    last=$(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$expected" | tail -n 1)
    : > "$log"
    local s0
    s0=$(date +%s.%N)
    qemu-system-riscv64 -machine virt -cpu rv64 -smp 1 -m 128M -nographic -bios default -icount shift=1,align=off,sleep=off \
        -kernel "$KERNEL" \
        -drive "file=$img,if=none,format=raw,id=hd0" -device virtio-blk-device,drive=hd0 \
        -global virtio-mmio.force-legacy=false \
        -append "nexus.profile=$PROFILE nexus.boot=$n" \
        -monitor none -serial stdio </dev/null >"$log" 2>&1 &
    local pid=$!
    local deadline=$(( $(date +%s) + RUN_TIMEOUT ))
    local status=""
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$RUN_UNTIL_MARKER" = 1 ] && tr -d '\r' <"$log" | grep -qxF "$last"; then
            sleep 0.2 # let the store flush and QEMU exit by itself
            kill "$pid" 2>/dev/null || true
            status="stopped at last marker"
            break
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            kill "$pid" 2>/dev/null || true
            status="timeout after ${RUN_TIMEOUT}s"
            break
        fi
        sleep 0.05
    done
    local rc=0
    wait "$pid" || rc=$?
    local s1
    s1=$(date +%s.%N)
    echo "boot $n: $(awk "BEGIN{printf \"%.2f\", $s1 - $s0}") s, qemu exit $rc${status:+ ($status)}"
    sed 's/^/  | /' "$log"
    scripts/check-markers.sh "$expected" "$log"
    if [ -z "$status" ] && [ "$rc" -ne 0 ]; then
        echo "boot $n: QEMU exited with $rc" >&2
        exit 1
    fi
}

# Evidence from outside the guest: metricsd's region must hold the closed
# rollup segments of the selftest's retained gauge (count 3, sum 15, min 3,
# max 7) in both tiers, written by the guest, `want` of each per tier.
check_segments() {
    local want=$1 mdump=$OUT/$PROFILE.metricsd.boot$2.jsonl series n tier
    "$TARGET_DIR"/release/nexus-state-dump "$img" --region metricsd >"$mdump" 2>/dev/null
    series=$(sed -n 's/.*"entry":"register".*"name":"selftest_retained".*"series":\([0-9]*\).*/\1/p' "$mdump" | head -n 1)
    if [ -z "$series" ]; then
        echo "state dump: selftest_retained is not registered in metricsd's region" >&2
        exit 1
    fi
    for tier in 10s 60s; do
        n=$(grep -c "\"count\":3,\"entry\":\"segment\",\"max\":7,\"min\":3,\"series\":$series,\"start_ns\":[0-9]*,\"sum\":15,\"tier\":\"$tier\"" "$mdump" || true)
        if [ "$n" -lt "$want" ]; then
            echo "state dump: after boot $2, $n stored $tier segment(s) of selftest_retained, expected $want" >&2
            exit 1
        fi
    done
    echo "state dump: after boot $2, metricsd's region holds the retained gauge's 10 s and 60 s segments ($want per tier)"
}

# Spans of both boots reached logd with different trace ids: ids carry a
# per-boot component, and boot 2's evidence is boot 2's own.
check_traces() {
    local n
    n=$(grep '"target":"trace.span","message":"selftest.request"' "$dump" |
        sed -n 's/.*"trace_id":"\([0-9a-f]*\)".*/\1/p' | sort -u | wc -l)
    if [ "$n" -lt 2 ]; then
        echo "state dump: expected selftest.request spans with 2 distinct trace ids (one per boot), found $n" >&2
        exit 1
    fi
    echo "state dump: selftest.request spans of both boots carry $n distinct trace ids"
}

boot 1
check_segments 1 1
boot 2
check_segments 2 2

# Evidence from outside the guest: read logd's region on the host.
dump=$OUT/$PROFILE.dump.jsonl
"$TARGET_DIR"/release/nexus-state-dump "$img" >"$dump"
tail -n 3 "$dump" | sed 's/^/  | /'
found=$(grep -c '"target":"selftest","message":"selftest record [0-9] of boot 1"' "$dump" || true)
if [ "$found" -ne 3 ]; then
    echo "state dump: expected the 3 records of boot 1 in $img, found $found" >&2
    exit 1
fi
echo "state dump: the 3 records of boot 1 are on the disk image ($(wc -l <"$dump") lines)"
check_traces
echo "qemu-test: profile $PROFILE passed"
