#!/usr/bin/env bash
# Benchmark (not a test): share-link proxy throughput vs the component directly.
# Needs a release build (cargo leptos build --release) and wrk (apt-get install wrk).
# The component is a second Pergola server, whose /healthz is a small, fast Rust handler; the
# outer server uses the share domain pergola.test so the inner one does not take the proxied
# Host (which a proxy keeps) for one of its own share links.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d /tmp/pergola-bench.XXXXXX)
port=3590 component_port=3591
PERGOLA_SHARE_DOMAIN=pergola.test PERGOLA_DATA_DIR="$dir" LEPTOS_SITE_ADDR="127.0.0.1:$port" PERGOLA_GRACE_SECS=2 RUST_LOG=warn \
  target/release/pergola-server > "$dir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
api="http://127.0.0.1:$port/api/v1"
curl -sf -X POST "$api/projects" -H 'content-type: application/json' -d '{"name":"bench"}' >/dev/null
curl -sf -X POST "$api/projects/bench/stages" -H 'content-type: application/json' -d '{"name":"qa","type":"qa"}' >/dev/null
manifest="[[component]]
name = \"web\"
kind = \"service\"
command = \"$PWD/target/release/pergola-server\"
port = $component_port
env = { LEPTOS_SITE_ADDR = \"127.0.0.1:$component_port\", DATABASE_URL = \"sqlite://$dir/component.db\", RUST_LOG = \"warn\" }
health = { path = \"/healthz\", interval_secs = 1 }"
python3 -c 'import json,sys; print(json.dumps({"manifest": sys.argv[1], "workdir": sys.argv[2]}))' "$manifest" "$PWD" |
  curl -sf -X POST "$api/projects/bench/builds" -H 'content-type: application/json' -d @- >/dev/null
curl -sf -X POST "$api/projects/bench/stages/qa/releases" -H 'content-type: application/json' -d '{"build":1}' >/dev/null
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$component_port/healthz" >/dev/null && break; sleep 0.1; done
echo "== direct: http://127.0.0.1:$component_port/healthz"
wrk -t2 -c32 -d10s "http://127.0.0.1:$component_port/healthz"
echo "== through the share link: web.qa.bench.pergola.test"
curl -s -i -H "Host: web.qa.bench.pergola.test:$port" "http://127.0.0.1:$port/healthz" | sed -n "1p;/<h1>/p"
wrk -t2 -c32 -d10s -H "Host: web.qa.bench.pergola.test:$port" "http://127.0.0.1:$port/healthz"
