#!/usr/bin/env bash
# Installs everything Pergola Stages needs to build, run and test, on Debian 12.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# System packages: a C toolchain (for Rust), Node.js + npm (Tailwind, wasm-opt, Playwright),
# Chromium (browser tests), PostgreSQL (the production backend, tested too), bubblewrap (the
# sandbox every component runs in).
packages=()
command -v cc >/dev/null || packages+=(build-essential)
command -v pkg-config >/dev/null || packages+=(pkg-config)
command -v curl >/dev/null || packages+=(curl ca-certificates)
command -v git >/dev/null || packages+=(git)
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
[ -x /usr/bin/chromium ] || packages+=(chromium)
command -v python3 >/dev/null || packages+=(python3)
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv)
command -v psql >/dev/null || packages+=(postgresql-client)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || packages+=(postgresql)
command -v bwrap >/dev/null || packages+=(bubblewrap)
# wrk: the benchmark scripts (scripts/bench-*.sh) measure with it.
command -v wrk >/dev/null || packages+=(wrk)
if [ ${#packages[@]} -gt 0 ]; then
  echo "==> apt-get install ${packages[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${packages[@]}"
fi

# Node.js 20 or newer (Playwright and Tailwind need it; Debian 12's own nodejs is 18): the `n`
# version manager from the npm registry installs it.
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "==> installing Node.js 20 (found ${node_major})"
  $SUDO npm install -g n
  $SUDO n 20
  hash -r
fi

# Rust (stable) with the wasm target.
if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  echo "==> installing Rust (rustup)"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
source scripts/env.sh
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

# cargo-leptos 0.3.10 (0.3.11 needs a newer rustc; no_downloads: it must not fetch tools).
if ! cargo leptos --version 2>/dev/null | grep -q '0\.3\.10'; then
  echo "==> cargo install cargo-leptos 0.3.10 (about 20 minutes, once)"
  cargo install cargo-leptos --version 0.3.10 --locked --features no_downloads
fi
# wasm-bindgen-cli must match the wasm-bindgen pinned in Cargo.toml.
if ! wasm-bindgen --version 2>/dev/null | grep -q '0\.2\.130'; then
  echo "==> cargo install wasm-bindgen-cli 0.2.130"
  cargo install wasm-bindgen-cli --version 0.2.130
fi

# Tailwind CSS, wasm-opt (binaryen) and Playwright, pinned by package-lock.json.
if [ ! -x node_modules/.bin/tailwindcss ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "==> npm ci"
  npm ci --no-audit --no-fund
fi
# schemathesis (PyPI), pinned: checks the REST API against its OpenAPI document.
if ! .tools/venv/bin/schemathesis --version 2>/dev/null | grep -q '4\.32\.5'; then
  echo "==> pip install schemathesis 4.32.5 (in .tools/venv)"
  # Debian's Python: a pyenv 3.11.7 on PATH has a CPython bug (ast.parse "recursion depth
  # mismatch") that breaks hypothesis.
  /usr/bin/python3 -m venv .tools/venv
  .tools/venv/bin/pip install -q --disable-pip-version-check schemathesis==4.32.5
fi
# kubernetes-validate (PyPI), pinned: the official Kubernetes JSON schemas, against which the
# Kubernetes runtime's objects are checked (kubernetes/tests/schema.rs).
if ! .tools/venv/bin/kubernetes-validate --version 2>/dev/null | grep -q '1\.34\.1'; then
  echo "==> pip install kubernetes-validate 1.34.1 (in .tools/venv)"
  .tools/venv/bin/pip install -q --disable-pip-version-check kubernetes-validate==1.34.1
fi
site_packages=$(.tools/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if ! cmp -s scripts/hypothesis_guard.py "$site_packages/pergola_hypothesis_guard.py"; then
  cp scripts/hypothesis_guard.py "$site_packages/pergola_hypothesis_guard.py"
  echo "import pergola_hypothesis_guard" > "$site_packages/pergola_hypothesis_guard.pth"
fi
echo "==> tools ready"
