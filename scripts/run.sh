#!/usr/bin/env bash
# run.sh (`make run`): boots one node under QEMU (profile "watch": logd,
# metricsd, busd, traced on a persistent disk, out/run.img), then watches
# it from the host with nexus-obs over the device bus: doctor, the metrics
# table, recent traces, then the node's logs as they arrive (Ctrl-C stops
# both). The guest console goes to out/run-console.log; `make console`
# shows it raw instead.
#
# The host reaches the guest's busd (port 7100) through QEMU's user
# network forward on 127.0.0.1:$RUN_PORT (default 7300); the keys are the
# test keys of recipes/observability/nexus-obs.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=riscv64gc-unknown-none-elf
TARGET_DIR=$(scripts/target-dir.sh)
RUN_PORT=${RUN_PORT:-7300}
IMG=out/run.img
CONSOLE=out/run-console.log
CLUSTER=out/run-cluster.toml

cargo build --release --target $TARGET -p nexus-kernel
cargo build --release -p nexus-obs
OBS=$TARGET_DIR/release/nexus-obs
mkdir -p out
[ -f "$IMG" ] || truncate -s 8M "$IMG"
KEY_A=$(printf 'a1%.0s' $(seq 1 32))
cat >"$CLUSTER" <<TOML
[host]
name = "host"
secret = "$(printf 'c4%.0s' $(seq 1 32))"
port = 7310

[[node]]
name = "node-a"
secret = "$KEY_A"
port = $RUN_PORT

[[token]]
token = "dev-all-0000"
read = ["*"]
TOML

: >"$CONSOLE"
qemu-system-riscv64 -machine virt -cpu rv64 -smp 1 -m 128M -nographic -bios default \
    -kernel "$TARGET_DIR/$TARGET/release/nexus-kernel" \
    -drive "file=$IMG,if=none,format=raw,id=hd0" -device virtio-blk-device,drive=hd0 \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$RUN_PORT-:7100" -device virtio-net-device,netdev=n0 \
    -device virtio-rng-device -global virtio-mmio.force-legacy=false \
    -append "nexus.profile=watch nexus.ip=10.0.2.15 nexus.key=$KEY_A" \
    -monitor none -serial stdio </dev/null >"$CONSOLE" 2>&1 &
QEMU=$!
trap 'kill $QEMU 2>/dev/null || true; wait $QEMU 2>/dev/null || true' EXIT

echo "booting node-a under QEMU (console: $CONSOLE) ..."
for _ in $(seq 1 600); do
    grep -q '^init: serving until stopped' "$CONSOLE" && break
    if grep -q -e '^SELFTEST: FAIL' -e 'KERNEL PANIC' "$CONSOLE" || ! kill -0 $QEMU 2>/dev/null; then
        echo "the node did not come up:" >&2
        tail -20 "$CONSOLE" >&2
        exit 1
    fi
    sleep 0.1
done
grep -q '^init: serving until stopped' "$CONSOLE" || { echo "the node did not finish booting in 60 s" >&2; tail -20 "$CONSOLE" >&2; exit 1; }
grep -E '^(init: profile|init: disk boot|SELFTEST: )' "$CONSOLE" | sed 's/^/  console | /'
echo
echo "== nexus-obs doctor"
"$OBS" --config "$CLUSTER" --wait 10s doctor || true
echo
echo "== nexus-obs metrics"
"$OBS" --config "$CLUSTER" metrics || true
echo
echo "== nexus-obs traces"
"$OBS" --config "$CLUSTER" traces --max 5 || true
echo
echo "== nexus-obs logs --follow (Ctrl-C to stop the node)"
"$OBS" --config "$CLUSTER" logs -n 30 --follow
