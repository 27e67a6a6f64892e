#!/usr/bin/env bash
# Checks the REST API against its own OpenAPI document with schemathesis: every check, a bounded
# run (a fixed seed and number of examples per operation) against the release server on a fresh
# SQLite database; schemathesis.toml holds the checks. Usage: scripts/contract.sh [EXTRA SCHEMATHESIS OPTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
server="${CARGO_TARGET_DIR:-target}/release/pergola-server"
port="${PERGOLA_CONTRACT_PORT:-3310}"
dir=$(mktemp -d /tmp/pergola-contract.XXXXXX)
PERGOLA_ADMIN_USER=admin PERGOLA_ADMIN_PASSWORD=contract-password \
  PERGOLA_DATA_DIR="$dir" LEPTOS_SITE_ADDR="127.0.0.1:$port" LEPTOS_SITE_ROOT=target/site LEPTOS_ENV=PROD \
  RUST_LOG="${RUST_LOG:-warn}" PERGOLA_GRACE_SECS=2 "$server" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
# The administrator's API token: every generated request carries it.
token=$(curl -fsS -X POST -H 'Content-Type: application/json' \
  -d '{"username": "admin", "password": "contract-password", "token_name": "schemathesis-contract-run"}' \
  "http://127.0.0.1:$port/api/v1/login" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
[ -n "$token" ] || { echo "contract: could not sign in" >&2; exit 1; }
# The project the generated requests work in (schemathesis.toml).
curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' -H "Authorization: Bearer $token" \
  -d '{"name": "Contract", "id": "contract"}' "http://127.0.0.1:$port/api/v1/projects"
# Every check (schemathesis.toml, with its reasoned exceptions), a fixed seed, a bounded run, as
# the administrator (logout is left out: it would revoke the token the run uses; the live
# streams of changes are left out: a server-sent events stream never ends by itself, which
# schemathesis would count as a timeout — api/tests/api.rs checks them instead).
.tools/venv/bin/schemathesis run "http://127.0.0.1:$port/api/v1/openapi.json" \
  --max-examples 50 --seed 20261129 --workers 2 --request-timeout 10 \
  --no-color --output-truncate true --generation-database none \
  --header "Authorization: Bearer $token" \
  --exclude-path /api/v1/logout \
  --exclude-path-regex '/changes$' \
  "$@"
