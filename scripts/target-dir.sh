#!/usr/bin/env bash
# target-dir.sh: prints cargo's target directory for this workspace, so the
# scripts find the binaries wherever CARGO_TARGET_DIR (or a cargo config)
# puts them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
