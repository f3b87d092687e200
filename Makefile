# nexus-obs: the two commands a newcomer needs are `make run` and `make test`.
# Both install what is missing (the Rust target comes from rust-toolchain.toml).

RISCV_TARGET := riscv64gc-unknown-none-elf
# Every no_std service core and client library; built for the target in `make test`.
NO_STD_CRATES := -p nexus-bounds -p nexus-ipc -p nexus-log -p logd

.PHONY: run test deps fmt-check clippy host-test riscv bench

## Runs the system: for now, the host demo (logd + senders + rejects + query).
run: deps
	cargo run --release -p nexus-obs-demo

## Runs every check CI runs.
test: deps fmt-check clippy host-test riscv
	@echo "make test: all checks passed"

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

## Criterion benchmarks (not part of `make test`).
bench:
	cargo bench -p logd
