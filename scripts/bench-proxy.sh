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
password=bench-admin-password
PERGOLA_SHARE_DOMAIN=pergola.test PERGOLA_DATA_DIR="$dir" LEPTOS_SITE_ADDR="127.0.0.1:$port" PERGOLA_GRACE_SECS=2 RUST_LOG=warn \
  PERGOLA_ADMIN_USER=admin PERGOLA_ADMIN_PASSWORD=$password target/release/pergola-server > "$dir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
api="http://127.0.0.1:$port/api/v1"
token=$(curl -sf -X POST "$api/login" -H 'content-type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$password\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
auth="authorization: Bearer $token"
curl -sf -X POST "$api/projects" -H "$auth" -H 'content-type: application/json' -d '{"name":"bench"}' >/dev/null
curl -sf -X POST "$api/projects/bench/stages" -H "$auth" -H 'content-type: application/json' -d '{"name":"qa","type":"qa"}' >/dev/null
# The build, uploaded as any build is: this server's binary and its manifest, packed with tar
# and gzip. The component keeps its database in its TMPDIR (its release's files are read-only).
mkdir "$dir/build"
cp target/release/pergola-server "$dir/build/"
cat > "$dir/build/pergola.toml" <<TOML
[[component]]
name = "web"
kind = "service"
command = "sh"
args = ["-c", "PERGOLA_DATA_DIR=\$TMPDIR exec ./pergola-server"]
port = $component_port
env = { LEPTOS_SITE_ADDR = "127.0.0.1:$component_port", RUST_LOG = "warn" }
health = { path = "/healthz", interval_secs = 1 }
TOML
tar czf "$dir/build.tar.gz" -C "$dir/build" .
curl -sf -X POST "$api/projects/bench/builds" -H "$auth" -H 'content-type: application/gzip' \
  --data-binary @"$dir/build.tar.gz" >/dev/null
curl -sf -X POST "$api/projects/bench/stages/qa/releases" -H "$auth" -H 'content-type: application/json' -d '{"build":1}' >/dev/null
# Open to anyone with the link: wrk carries no share cookie (a members-only stage answers 303).
curl -sf -X PATCH "$api/projects/bench/stages/qa" -H "$auth" -H 'content-type: application/json' -d '{"visibility":"public"}' >/dev/null
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$component_port/healthz" >/dev/null && break; sleep 0.1; done
echo "== direct: http://127.0.0.1:$component_port/healthz"
wrk -t2 -c32 -d10s "http://127.0.0.1:$component_port/healthz"
echo "== through the share link: web.qa.bench.pergola.test"
curl -s -i -H "Host: web.qa.bench.pergola.test:$port" "http://127.0.0.1:$port/healthz" | sed -n "1p;/<h1>/p"
wrk -t2 -c32 -d10s -H "Host: web.qa.bench.pergola.test:$port" "http://127.0.0.1:$port/healthz"
