#!/usr/bin/env bash
# Installs what is missing, builds the release and starts Pergola Stages on the embedded
# SQLite database (./data/pergola.db) at http://127.0.0.1:3000.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
source scripts/env.sh
# The demo application the dashboard offers to deploy on first run.
cargo build --release --locked -p pergola-demo-app
exec cargo leptos serve --release
