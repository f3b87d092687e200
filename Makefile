# nexus-obs: the two commands a newcomer needs are `make run` and `make test`.
# Both install what is missing (the Rust target comes from rust-toolchain.toml).

RISCV_TARGET := riscv64gc-unknown-none-elf
# Every no_std service core and client library; built for the target in `make test`.
NO_STD_CRATES := -p nexus-wire -p nexus-bounds -p nexus-ipc -p nexus-svc -p nexus-log -p nexus-metrics -p nexus-trace -p nexus-remote -p nexus-store -p dsoftbus -p logd -p metricsd -p selftest-client -p nexus-init -p nexus-bus -p busd -p obsscraped -p traced
KERNEL = $(shell scripts/target-dir.sh)/$(RISCV_TARGET)/release/nexus-kernel
RUN_IMG := out/run.img

.PHONY: run console demo test deps qemu-deps alerts-deps alerts-test prometheus-test fmt-check clippy host-test riscv harness-test qemu-test bench bench-scale

## Runs the system: boots a node under QEMU (profile "watch", persistent
## disk out/run.img) and watches it from the host with nexus-obs: doctor,
## metrics, traces, then its logs as they arrive. `make console` shows the
## raw guest console of the "single" profile instead.
run: deps qemu-deps
	scripts/run.sh

## The raw guest console: the "single" profile's selftests on out/console.img.
console: deps qemu-deps
	cargo build --release --target $(RISCV_TARGET) -p nexus-kernel
	@mkdir -p out; [ -f out/console.img ] || truncate -s 8M out/console.img
	qemu-system-riscv64 -machine virt -cpu rv64 -smp 1 -m 128M -nographic -bios default -icount shift=1,align=off,sleep=off \
		-kernel $(KERNEL) -drive file=out/console.img,if=none,format=raw,id=hd0 \
		-device virtio-blk-device,drive=hd0 -global virtio-mmio.force-legacy=false \
		-monitor none -serial stdio </dev/null

## The host demo: logd on the in-process bus, senders, rejects, a paged query.
demo: deps
	cargo run --release -p nexus-obs-demo

## Runs every check CI runs.
test: deps fmt-check clippy alerts-test host-test prometheus-test riscv harness-test qemu-test
	@echo "make test: all checks passed"

alerts-deps:
	@command -v promtool >/dev/null || { \
		SUDO=; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

## The stack's alert rules, checked and unit-tested with the real promtool.
alerts-test: alerts-deps
	promtool check rules recipes/observability/alerts.yml
	promtool test rules recipes/observability/tests/alerts_test.yml

## A real Prometheus server scrapes `nexus-obs serve` fed by a host node.
prometheus-test: alerts-deps
	scripts/prometheus-test.sh

qemu-deps:
	@command -v qemu-system-riscv64 >/dev/null || { \
		SUDO=; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq qemu-system-misc >/dev/null; }

deps:
	@command -v cargo >/dev/null || { echo "cargo not found: install rustup first"; exit 1; }
	@rustup target list --installed | grep -qx $(RISCV_TARGET) || rustup target add $(RISCV_TARGET)
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt

fmt-check:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets --all-features -- -D warnings

host-test:
	cargo test --workspace --all-features

riscv:
	cargo build --target $(RISCV_TARGET) $(NO_STD_CRATES)
	cargo clippy --release --target $(RISCV_TARGET) -p nexus-kernel -- -D warnings

harness-test:
	bash scripts/tests/check-markers-test.sh

qemu-test: qemu-deps
	RUN_UNTIL_MARKER=1 scripts/qemu-test.sh
	PROFILE=pair scripts/qemu-pair.sh
	PROFILE=bus scripts/qemu-pair.sh

## Criterion benchmarks (not part of `make test`).
bench:
	cargo bench -p logd
	cargo bench -p nexus-log --bench json -- --warm-up-time 1 --measurement-time 3
	cargo bench -p metricsd --bench metrics -- --warm-up-time 1 --measurement-time 2
	cargo bench -p dsoftbus --bench link -- --warm-up-time 1 --measurement-time 3
	cargo bench -p busd --features testkit --bench busd -- --warm-up-time 1 --measurement-time 3
	cargo bench -p obsscraped --features testkit --bench remote -- --warm-up-time 1 --measurement-time 5
	cargo bench -p nexus-trace --bench trace -- --warm-up-time 1 --measurement-time 2

## How the stores scale (not part of `make test`): logd at 1k..1M records
## (append, page and heap costs) and metricsd at 1k..100k series (update,
## render, paged scrape, heap) against the prometheus crate.
bench-scale:
	cargo bench -p logd --bench scale
	cargo bench -p metricsd --bench scale
