# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run in a small Debian image as a non-root user.
#   docker build -t wagate .
#   docker run -p 8080:8080 -v wagate-data:/var/lib/wagate/data wagate          # SQLite
#   deploy/compose.yaml: two instances on PostgreSQL behind nginx (deploy/README.md)
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY config ./config
# The registry and target folders are BuildKit caches, so a rebuild after a source change only
# recompiles wagate; the binary is copied out of the cache in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && strip target/release/wagate \
    && cp target/release/wagate /usr/local/bin/wagate

FROM debian:bookworm-slim
# busybox (under 1 MB, libc only) gives the health check its wget; curl would bring libcurl and
# a dozen libraries. The data folder is created here, owned by wagate, so a named volume
# mounted on it starts out writable by the non-root user (else Docker creates it root-owned).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates busybox \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/wagate --create-home wagate \
    && install -d -o wagate -g wagate -m 0750 /var/lib/wagate/data
COPY --from=build /usr/local/bin/wagate /usr/local/bin/wagate
COPY config/wagate.toml /etc/wagate/wagate.toml
USER wagate
WORKDIR /var/lib/wagate
# SQLite by default (data/wagate.db and data/master.key in the volume; the writer's spill file,
# which must survive a restart of this container, too); set
# WAGATE__DATABASE__URL=postgres://… and WAGATE__SECURITY__MASTER_KEY for PostgreSQL.
ENV WAGATE__SERVER__LISTEN=0.0.0.0:8080 \
    WAGATE__DATABASE__URL=sqlite:///var/lib/wagate/data/wagate.db \
    WAGATE__SECURITY__BOOTSTRAP_KEY_FILE=/var/lib/wagate/data/initial-api-key \
    WAGATE__WRITER__SPILL_PATH=/var/lib/wagate/data/wagate.spill \
    WAGATE__LOG__FORMAT=json
EXPOSE 8080
VOLUME ["/var/lib/wagate/data"]
# /healthz: the process serves (use /readyz from a load balancer: it also checks the database).
# No -T: Debian 12's busybox 1.35 wget segfaulted with -T when tried; --timeout bounds the check.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/healthz"]
# wagate handles SIGTERM itself (stops accepting, drains for server.shutdown_grace, 30s):
# give `docker stop` more than that (docker stop -t 40, compose stop_grace_period: 40s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/wagate", "--config", "/etc/wagate/wagate.toml"]
CMD ["serve"]
