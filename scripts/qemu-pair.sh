#!/usr/bin/env bash
# qemu-pair.sh: build the RISC-V image and boot it twice at once, as two
# nodes on one emulated Ethernet link (virtio-net over QEMU's
# `-netdev socket` on a loopback TCP port), then check each console against
# its ordered marker list: scripts/profiles/$PROFILE.a and $PROFILE.b.
#
#   PROFILE=bus           bus: the device bus (Noise sessions, ACL, mux v2)
#                         over TCP; pair: plain TCP only
#   RUN_TIMEOUT=120       seconds per node before its QEMU is killed
#   OUT=out/qemu-pair     where the console logs go
#
# In the bus profile each node gets a static device key (`nexus.key`, test
# keys fixed here) and the peer's public key (`nexus.peer_key`, the static
# peer list), and a virtio-rng device for the handshake seeds.
#
# Node B (192.0.2.2) listens on TCP port 7000 inside the guest; node A
# (192.0.2.1) connects, sends 1 MiB and checks B's checksum reply. The
# guest addresses are from the RFC 5737 documentation range and exist only
# on the emulated link; on the host only 127.0.0.1 is used.
#
# QEMU's `connect=` side drops frames silently while nobody listens, so
# node A starts only once node B's QEMU is seen listening in `ss -ltn`. The
# port is never probed with a TCP connect: QEMU would take that as its peer.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${PROFILE:-bus}
# Longer than the guests' own budgets (60 s exchange + 20 s connect of
# guest time), so a guest reports its own failure before the host kills it.
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
RUN_TIMEOUT=${RUN_TIMEOUT%s}
OUT=${OUT:-out/qemu-pair}
TARGET=riscv64gc-unknown-none-elf
TARGET_DIR=$(scripts/target-dir.sh)
KERNEL=$TARGET_DIR/$TARGET/release/nexus-kernel

IP_A=192.0.2.1
IP_B=192.0.2.2
MAC_A=52:54:00:00:00:01
MAC_B=52:54:00:00:00:02
# Test device keys (secrets) for the bus profile; their public keys and ids
# come from tools/nexus-bus-keys. Never use fixed keys outside tests.
KEY_A=$(printf 'a1%.0s' $(seq 1 32))
KEY_B=$(printf 'b2%.0s' $(seq 1 32))

need_apt() {
    local SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}
if ! command -v qemu-system-riscv64 >/dev/null; then
    echo "qemu-system-riscv64 missing: installing qemu-system-misc"
    need_apt qemu-system-misc
fi
if ! command -v ss >/dev/null; then
    echo "ss missing: installing iproute2"
    need_apt iproute2
fi
rustup target list --installed | grep -qx $TARGET || rustup target add $TARGET

b0=$(date +%s.%N)
cargo build --release --target $TARGET -p nexus-kernel
cargo build --release -p nexus-bus-keys
cargo build --release -p nexus-state-dump
b1=$(date +%s.%N)
EXTRA_A=""
EXTRA_B=""
RNG=""
if [ "$PROFILE" = bus ]; then
    read -r PUB_A ID_A < <("$TARGET_DIR"/release/nexus-bus-keys "$KEY_A")
    read -r PUB_B ID_B < <("$TARGET_DIR"/release/nexus-bus-keys "$KEY_B")
    echo "device a: $ID_A, device b: $ID_B"
    EXTRA_A="nexus.key=$KEY_A nexus.peer_key=$PUB_B"
    EXTRA_B="nexus.key=$KEY_B nexus.peer_key=$PUB_A"
    RNG="-device virtio-rng-device"
fi
echo "build: $(awk "BEGIN{printf \"%.1f\", $b1 - $b0}") s"

