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
#
# No `# syntax=` line: it makes BuildKit pull its frontend image from Docker Hub first, which fails offline and
# behind mirrors; the frontend built into Docker >= 20.10 has everything used here (RUN --mount).
# Few layers on purpose: sources come in through bind mounts rather than COPY, and each large stage adds one or two
# layers (the CPU image is built in the test suite on Docker's vfs storage, which copies every layer in full).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04
ARG TORCH_VERSION=2.13.0
ARG TENSORRT_VERSION=10.16.1.11
# The CPU torch: PyTorch's CPU wheel index (it also serves torch's dependencies). A mirror or a local PEP 503 index
# can stand in: `--build-arg TORCH_INDEX_URL=...` (tests/test_deploy_image.py serves one from this machine's wheels).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# -- wheel: the package, built once and installed into both runtimes -----------------------------
FROM ${PYTHON_IMAGE} AS wheel
RUN --mount=type=bind,source=pyproject.toml,target=/src/pyproject.toml \
    --mount=type=bind,source=README.md,target=/src/README.md \
    --mount=type=bind,source=scott,target=/src/scott \
    --mount=type=bind,source=engines,target=/src/engines \
    --mount=type=bind,source=server,target=/src/server \
    --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps --wheel-dir /dist /src

# -- cpu-base: the unprivileged user, torch's CPU wheel first (so pip never swaps in a CUDA build), then the package,
# in one layer
FROM ${PYTHON_IMAGE} AS cpu-base
ARG TORCH_VERSION
ARG TORCH_INDEX_URL
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=wheel,source=/dist,target=/dist \
    --mount=type=cache,target=/root/.cache/pip \
    useradd --system --uid 10001 --user-group --create-home --home-dir /home/scott scott \
    && install -d -o scott -g scott /var/cache/scott \
    && python -m venv /opt/venv \
    && pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
    && pip install "$(ls /dist/scott_serve-*.whl)"

# -- model: /opt/scott, the embedded model with its ONNX export (checked by one real generation) and the health check
FROM cpu-base AS model
# models/ is in the repository, the trained default model (models/scott-tiny) with it: a build without it fails
# rather than baking random weights.
RUN --mount=type=bind,source=models,target=/ctx/models \
    --mount=type=bind,source=deploy/docker/healthcheck.py,target=/ctx/healthcheck.py \
    set -eu; mkdir -p /opt/scott; cp -R /ctx/models /ctx/healthcheck.py /opt/scott/; m=/opt/scott/models/scott-tiny; \
    test -f "$m/model_index.json" || { echo "no $m in the build context" >&2; exit 1; }; \
    if [ ! -f "$m/onnx/manifest.json" ]; then scott export --model "$m" --out "$m/onnx"; fi; \
    SCOTT_CACHE_DIR=/tmp/scott-cache scott generate "a red circle" --model "$m" --backend openvino --out /tmp/smoke.png; \
    rm -rf /tmp/smoke.png /tmp/scott-cache /root/.cache/*; \
    chmod -R a+rX,go-w /opt/scott  # the export's files are written 0600 (atomic writes): the server's user reads them

# -- cpu: the CPU image, the model stage itself (a COPY of /opt/scott would be one more layer of the whole runtime)
FROM model AS cpu
LABEL org.opencontainers.image.title="scott-serve (CPU)" \
      org.opencontainers.image.licenses="Apache-2.0"
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
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/scott scott \
    && install -d -o scott -g scott /var/cache/scott \
    && python3 -m venv /opt/venv
# tensorrt-cu13 is a stub whose libraries and bindings come from NVIDIA's package index.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --extra-index-url https://pypi.nvidia.com \
        "torch==${TORCH_VERSION}" "tensorrt-cu13==${TENSORRT_VERSION}"
RUN --mount=type=bind,from=wheel,source=/dist,target=/dist \
    --mount=type=cache,target=/root/.cache/pip \
    pip install "$(ls /dist/scott_serve-*.whl)"
COPY --from=model /opt/scott /opt/scott
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
