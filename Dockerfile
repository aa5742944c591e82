# syntax=docker/dockerfile:1
# The vaultsync operator image. Build from the repository root:
#   docker build -t ghcr.io/vaultsync/vaultsync:0.1.0 .
# Both stages use the same pinned base image, so the venv built in the first one runs unchanged in the
# second, which has no compilers, no build tools and no source tree: only /opt/venv.

FROM python:3.11.10-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# pyproject.toml is at the root, the package source in operator/vaultsync. README and LICENSE are the
# package's metadata when present (the wildcards let the build go on without them).
COPY pyproject.toml README* LICENSE* ./
COPY operator/ operator/

# 1. A wheel of the project alone (--no-deps). 2. A venv without pip at /opt/venv holding that wheel and
# its dependencies (pip runs from the base image and installs into the venv's interpreter); pip compiles
# the .pyc files here, since the running container's root filesystem is read-only.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/venv \
    && pip --python /opt/venv/bin/python install --no-cache-dir /wheels/*.whl

FROM python:3.11.10-slim-bookworm

LABEL org.opencontainers.image.title="vaultsync" \
      org.opencontainers.image.description="Kubernetes operator that keeps native Secrets in sync with HashiCorp Vault and OpenBao" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

COPY --from=builder /opt/venv /opt/venv

# 65532: the conventional "nonroot" uid/gid (no passwd entry needed); deploy/ runs the pod as the same ids.
USER 65532:65532
WORKDIR /tmp

ENTRYPOINT ["vaultsync"]
CMD ["run"]
