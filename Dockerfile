# syntax=docker/dockerfile:1
# kubelogs container image: the agent (DaemonSet), and any other role chosen by config.
#
#   docker build -t kubelogs:0.1.0 .
#   docker run --read-only -v kubelogs-data:/var/lib/kubelogs kubelogs:0.1.0 version
#
# The root filesystem can be mounted read-only: the package is byte-compiled at build
# time (nothing is written at start) and the only writable path is data_dir
# (/var/lib/kubelogs: checkpoints, buffers, the local store).
# tests/deploy/test_dockerfile.py checks this file: the user, the entry point, that every
# COPY source exists and that the install steps below are the ones CI runs (.ci/run).

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- build: a virtual environment in /opt/kubelogs, installed from uv.lock only -------
FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
ENV UV_PROJECT_ENVIRONMENT=/opt/kubelogs \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python3 -m pip install --no-cache-dir "uv==${UV_VERSION}"
# Dependencies first (their layer survives changes to the source), then the package.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-editable --no-install-project
COPY src ./src
RUN uv sync --frozen --no-dev --no-editable
# Byte-compile everything (the package and its dependencies) now: the root filesystem is
# read-only at run time and a cold start must not compile anything.
RUN /opt/kubelogs/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/kubelogs

# --- runtime ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="kubelogs" \
      org.opencontainers.image.description="Kubernetes cluster-level logging in Python" \
      org.opencontainers.image.licenses="Apache-2.0"
# An unprivileged user owns data_dir. The Helm chart runs the agent as root with every
# capability dropped where the node's log files are readable by root only (see
# deploy/helm/kubelogs/values.yaml, securityContext).
RUN groupadd --system --gid 10001 kubelogs \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/kubelogs \
            --no-create-home --shell /usr/sbin/nologin kubelogs \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/kubelogs
COPY --from=build /opt/kubelogs /opt/kubelogs
# The interpreter's own standard library too (slim images ship it without .pyc files).
RUN python3 -m compileall -q -j 0 --invalidation-mode unchecked-hash \
      "$(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')"
ENV PATH=/opt/kubelogs/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_MMAP_THRESHOLD_=268435456 \
    MALLOC_TRIM_THRESHOLD_=1073741824
# The malloc settings are the benchmarks' (bench/agent_bench.py, README "Performance");
# `kubelogs run` would apply the same with mallopt, the environment makes them explicit.
USER 10001:10001
WORKDIR /var/lib/kubelogs
VOLUME ["/var/lib/kubelogs"]
EXPOSE 24231
STOPSIGNAL SIGTERM
# /healthz of the API (api.listen, 127.0.0.1:24231 by default; the chart sets 0.0.0.0).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python3", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:24231/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["kubelogs"]
CMD ["run"]
