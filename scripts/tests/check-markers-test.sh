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
