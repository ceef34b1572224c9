# selfheal as a container: the bot (without the demo and its fakes) plus the
# pinned dbt toolchain it runs, on Debian bookworm.
#
#   docker build -t selfheal .
#   docker run --rm --env-file .env --read-only --tmpfs /tmp \
#     -v selfheal-data:/var/lib/selfheal selfheal check
#
# Three stages: `builder` compiles selfheal, `dbt` installs requirements-dbt.txt
# into a venv with the project's own scripts/setup-dbt, and the runtime stage
# copies both onto debian:bookworm-slim. The dbt stage and the runtime stage use
# the same base image, so the venv's interpreter (/usr/bin/python3, Python 3.11,
# the version requirements-dbt.txt was frozen on) is the same file in both.

ARG DEBIAN=bookworm

# --- 1. the bot ----------------------------------------------------------------
FROM rust:1-${DEBIAN} AS builder
WORKDIR /src

# Dependencies first, in a layer of their own that only Cargo.toml/Cargo.lock
# invalidate: the workspace's manifests with stub sources. The fakes crate must
# be there for cargo to load the workspace (and for --locked to accept the lock
# file), but `-p selfheal --no-default-features` never compiles it.
COPY Cargo.toml Cargo.lock ./
COPY crates/selfheal-fakes/Cargo.toml crates/selfheal-fakes/Cargo.toml
RUN mkdir -p src tests/it crates/selfheal-fakes/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs tests/it/main.rs crates/selfheal-fakes/src/lib.rs \
 && cargo build --release --locked --no-default-features -p selfheal --bin selfheal \
 && rm -rf src

# Then the bot itself. The Slack app manifest is compiled in
# (src/slack/manifest.rs: include_str!("../../data/slack-app-manifest.yml")).
COPY src src
COPY data/slack-app-manifest.yml data/slack-app-manifest.yml
# COPY keeps the files' modification times, which may be older than the stub's
# build: touch them so cargo rebuilds the crate instead of keeping the stub.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --no-default-features -p selfheal --bin selfheal \
 && ./target/release/selfheal --version

# --- 2. the pinned dbt toolchain -------------------------------------------------
FROM debian:${DEBIAN}-slim AS dbt
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# The same pins and the same install as on a developer's machine and in CI:
# scripts/setup-dbt reads requirements-dbt.txt next to its scripts/ folder,
# installs with --no-deps, runs `pip check` and imports dbt, dbt-duckdb and duckdb.
COPY requirements-dbt.txt /opt/selfheal-src/requirements-dbt.txt
COPY scripts/setup-dbt /opt/selfheal-src/scripts/setup-dbt
RUN SELFHEAL_VENV=/opt/dbt bash /opt/selfheal-src/scripts/setup-dbt

# --- 3. runtime --------------------------------------------------------------------
FROM debian:${DEBIAN}-slim
# ca-certificates: Slack, the forges, the model endpoints, Paradime, dbt Cloud.
# git: every session clones SELFHEAL_REPO, commits and pushes a selfheal/ branch;
#   openssh-client for git@… remotes.
# python3: the venv's interpreter (the venv itself is copied from the dbt stage).
# tini: PID 1. selfheal kills agents and dbt by process group; grandchildren
#   left behind are re-parented to PID 1, and tini reaps them (selfheal as PID 1
#   would not). Signals are passed on, so SIGTERM still stops selfheal cleanly.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git openssh-client python3 tini \
 && rm -rf /var/lib/apt/lists/*

# A non-root user with a fixed uid, so Kubernetes' runAsUser/fsGroup can name it.
RUN groupadd --system --gid 10001 selfheal \
 && useradd --system --uid 10001 --gid selfheal --home-dir /home/selfheal --create-home \
      --shell /usr/sbin/nologin selfheal \
 && mkdir -p /var/lib/selfheal \
 && chown selfheal:selfheal /var/lib/selfheal

COPY --from=dbt /opt/dbt /opt/dbt
COPY --from=builder /src/target/release/selfheal /usr/local/bin/selfheal

# SELFHEAL_DBT: the venv's dbt (what `./scripts/setup-dbt` prints). The venv is
# also on the PATH, so command agents that run `dbt` by name find the same one.
# SELFHEAL_DB: SQLite on the volume below. Sessions work in $TMPDIR (/tmp):
# mount something writable there when the root filesystem is read-only.
ENV SELFHEAL_DBT=/opt/dbt/bin/dbt \
    SELFHEAL_DB=/var/lib/selfheal/selfheal.db \
    PATH=/opt/dbt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/home/selfheal \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1

VOLUME ["/var/lib/selfheal"]
# No .env lives here or above it: configuration comes from the environment.
WORKDIR /var/lib/selfheal
USER 10001:10001

# The health endpoints and metrics (SELFHEAL_HTTP_ADDR=0.0.0.0:9090: /healthz,
# /readyz, /metrics); nothing listens here unless it is set.
EXPOSE 9090

# No HEALTHCHECK: the image carries no curl, and Kubernetes probes /healthz and
# /readyz itself (deploy/kubernetes/). `selfheal check` is the manual check.
ENTRYPOINT ["/usr/bin/tini", "--", "selfheal"]
CMD ["run"]
