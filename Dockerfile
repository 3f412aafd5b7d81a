# syntax=docker/dockerfile:1
# switchboard's image: one image for nodes and services (the blueprint's compose and
# Kubernetes files run it with `serve` or `service NAME` as arguments).
#
#   make image                      # docker or podman, tag switchboard:<version>
#   docker run -p 8080:8080 switchboard:<version> serve
#
# The version is written once, in pyproject.toml: `make image` passes it as VERSION, and the
# build stops unless the installed package reports the same one.
#
# Stage 1 builds a virtualenv with the locked runtime dependencies (requirements.lock is the
# constraint file, so the image holds exactly the versions the tests ran, and none of the dev
# tools); stage 2 copies only that virtualenv onto a slim base and runs as a non-root user.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ARG VERSION
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/switchboard
COPY requirements.lock pyproject.toml README.md ./
COPY src ./src
# The lock pins the dev tools too; as constraints, only what the package and every extra
# need is installed (one image runs every profile, its services and the local cluster).
RUN /opt/switchboard/bin/pip install --constraint requirements.lock ".[all]" \
    && /opt/switchboard/bin/switchboard --help > /dev/null \
    && test "$(/opt/switchboard/bin/switchboard --version)" = "switchboard ${VERSION}"

FROM python:${PYTHON_VERSION}-slim-bookworm
ARG VERSION
LABEL org.opencontainers.image.title="switchboard" \
      org.opencontainers.image.description="A backend for Retell AI custom-LLM voice agents, from one process to a cluster" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/switchboard/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SWITCHBOARD_HOST=0.0.0.0 \
    SWITCHBOARD_PORT=8080
RUN groupadd --system --gid 10001 switchboard \
    && useradd --system --uid 10001 --gid switchboard --home-dir /var/lib/switchboard \
       --no-create-home --shell /usr/sbin/nologin switchboard \
    && install -d -o switchboard -g switchboard -m 0750 /var/lib/switchboard /var/lib/switchboard/outbox
COPY --from=build /opt/switchboard /opt/switchboard
USER 10001:10001
WORKDIR /var/lib/switchboard
EXPOSE 8080
# /readyz answers 200 only while the node takes calls (503 while it drains); python is the
# probe because the slim base has no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('SWITCHBOARD_PORT', '8080'), timeout=2)"]
# Exec form: switchboard is PID 1 and gets SIGTERM itself, so a stopping container drains.
ENTRYPOINT ["switchboard"]
CMD ["serve"]
