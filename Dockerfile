# syntax=docker/dockerfile:1.7
# SCott Serve images, two targets from one file (README "Deploy"):
#   docker build -t scott-serve:0.1.0 .                    GPU (default): CUDA 13.0 + TensorRT 10, backend tensorrt
#   docker build --target cpu -t scott-serve:0.1.0-cpu .   CPU: python 3.11 slim, torch CPU wheel, backend openvino
# Both carry the default model (models/scott-tiny, committed: the SCott-distilled embedded model)
# with its ONNX export, run as an unprivileged user, and keep exports and TensorRT engines in /var/cache/scott
# (a volume: engines are built there on the first start on a GPU and reused after).
#
# Versions that must agree: PyPI's torch 2.13.0 Linux wheel is the CUDA 13.0 build (it pulls cuda-toolkit 13.0.x
# wheels), so the GPU base is CUDA 13.0 and TensorRT is tensorrt-cu13. The host needs an NVIDIA driver for CUDA 13
# (>= 580) and the NVIDIA container toolkit.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04
ARG TORCH_VERSION=2.13.0
ARG TENSORRT_VERSION=10.16.1.11

# -- wheel: the package, built once and installed into both runtimes -----------------------------
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scott ./scott
COPY engines ./engines
COPY server ./server
RUN --mount=type=cache,target=/root/.cache/pip pip wheel --no-deps --wheel-dir /dist .

# -- cpu-base: torch's CPU wheel first (so pip never swaps in a CUDA build), then the package -----
FROM ${PYTHON_IMAGE} AS cpu-base
ARG TORCH_VERSION
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"
RUN --mount=type=bind,from=wheel,source=/dist,target=/dist \
    --mount=type=cache,target=/root/.cache/pip \
    pip install "$(ls /dist/scott_serve-*.whl)"

# -- model: the embedded model and its ONNX export, checked by one real generation --------------
FROM cpu-base AS model
WORKDIR /opt/scott
# models/ is in the repository, the trained default model (models/scott-tiny) with it: a build without it fails
# rather than baking random weights.
COPY models/ ./models/
RUN set -eu; m=models/scott-tiny; \
    test -f "$m/model_index.json" || { echo "no $m in the build context" >&2; exit 1; }; \
    if [ ! -f "$m/onnx/manifest.json" ]; then scott export --model "$m" --out "$m/onnx"; fi; \
    SCOTT_CACHE_DIR=/tmp/scott-cache scott generate "a red circle" --model "$m" --backend openvino --out /tmp/smoke.png; \
    rm -rf /tmp/smoke.png /tmp/scott-cache

# -- cpu: the CPU image ---------------------------------------------------------------------------
FROM cpu-base AS cpu
LABEL org.opencontainers.image.title="scott-serve (CPU)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/scott scott \
    && mkdir -p /var/cache/scott \
    && chown scott:scott /var/cache/scott
WORKDIR /opt/scott
COPY --from=model /opt/scott/models ./models
COPY deploy/docker/healthcheck.py ./healthcheck.py
ENV SCOTT_HOST=0.0.0.0 \
    SCOTT_PORT=8000 \
    SCOTT_MODEL_DIR=/opt/scott/models/scott-tiny \
    SCOTT_BACKEND=openvino \
    SCOTT_DEVICE=cpu \
    SCOTT_CACHE_DIR=/var/cache/scott
VOLUME ["/var/cache/scott"]
EXPOSE 8000
USER 10001:10001
HEALTHCHECK --interval=10s --timeout=5s --start-period=2m --retries=3 \
    CMD ["python", "/opt/scott/healthcheck.py", "/readyz"]
ENTRYPOINT ["scott"]
CMD ["serve"]

# -- gpu: the GPU image (default target) ----------------------------------------------------------
FROM ${CUDA_IMAGE} AS gpu
ARG TORCH_VERSION
ARG TENSORRT_VERSION
ARG DEBIAN_FRONTEND=noninteractive
LABEL org.opencontainers.image.title="scott-serve (CUDA + TensorRT)" \
      org.opencontainers.image.licenses="Apache-2.0"
# Ubuntu 24.04's python3 is 3.12; the versions of CUDA and TensorRT are pinned by the base tag and the pip pins.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
# tensorrt-cu13 is a stub whose libraries and bindings come from NVIDIA's package index.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --extra-index-url https://pypi.nvidia.com \
        "torch==${TORCH_VERSION}" "tensorrt-cu13==${TENSORRT_VERSION}"
RUN --mount=type=bind,from=wheel,source=/dist,target=/dist \
    --mount=type=cache,target=/root/.cache/pip \
    pip install "$(ls /dist/scott_serve-*.whl)"
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/scott scott \
    && mkdir -p /var/cache/scott \
    && chown scott:scott /var/cache/scott
WORKDIR /opt/scott
COPY --from=model /opt/scott/models ./models
COPY deploy/docker/healthcheck.py ./healthcheck.py
# The first start on a new GPU (or TensorRT version) exports nothing (the export is baked in) but builds the
# TensorRT engines into the cache volume: minutes for SD-1.5-size models, hence the long start period.
ENV SCOTT_HOST=0.0.0.0 \
    SCOTT_PORT=8000 \
    SCOTT_MODEL_DIR=/opt/scott/models/scott-tiny \
    SCOTT_BACKEND=tensorrt \
    SCOTT_CACHE_DIR=/var/cache/scott
VOLUME ["/var/cache/scott"]
EXPOSE 8000
USER 10001:10001
HEALTHCHECK --interval=10s --timeout=5s --start-period=30m --retries=3 \
    CMD ["python", "/opt/scott/healthcheck.py", "/readyz"]
ENTRYPOINT ["scott"]
CMD ["serve"]
