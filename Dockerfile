# Multi-stage build of silentauth-worker: one image serves `run` (the worker) and `simulate`.
# librdkafka is built from source by rdkafka-sys (C/C++ toolchain, make, perl, python3, zlib),
# linked against OpenSSL (libssl-dev) and a cyrus-sasl built from source by sasl2-sys.

FROM rust:1-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake perl python3 pkg-config zlib1g-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin silentauth-worker \
 && cp target/release/silentauth-worker /usr/local/bin/silentauth-worker

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home silentauth
COPY --from=builder /usr/local/bin/silentauth-worker /usr/local/bin/silentauth-worker
COPY config/default.toml /etc/silentauth/default.toml
COPY config/simulator.toml /etc/silentauth/simulator.toml
USER silentauth
EXPOSE 9464 8080
ENTRYPOINT ["/usr/local/bin/silentauth-worker", "--log-format", "json"]
CMD ["run", "--config", "/etc/silentauth/default.toml"]
