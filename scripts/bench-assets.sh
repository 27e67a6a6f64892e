#!/usr/bin/env bash
# Benchmark (not a test): the dashboard's static files and first load. Needs a release build
# (cargo leptos build --release --split) and wrk.
#   bash scripts/bench-assets.sh
# Prints: what a first visit downloads (the sign-in page's HTML, JS, wasm and CSS, as
# Chromium gets them: scripts/first-load.mjs), the largest wasm files (what every page shares,
# and each page's own chunk), and wrk figures for the stylesheet and /healthz: 64
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
# The compressed copies are written in the background at start: wait for every wasm file's.
for _ in $(seq 1 600); do
  missing=0
  for f in target/site/pkg/*.wasm; do [ -e "$f.br" ] || [ "$(stat -c %s "$f")" -lt 512 ] || missing=1; done
  [ $missing = 0 ] && break
  sleep 0.1
done
sleep 1

# The first visit as Chromium makes it (empty cache): every response and its transferred size.
node scripts/first-load.mjs "$base" /login
html=$(curl -s -H 'accept-encoding: identity' "$base/login")
css=$(grep -oE '/pkg/[A-Za-z0-9._-]+\.css' <<<"$html" | head -1)
# The wasm of what every page shares (the sign-in page's too), and each page's own chunk, which
# the browser fetches when that page is first shown.
printf 'wasm on disk (raw, brotli):\n'
for wasm in $(ls -S target/site/pkg/*.wasm | head -13); do
  printf '  %-72s %8s %8s\n' "${wasm#target/site/pkg/}" "$(stat -c %s "$wasm")" "$(stat -c %s "$wasm.br" 2>/dev/null || echo -)"
done
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