mkdir -p "$OUT"
LOG_A=$OUT/$PROFILE.a.log
LOG_B=$OUT/$PROFILE.b.log
# In the bus profile each node has a fresh 8 MiB disk (its regions: the
# device identity, the collector's segments, the trace store).
IMG_A=$OUT/$PROFILE.a.img
IMG_B=$OUT/$PROFILE.b.img
DISK_A=""
DISK_B=""
if [ "$PROFILE" = bus ]; then
    for img in "$IMG_A" "$IMG_B"; do
        rm -f "$img"
        truncate -s 8M "$img"
    done
    DISK_A="-drive file=$IMG_A,if=none,format=raw,id=hd0 -device virtio-blk-device,drive=hd0"
    DISK_B="-drive file=$IMG_B,if=none,format=raw,id=hd0 -device virtio-blk-device,drive=hd0"
fi

PID_A=""
PID_B=""
cleanup() {
    for p in $PID_A $PID_B; do
        kill "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Whether process $2 (node B's QEMU) listens on port $1 — not just anyone.
listening() {
    ss -Hltnp "sport = :$1" 2>/dev/null | grep -q "pid=$2,"
}

# A loopback port nobody uses, in the dynamic range.
free_port() {
    local p i
    for i in $(seq 1 50); do
        p=$(( 49152 + (RANDOM * 32768 + RANDOM) % 16000 ))
        if [ -z "$(ss -Htan "sport = :$p or dport = :$p" 2>/dev/null)" ]; then
            echo "$p"
            return 0
        fi
    done
    echo "no free loopback port found" >&2
    return 1
}

qemu() { # LOG NETDEV MAC APPEND DISK
    # No -icount here: two guests' clocks must follow the same (host) time,
    # or a spinning guest's clock races ahead and the bus keepalive of the
    # other one looks late.
    qemu-system-riscv64 -machine virt -cpu rv64 -smp 1 -m 128M -nographic -bios default \
        -kernel "$KERNEL" \
        -global virtio-mmio.force-legacy=false \
        -netdev "$2" -device "virtio-net-device,netdev=n0,mac=$3" $RNG $5 \
        -append "$4" \
        -monitor none -serial stdio </dev/null >"$1" 2>&1 &
}

# Node B first; retry on another port if QEMU could not bind the chosen one.
PORT=""
for attempt in 1 2 3 4 5; do
    PORT=$(free_port)
    : >"$LOG_B"
    t0=$(date +%s.%N)
    qemu "$LOG_B" "socket,id=n0,listen=127.0.0.1:$PORT" "$MAC_B" \
        "nexus.role=b nexus.ip=$IP_B nexus.mac=$MAC_B nexus.peer=$IP_A $EXTRA_B" "$DISK_B"
    PID_B=$!
    up=0
    for _ in $(seq 1 200); do # up to 10 s
        if listening "$PORT" "$PID_B"; then
            up=1
            break
        fi
        kill -0 "$PID_B" 2>/dev/null || break
        sleep 0.05
    done
    [ "$up" = 1 ] && break
    kill "$PID_B" 2>/dev/null || true
    wait "$PID_B" 2>/dev/null || true
    PID_B=""
    echo "node b: QEMU did not listen on 127.0.0.1:$PORT (attempt $attempt):" >&2
    sed 's/^/  | /' "$LOG_B" >&2
done
if [ -z "$PID_B" ]; then
    echo "qemu-pair: node b never listened" >&2
    exit 1
fi
echo "node b: QEMU listening on 127.0.0.1:$PORT"

: >"$LOG_A"
qemu "$LOG_A" "socket,id=n0,connect=127.0.0.1:$PORT" "$MAC_A" \
    "nexus.role=a nexus.ip=$IP_A nexus.mac=$MAC_A nexus.peer=$IP_B $EXTRA_A" "$DISK_A"
PID_A=$!
ta=$(date +%s.%N)

# Wait for both, each with its own deadline.
DEADLINE_B=$(( $(date +%s) + RUN_TIMEOUT ))
DEADLINE_A=$(( $(date +%s) + RUN_TIMEOUT ))
STATUS_A=""
STATUS_B=""
RC_A=""
RC_B=""
END_A=""
END_B=""
while [ -z "$RC_A" ] || [ -z "$RC_B" ]; do
    now=$(date +%s)
    if [ -z "$RC_A" ] && ! kill -0 "$PID_A" 2>/dev/null; then
        RC_A=0; wait "$PID_A" || RC_A=$?; END_A=$(date +%s.%N)
    elif [ -z "$RC_A" ] && [ "$now" -ge "$DEADLINE_A" ]; then
        kill "$PID_A" 2>/dev/null || true
        STATUS_A="timeout after ${RUN_TIMEOUT}s"
        RC_A=0; wait "$PID_A" || RC_A=$?; END_A=$(date +%s.%N)
    fi
    if [ -z "$RC_B" ] && ! kill -0 "$PID_B" 2>/dev/null; then
        RC_B=0; wait "$PID_B" || RC_B=$?; END_B=$(date +%s.%N)
    elif [ -z "$RC_B" ] && [ "$now" -ge "$DEADLINE_B" ]; then
        kill "$PID_B" 2>/dev/null || true
        STATUS_B="timeout after ${RUN_TIMEOUT}s"
        RC_B=0; wait "$PID_B" || RC_B=$?; END_B=$(date +%s.%N)
    fi
    sleep 0.02
done
PID_A=""
PID_B=""
t1=$(date +%s.%N)

fail=0
report() { # NAME LOG RC STATUS START END
    echo "node $1: $(awk "BEGIN{printf \"%.2f\", $6 - $5}") s, qemu exit $3${4:+ ($4)}"
    sed 's/^/  | /' "$2"
}
report a "$LOG_A" "$RC_A" "$STATUS_A" "$ta" "$END_A"
report b "$LOG_B" "$RC_B" "$STATUS_B" "$t0" "$END_B"
for n in a b; do
    log=$OUT/$PROFILE.$n.log
    scripts/check-markers.sh "scripts/profiles/$PROFILE.$n" "$log" || fail=1
done
for n in a b; do
    if [ "$n" = a ]; then st=$STATUS_A rc=$RC_A; else st=$STATUS_B rc=$RC_B; fi
    if [ -n "$st" ]; then
        echo "node $n: $st" >&2
        fail=1
    elif [ "$rc" -ne 0 ]; then
        echo "node $n: QEMU exited with $rc" >&2
        fail=1
    fi
done

# Evidence from outside the guests: A's trace store, read from its disk
# image on the host, holds the cross-node trace: A's span (node A, no
# parent) and B's span (node B) under it.
if [ "$PROFILE" = bus ]; then
    tdump=$OUT/$PROFILE.a.traced.jsonl
    "$TARGET_DIR"/release/nexus-state-dump "$IMG_A" --region traced >"$tdump" || fail=1
    line=$(grep -F '"name":"selftest.mux.serve"' "$tdump" | grep -F "\"node\":\"$ID_B\"" \
        | grep -F "\"node\":\"$ID_A\"" | tail -n 1 || true)
    root=$(printf '%s' "$line" | sed -n 's/.*"span_id":"\([0-9a-f]\{16\}\)","parent_span_id":null,"remote_parent":false,"name":"selftest.mux.call".*/\1/p')
    if [ -n "$root" ] && printf '%s' "$line" | grep -qF "\"parent_span_id\":\"$root\",\"remote_parent\":true,\"name\":\"selftest.mux.serve\""; then
        echo "state dump: A's traced region holds the trace of A's span $root with B's span under it ($(wc -l <"$tdump") traces stored)"
    else
        echo "state dump: no trace with A's selftest.mux.call and B's selftest.mux.serve under it in $IMG_A:" >&2
        sed 's/^/  | /' "$tdump" >&2
        fail=1
    fi
fi

echo "two-node run: $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s wall (node b start to both exited, port $PORT)"
if [ "$fail" -ne 0 ]; then
    echo "qemu-pair: FAILED" >&2
    exit 1
fi
echo "qemu-pair: profile $PROFILE passed"
