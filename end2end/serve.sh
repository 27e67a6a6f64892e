#!/usr/bin/env bash
# Starts the release server for the end-to-end tests.
# Usage: serve.sh sqlite|postgres|unsandboxed|defaults PORT
#   sqlite, postgres: a fresh database and data dir in /tmp, a 5 s grace period; builds are
#   uploaded archives only (PERGOLA_PATH_BUILDS at its default, off), as on any server.
#   unsandboxed: as sqlite, with PERGOLA_SANDBOX=off.
#   defaults: as `scripts/start.sh` runs it — from a workspace root (a fresh one whose `target`
#   is this one's, so `./data` starts empty), with every PERGOLA_* setting at its default: the
#   data dir is the relative `./data` and the database `./data/pergola.db`.
set -euo pipefail
cd "$(dirname "$0")/.."
backend=$1
port=$2
export LEPTOS_SITE_ADDR="127.0.0.1:$port" LEPTOS_SITE_ROOT=target/site LEPTOS_ENV=PROD
export RUST_LOG="${RUST_LOG:-warn}"
if [ "$backend" = defaults ]; then
  # No administrator from the environment: the first visit asks for the setup code the server
  # prints; its log is kept where defaults.spec.ts reads the code.
  unset PERGOLA_DATA_DIR DATABASE_URL PERGOLA_GRACE_SECS PERGOLA_ADMIN_USER PERGOLA_ADMIN_PASSWORD
  root=$(mktemp -d /tmp/pergola-e2e-root.XXXXXX)
  ln -s "$PWD/target" "$root/target"
  cd "$root"
  exec target/release/pergola-server 2> >(tee /tmp/pergola-e2e-defaults.log >&2)
fi
# The administrator every test signs in as (global-setup.ts).
export PERGOLA_ADMIN_USER=admin PERGOLA_ADMIN_PASSWORD=e2e-admin-password
export PERGOLA_GRACE_SECS=5
unset PERGOLA_PATH_BUILDS
dir=$(mktemp -d /tmp/pergola-e2e.XXXXXX)
export PERGOLA_DATA_DIR="$dir"
case "$backend" in
  sqlite)
    export DATABASE_URL="sqlite://$dir/pergola.db"
    ;;
  unsandboxed)
    export DATABASE_URL="sqlite://$dir/pergola.db" PERGOLA_SANDBOX=off
    ;;
  postgres)
    admin="${PERGOLA_TEST_POSTGRES_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
    psql "$admin" -qc "DROP DATABASE IF EXISTS pergola_e2e WITH (FORCE)" -c "CREATE DATABASE pergola_e2e"
    export DATABASE_URL="${admin%/*}/pergola_e2e"
    ;;
  *) echo "usage: serve.sh sqlite|postgres|unsandboxed|defaults PORT" >&2; exit 2 ;;
esac
exec target/release/pergola-server
