#!/usr/bin/env bash
# Benchmark (not a test): uploading a 100 MB build artifact over loopback, and the server's
# memory while it receives it (it streams: the archive is hashed and written to disk as it
# arrives, never held whole). Needs a release build (cargo leptos build --release) and curl.
# Five distinct archives of 100 MB of random bytes (incompressible: the archive is ~100 MB), so
# no upload is deduplicated; each is POSTed with curl (-T: curl streams it too), then unpacked
# and stored by the server before it answers 201. Prints each upload's time and rate, their
# min/median/max, and the server's resident memory before and its peak (VmHWM) after.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d /tmp/pergola-bench-upload.XXXXXX)
port=3592
PERGOLA_DATA_DIR="$dir/data" DATABASE_URL="sqlite://$dir/pergola.db" LEPTOS_SITE_ADDR="127.0.0.1:$port" \
  LEPTOS_SITE_ROOT=target/site PERGOLA_ADMIN_USER=admin PERGOLA_ADMIN_PASSWORD=bench-password RUST_LOG=warn \
  target/release/pergola-server > "$dir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; chmod -R u+w "$dir" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
api="http://127.0.0.1:$port/api/v1"
token=$(curl -sf -X POST "$api/login" -H 'content-type: application/json' \
  -d '{"username":"admin","password":"bench-password"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
auth="Authorization: Bearer $token"
curl -sf -X POST "$api/projects" -H "$auth" -H 'content-type: application/json' -d '{"name":"bench"}' >/dev/null
for i in 1 2 3 4 5; do
  mkdir -p "$dir/build$i"
  printf 'version = "%s"\n[[component]]\nname = "job"\nkind = "job"\ncommand = "true"\n' "$i" > "$dir/build$i/pergola.toml"
  head -c 100000000 /dev/urandom > "$dir/build$i/blob"
  tar -czf "$dir/build$i.tar.gz" -C "$dir/build$i" pergola.toml blob
  rm -rf "$dir/build$i"
done
mem() { grep -E "^$1:" "/proc/$server/status" | awk '{print $2}'; }
echo "archive: $(stat -c %s "$dir/build1.tar.gz") bytes; server before: VmRSS $(mem VmRSS) kB, VmHWM $(mem VmHWM) kB"
times=()
for i in 1 2 3 4 5; do
  out=$(curl -sS -o "$dir/answer" -w '%{http_code} %{time_total} %{speed_upload}' -X POST -T "$dir/build$i.tar.gz" \
    -H "$auth" -H 'content-type: application/gzip' "$api/projects/bench/builds")
  read -r code secs rate <<< "$out"
  [ "$code" = 201 ] || { echo "upload $i: HTTP $code: $(cat "$dir/answer")"; exit 1; }
  printf 'upload %s: %.2f s, %.1f MB/s\n' "$i" "$secs" "$(python3 -c "print($rate/1e6)")"
  times+=("$secs")
done
python3 - "${times[@]}" <<'PY'
import sys, statistics
t = sorted(float(x) for x in sys.argv[1:])
mb = 100.0
print(f"time: min {t[0]:.2f} s, median {statistics.median(t):.2f} s, max {t[-1]:.2f} s "
      f"({mb/statistics.median(t):.0f} MB/s at the median)")
PY
echo "server after: VmRSS $(mem VmRSS) kB, peak VmHWM $(mem VmHWM) kB"
