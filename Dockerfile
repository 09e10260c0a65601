# jmap-gateway: the production image.
#
#   docker build -t jmap-gateway:0.1.0 .
#   docker run -e GATEWAY_IMAP_URL=imaps://mail.example.com -e GATEWAY_REDIS_URL=redis://redis:6379/0 \
#     -e GATEWAY_PUBLIC_URL=https://jmap.example.com -e GATEWAY_SECRET=... -p 8080:8080 -p 9090:9090 \
#     jmap-gateway:0.1.0
#
# Configured only by GATEWAY_* environment variables (README, "Configuration"). The image listens
# on every address (GATEWAY_HOST=0.0.0.0), so the gateway refuses to start until the operator sets
# GATEWAY_PUBLIC_URL, the URL clients reach it at. Runs as UID/GID 10001, never root.

# Both stages use the same base, so the venv's interpreter links stay valid in the final stage.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Every dependency ships binary wheels for linux amd64 and arm64, so no compiler is needed here.
# The venv has no pip of its own: the base image's pip installs into it from outside.
RUN python -m venv --without-pip /opt/venv
COPY pyproject.toml README.md LICENSE deploy/constraints.txt ./
COPY gateway ./gateway
# The versions the test command ran with (deploy/constraints.txt), not whatever is newest today.
RUN pip --python /opt/venv/bin/python install --no-cache-dir --constraint constraints.txt . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="jmap-gateway" \
      org.opencontainers.image.description="A JMAP gateway in front of IMAP and SMTP servers" \
      org.opencontainers.image.licenses="GPL-3.0-or-later"
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin gateway
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080
# A numeric user, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
# 8080: JMAP over HTTP (GATEWAY_PORT); 9090: Prometheus metrics (GATEWAY_METRICS_PORT).
EXPOSE 8080 9090
# The slim image has no curl: the standard library asks /healthz (liveness, not readiness), at
# the address the gateway listens on (loopback when it listens on every address).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; h = os.environ.get('GATEWAY_HOST', '0.0.0.0').strip('[]'); h = '127.0.0.1' if h in ('0.0.0.0', '::', '') else f'[{h}]' if ':' in h else h; r.urlopen(f\"http://{h}:{os.environ.get('GATEWAY_PORT', '8080')}/healthz\", timeout=4)"]
ENTRYPOINT ["jmap-gateway"]
CMD ["serve"]
