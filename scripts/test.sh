#!/usr/bin/env bash
# Runs every test: domain unit + property tests, the store/service suite on SQLite and
# PostgreSQL, and the Playwright end-to-end tests in Chromium against servers on both databases.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
source scripts/env.sh

PG_ADMIN_URL="${PERGOLA_TEST_POSTGRES_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
export PERGOLA_TEST_POSTGRES_URL="$PG_ADMIN_URL"

# PostgreSQL must be up, and reachable with the test URL's password.
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "==> starting PostgreSQL"
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if ! psql "$PG_ADMIN_URL" -qAtc 'SELECT 1' >/dev/null 2>&1; then
  echo "==> setting the postgres user's password for the tests"
  (cd /tmp && runuser -u postgres -- psql -qc "ALTER USER postgres PASSWORD 'postgres'")
fi
# Databases left behind by interrupted runs.
psql "$PG_ADMIN_URL" -qAtc "SELECT datname FROM pg_database WHERE datname LIKE 'pergola_test_%'" |
  while read -r db; do psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"; done

echo "==> formatting (cargo fmt --check) and lints (clippy, -D warnings: server side, then the wasm frontend)"
cargo fmt --all --check
cargo clippy --locked --all-targets -- -D warnings
# The Kubernetes runtime, behind its cargo feature: the server built with it, and its tests.
cargo clippy --locked -p server -p pergola-kubernetes --features server/kubernetes --all-targets -- -D warnings
cargo clippy --locked -p app --features ssr --all-targets -- -D warnings
cargo clippy --locked -p frontend -p app --features app/hydrate --target wasm32-unknown-unknown -- -D warnings

echo "==> unit, property, store, REST API, CLI, runtime and Kubernetes tests (SQLite and PostgreSQL)"
cargo test --locked -p pergola-domain -p pergola-core -p pergola-api -p pergola-cli -p pergola-runtime \
  -p pergola-kubernetes -p server --features pergola-kubernetes/client,server/kubernetes

echo "==> release build (server, wasm frontend, demo app)"
cargo build --release --locked -p pergola-demo-app
cargo leptos build --release --split

echo "==> REST contract: schemathesis, every check, against the served OpenAPI document"
bash scripts/contract.sh

echo "==> end-to-end tests (Chromium, SQLite and PostgreSQL, and the start.sh defaults)"
cargo leptos end-to-end --release --split
