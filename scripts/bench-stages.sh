#!/usr/bin/env bash
# Benchmark (not a test): a project with many stages — the project page and the REST listing
# at 100, 1 000 and 10 000 stages, and the server's memory. Needs a release build
# (cargo leptos build --release, cargo build --release -p pergola-demo-app) and wrk.
#   bash scripts/bench-stages.sh            # every figure of the README's "Many stages" table
# Latencies are wrk's with one connection for 5 s (every request after the first on a warm
# keep-alive connection); throughput with 64 connections for 10 s; RSS from /proc.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
dir=$(mktemp -d /tmp/pergola-bench-stages.XXXXXX)
port=3592
password=bench-admin-password
PERGOLA_DATA_DIR="$dir" LEPTOS_SITE_ADDR="127.0.0.1:$port" PERGOLA_GRACE_SECS=2 RUST_LOG=warn \
  PERGOLA_ADMIN_USER=admin PERGOLA_ADMIN_PASSWORD=$password target/release/pergola-server > "$dir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$port"
api="$base/api/v1"
rss() { awk '/VmRSS/ {printf "%.1f MB", $2/1024}' "/proc/$server/status"; }
sleep 2
echo "idle RSS after start, before any sign-in: $(rss)"
token=$(curl -sf -X POST "$api/login" -H 'content-type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$password\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
auth="authorization: Bearer $token"
echo "idle RSS after one sign-in (Argon2id's 19 MiB of working memory, given back): $(rss)"

# Stages are created through the API, eight at a time.
make_project() { # name count
  curl -sf -X POST "$api/projects" -H "$auth" -H 'content-type: application/json' -d "{\"name\":\"$1\"}" >/dev/null
  seq -w 0 $(($2 - 1)) | xargs -P 8 -I{} curl -sf -o /dev/null -X POST "$api/projects/$1/stages" -H "$auth" \
    -H 'content-type: application/json' -d "{\"name\":\"Stage {}\",\"type\":\"qa\",\"id\":\"s{}\"}"
}
latency() { # label url
  local out
  out=$(wrk -t1 -c1 -d5s --latency -H "$auth" "$2")
  printf '%-58s p50 %8s  p99 %8s  (%s req/s on one connection)\n' "$1" \
    "$(awk '/^ +50%/ {print $2}' <<<"$out")" "$(awk '/^ +99%/ {print $2}' <<<"$out")" \
    "$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
}
throughput() { # label url — three runs; the median run's figures, and the slowest and fastest
  local out runs=()
  for _ in 1 2 3; do
    out=$(wrk -t2 -c64 -d10s --latency -H "$auth" "$2")
    runs+=("$(awk '/^Requests\/sec/ {print $2}' <<<"$out") $(awk '/^ +50%/ {print $2}' <<<"$out") $(awk '/^ +99%/ {print $2}' <<<"$out")")
  done
  printf '%s\n' "${runs[@]}" | sort -n | awk -v label="$1" '
    { rate[NR] = $1; p50[NR] = $2; p99[NR] = $3 }
    END { printf "%-58s %10s req/s  p50 %8s  p99 %8s  (3 runs of 10 s: %s to %s req/s)\n", label, rate[2], p50[2], p99[2], rate[1], rate[3] }'
}

make_project hundred 100
make_project thousand 1000
echo "RSS with 1 100 stages: $(rss)"
# What the creations left to do (the database's write-ahead log, the sampler) settles first.
sleep 5
throughput "project page, 100 stages, 64 connections" "$base/projects/hundred"
latency "project page, 1 000 stages (first page)" "$base/projects/thousand"
latency "GET …/stages, all 1 000 (JSON)" "$api/projects/thousand/stages"
latency "GET …/stages?limit=50 of 1 000" "$api/projects/thousand/stages?limit=50"
make_project tenthousand 10000
echo "RSS with 11 100 stages: $(rss)"
latency "project page, 10 000 stages (first page)" "$base/projects/tenthousand"
latency "GET …/stages?limit=50 of 10 000" "$api/projects/tenthousand/stages?limit=50"
latency "GET …/stages?q=stage%2009999 of 10 000 (search)" "$api/projects/tenthousand/stages?q=stage%2009999"
latency "GET …/stages?limit=50&sort=name of 10 000" "$api/projects/tenthousand/stages?limit=50&sort=name"

# 100 running components: a worker that sleeps, deployed to 100 stages of "hundred".
mkdir "$dir/build"
printf '[[component]]\nname = "worker"\nkind = "worker"\ncommand = "sleep"\nargs = ["3600"]\n' > "$dir/build/pergola.toml"
tar czf "$dir/build.tar.gz" -C "$dir/build" pergola.toml
curl -sf -X POST "$api/projects/hundred/builds" -H "$auth" -H 'content-type: application/gzip' \
  --data-binary @"$dir/build.tar.gz" >/dev/null
seq -w 0 99 | xargs -P 4 -I{} curl -sf -o /dev/null -X POST "$api/projects/hundred/stages/s{}/releases" -H "$auth" \
  -H 'content-type: application/json' -d '{"build":1}'
sleep 3
running=$(curl -sf -H "$auth" "$api/projects/hundred/stages/s00/components" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["state"])')
echo "RSS with 11 100 stages and 100 running components (s00's worker: $running): $(rss)"
throughput "project page, 100 stages with running components, 64 connections" "$base/projects/hundred"
