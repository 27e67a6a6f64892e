#!/usr/bin/env bash
# Benchmark (not a test): the dashboard's static files and first load. Needs a release build
# (cargo leptos build --release) and wrk.
#   bash scripts/bench-assets.sh
# Prints: what a first visit downloads (the sign-in page's HTML, JS, wasm and CSS, as a
# browser accepting brotli gets them), and wrk figures for the stylesheet and /healthz: 64
# connections for 10 s (throughput, p50, p99), then one connection for 5 s (p99 on an idle
# machine, every request on a warm keep-alive connection).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
dir=$(mktemp -d /tmp/pergola-bench-assets.XXXXXX)
port=3593
PERGOLA_DATA_DIR="$dir" LEPTOS_SITE_ADDR="127.0.0.1:$port" RUST_LOG=warn PERGOLA_ADMIN_USER=admin \
  PERGOLA_ADMIN_PASSWORD=bench-admin-password target/release/pergola-server > "$dir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$dir"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
# The compressed copies are written in the background at start: wait for the wasm's.
for _ in $(seq 1 300); do ls target/site/pkg/*.wasm.br >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1

size() { curl -s -o /dev/null -w '%{size_download}' -H 'accept-encoding: br, gzip' "$1"; }
html=$(curl -s -H 'accept-encoding: identity' "$base/login")
html_size=$(size "$base/login")
total=$html_size
printf '%-44s %9s bytes\n' "/login (HTML)" "$html_size"
for asset in $(grep -oE '/pkg/[A-Za-z0-9._-]+\.(js|wasm|css)' <<<"$html" | sort -u) \
             $(grep -oE '/pkg/[A-Za-z0-9._-]+\.js' <<<"$html" | sed 's/\.js$/_bg.wasm/' | sort -u); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$base$asset")
  [ "$code" = 200 ] || continue
  n=$(size "$base$asset")
  total=$((total + n))
  printf '%-44s %9s bytes (%s)\n' "$asset" "$n" \
    "$(curl -s -o /dev/null -D - -H 'accept-encoding: br, gzip' "$base$asset" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-encoding" {print $2}')"
done
printf '%-44s %9s bytes (%s KB)\n' "first load, compressed" "$total" "$((total / 1024))"

css=$(grep -oE '/pkg/[A-Za-z0-9._-]+\.css' <<<"$html" | head -1)
wasm=$(ls target/site/pkg/*.wasm | head -1)
printf 'wasm on disk: %s bytes raw, %s brotli, %s gzip\n' "$(stat -c %s "$wasm")" \
  "$(stat -c %s "$wasm.br" 2>/dev/null || echo -)" "$(stat -c %s "$wasm.gz" 2>/dev/null || echo -)"
bench() { # label url
  local many one
  many=$(wrk -t2 -c64 -d10s --latency -H 'accept-encoding: br' "$2")
  one=$(wrk -t1 -c1 -d5s --latency -H 'accept-encoding: br' "$2")
  printf '%-32s 64 conns: %10s req/s  p50 %8s  p99 %8s | 1 conn: %9s req/s  p99 %8s\n' "$1" \
    "$(awk '/^Requests\/sec/ {print $2}' <<<"$many")" "$(awk '/^ +50%/ {print $2}' <<<"$many")" \
    "$(awk '/^ +99%/ {print $2}' <<<"$many")" "$(awk '/^Requests\/sec/ {print $2}' <<<"$one")" \
    "$(awk '/^ +99%/ {print $2}' <<<"$one")"
}
bench "$css" "$base$css"
bench "/favicon.svg" "$base/favicon.svg"
bench "/healthz" "$base/healthz"
