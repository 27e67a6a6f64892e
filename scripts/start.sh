#!/usr/bin/env bash
# Installs what is missing, builds the release and starts Pergola Stages on the embedded
# SQLite database (./data/pergola.db) at http://127.0.0.1:3000.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
source scripts/env.sh
# The demo application the dashboard offers to deploy on first run.
cargo build --release --locked -p pergola-demo-app
echo "==> serving http://127.0.0.1:3000 — first visit: type the setup code the server prints below"
echo "    (or set PERGOLA_ADMIN_USER and PERGOLA_ADMIN_PASSWORD to create the administrator at start-up)"
exec cargo leptos serve --release --split
