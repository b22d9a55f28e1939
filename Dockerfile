# syntax=docker/dockerfile:1
# The feature fetcher's image: `docker build -t feature-fetcher .` from the repo root.
# Three stages: grpc_health_probe from the Go module pinned in scripts/setup.sh, the
# project installed into a venv with build tools at hand, and a slim runtime that gets
# only the venv, the probe and the config (no compiler, no pip cache, non-root).

ARG PYTHON_IMAGE=python:3.11-slim
ARG GO_IMAGE=golang:1.26-bookworm

FROM ${GO_IMAGE} AS probe
# Same module and version as GO_TOOLS in scripts/setup.sh (tests/unit/test_deploy.py checks).
RUN CGO_ENABLED=0 GOBIN=/out \
    go install -trimpath -ldflags="-s -w" github.com/grpc-ecosystem/grpc-health-probe@v0.4.62

FROM ${PYTHON_IMAGE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# A compiler only for the rare dependency without a wheel for this platform.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential=12.* \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first, so editing the code does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p fetcher kvstores \
    && touch fetcher/__init__.py kvstores/__init__.py \
    && /opt/venv/bin/pip install . \
    && /opt/venv/bin/pip uninstall -y feature-fetcher
COPY fetcher ./fetcher
COPY kvstores ./kvstores
RUN /opt/venv/bin/pip install --no-deps . \
    && /opt/venv/bin/fetcher --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
# A fixed uid/gid, so Kubernetes' runAsUser and volume ownership can name it.
ARG FETCHER_UID=10001
RUN groupadd --system --gid "${FETCHER_UID}" fetcher \
    && useradd --system --uid "${FETCHER_UID}" --gid fetcher --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin fetcher
COPY --from=builder /opt/venv /opt/venv
COPY --from=probe /out/grpc-health-probe /usr/local/bin/grpc_health_probe
COPY config/demo /etc/fetcher/catalog
COPY deploy/settings.toml /etc/fetcher/settings.toml
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FETCHER_SETTINGS=/etc/fetcher/settings.toml \
    FETCHER__SERVER__LISTEN=0.0.0.0:50051 \
    FETCHER__SERVER__METRICS_LISTEN=0.0.0.0:9100
WORKDIR /var/lib/fetcher
USER ${FETCHER_UID}:${FETCHER_UID}
EXPOSE 50051 9100
# Readiness (the FeatureService health status): NOT_SERVING while a required store is
# down or while draining, which is what `depends_on: service_healthy` should wait for.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["grpc_health_probe", "-addr=127.0.0.1:50051", "-service=fetcher.v1.FeatureService", "-connect-timeout=2s", "-rpc-timeout=2s"]
ENTRYPOINT ["fetcher"]
CMD ["serve", "--settings", "/etc/fetcher/settings.toml"]
