#!/usr/bin/env bash
# prometheus-test.sh: a real Prometheus server scrapes `nexus-obs serve`,
# which is fed by a node running on the host (`nexus-obs node node-a` with
# its demo load); the test passes when Prometheus's query API returns the
# node's demo counter with its `node` label, the scrape target is up, and
# `promtool check metrics` finds nothing wrong with the endpoint's output.
# Everything listens on 127.0.0.1 only; every process is stopped by pid.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt() {
    local SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
command -v prometheus >/dev/null && command -v promtool >/dev/null || need_apt prometheus
command -v curl >/dev/null || need_apt curl

TARGET_DIR=$(scripts/target-dir.sh)
cargo build -q -p nexus-obs
BIN=$TARGET_DIR/debug/nexus-obs
OUT=${OUT:-out/prometheus}
rm -rf "$OUT"
mkdir -p "$OUT/data"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
        || echo $(( 20000 + RANDOM % 20000 ))
}
HOST_PORT=$(free_port); NODE_PORT=$(free_port); HTTP_PORT=$(free_port); PROM_PORT=$(free_port)
cat >"$OUT/cluster.toml" <<TOML
[host]
name = "host"
secret = "$(printf 'c4%.0s' $(seq 1 32))"
port = $HOST_PORT

[[node]]
name = "node-a"
secret = "$(printf 'a1%.0s' $(seq 1 32))"
port = $NODE_PORT
TOML
cat >"$OUT/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: nexus-obs
    static_configs:
      - targets: ["127.0.0.1:$HTTP_PORT"]
YML
promtool check config "$OUT/prometheus.yml" >/dev/null

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

"$BIN" --config "$OUT/cluster.toml" node node-a --load 100ms --for 120s 2>"$OUT/node.log" &
PIDS+=($!)
"$BIN" --config "$OUT/cluster.toml" serve --listen "127.0.0.1:$HTTP_PORT" --for 120s 2>"$OUT/serve.log" &
PIDS+=($!)
prometheus --config.file="$OUT/prometheus.yml" --storage.tsdb.path="$OUT/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$OUT/prometheus.log" 2>&1 &
PIDS+=($!)

# The endpoint's own output: promtool's checks (names, help, types).
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$HTTP_PORT/metrics" >"$OUT/metrics.txt" 2>/dev/null \
        && grep -q '^nexus_obs_demo_ticks_total{node="node-a"' "$OUT/metrics.txt" && break
    sleep 0.2
done
grep -q '^nexus_obs_demo_ticks_total{node="node-a"' "$OUT/metrics.txt" \
    || { echo "prometheus-test: nexus-obs serve never exposed node-a's series" >&2; tail -5 "$OUT/serve.log" "$OUT/node.log" >&2; exit 1; }
promtool check metrics <"$OUT/metrics.txt"
echo "promtool check metrics: clean ($(grep -c -v '^#' "$OUT/metrics.txt") samples)"

# Prometheus scraped it: the node's series through its query API.
q() { curl -fsS --get "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" 2>/dev/null || true; }
ok=""
for _ in $(seq 1 150); do
    r=$(q 'nexus_obs_demo_ticks_total{node="node-a",app="demo"}')
    up=$(q 'up{job="nexus-obs"}')
    if printf '%s' "$r" | grep -q '"node":"node-a"' && printf '%s' "$up" | grep -q '"value":\[[0-9.]*,"1"\]'; then
        ok=1
        break
    fi
    sleep 0.2
done
if [ -z "$ok" ]; then
    echo "prometheus-test: Prometheus never returned node-a's series" >&2
    echo "  query: $r" >&2
    echo "  up:    $up" >&2
    tail -20 "$OUT/prometheus.log" >&2
    exit 1
fi
echo "prometheus: up{job=\"nexus-obs\"} = 1 and $(printf '%s' "$r" | grep -o '"value":\[[^]]*\]' | head -1) for nexus_obs_demo_ticks_total{node=\"node-a\"}"
echo "prometheus-test: passed"
