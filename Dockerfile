# The Pergola Stages server with the Kubernetes runtime, for deploy/kubernetes/.
#   docker build -t registry.example.com/pergola/pergola-server:0.1.0 .
# (Not built by the test suite: these machines have no container engine.)

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Node.js 20 (Tailwind, wasm-opt from npm), the wasm target, cargo-leptos and wasm-bindgen —
# the versions scripts/install.sh pins.
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm && rm -rf /var/lib/apt/lists/* \
    && npm install -g n && n 20 && hash -r
RUN rustup target add wasm32-unknown-unknown \
    && cargo install cargo-leptos --version 0.3.10 --locked --features no_downloads \
    && cargo install wasm-bindgen-cli --version 0.2.130
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN cargo leptos build --release --split --bin-features kubernetes

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin pergola
COPY --from=build /src/target/release/pergola-server /src/target/release/hash.txt /app/
COPY --from=build /src/target/site /app/site
ENV LEPTOS_SITE_ROOT=/app/site \
    LEPTOS_OUTPUT_NAME=pergola \
    LEPTOS_ENV=PROD \
    LEPTOS_SITE_ADDR=0.0.0.0:3000 \
    LEPTOS_HASH_FILES=true \
    PERGOLA_RUNTIME=kubernetes \
    PERGOLA_DATA_DIR=/data
USER 10001
EXPOSE 3000
WORKDIR /app
ENTRYPOINT ["/app/pergola-server"]
