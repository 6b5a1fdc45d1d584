# Multi-stage build: compile in the Rust image, run in a small Debian image as a non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY config ./config
RUN cargo build --release --locked && strip target/release/wagate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/wagate --create-home wagate
COPY --from=build /src/target/release/wagate /usr/local/bin/wagate
COPY config/wagate.toml /etc/wagate/wagate.toml
USER wagate
WORKDIR /var/lib/wagate
ENV WAGATE__SERVER__LISTEN=0.0.0.0:8080 \
    WAGATE__DATABASE__URL=sqlite:///var/lib/wagate/data/wagate.db \
    WAGATE__LOG__FORMAT=json
EXPOSE 8080
VOLUME ["/var/lib/wagate/data"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/wagate", "--config", "/etc/wagate/wagate.toml"]
CMD ["serve"]
