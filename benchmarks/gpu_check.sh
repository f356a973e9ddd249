#!/usr/bin/env bash
# The GPU checks of the TensorRT/GPU work in one run on an H100/H200 (about 8 minutes): `scott check` on the SD-1.5
# architecture (random weights, 512x512, every backend the host runs, against torch f32 on the GPU), then the SD-1.5
# latency table (benchmarks/gpu_sd15.py: eager, CUDA graphs, torch.compile, TAESD's tiny decoder, diffusers). Results
# land in OUT, named after the GPU.
#
#   benchmarks/gpu_check.sh benchmarks/results
#   DEVICE=cpu PRESET=tiny SD15_ARGS="--device cpu --preset tiny --batches 1 --steps 1 --reps 1 --compile \
#       --compile-batches 1" benchmarks/gpu_check.sh /tmp/out                            # a smoke run on a CPU host
set -euo pipefail
OUT=${1:?OUT folder}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-sd15}
SD15_ARGS=${SD15_ARGS:---compile --tiny-decoder}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
gpu=$($PY -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')" | tr ' ' '_')
model=$(mktemp -d)/$PRESET
$PY -m server.cli make-model --preset "$PRESET" --out "$model" --tiny-decoder
status=0
$PY -m server.cli check --model "$model" --device "$DEVICE" --max-batch-size 4 --steps 1 \
    --backends torch,torch-compile,onnx,openvino,tensorrt 2>&1 | tee "$OUT/check_$gpu.txt" || status=$?
# shellcheck disable=SC2086  # SD15_ARGS is a list of arguments
$PY -m benchmarks.gpu_sd15 --out "$OUT" $SD15_ARGS 2>&1 | tee "$OUT/gpu_sd15_$gpu.log"
rm -rf "$(dirname "$model")"
exit "$status"
