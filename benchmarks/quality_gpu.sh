#!/usr/bin/env bash
# The whole SCott evidence grid on one GPU host, from scratch, in one command: the embedded model's teacher trained by
# its own recipe (`python -m scott.recipe.embedded --until teacher`, adopting the shipped VAE), then
# benchmarks.quality on that teacher: the four methods (LCM, CD with h sub-steps, LCM + adversarial, SCott) and
# SCott's eta ablation (eta read on SD-1.5's schedule at 0.15 / 0.3 / 0.6, and eta as is), each at SEEDS training
# seeds, every distillation on the GPU at once, then the validation of the metrics on the same teacher.
#
#   benchmarks/quality_gpu.sh WORK OUT
#   TEACHER=runs/embedded/teacher/model benchmarks/quality_gpu.sh WORK OUT    # a teacher trained before
#   DEVICE=cpu RECIPE=configs/recipe/embedded-quick.toml QUALITY_ARGS="--prompts 4 --n-per-prompt 2" \
#       DISTILL_STEPS=20 JOBS=2 benchmarks/quality_gpu.sh WORK OUT            # a dry run on a CPU host
#
# WORK: scratch folder (a rerun on the same WORK resumes: the recipe from its checkpoints, finished distillations
# and evaluated rows are skipped); OUT: where the reports land (recipe.log, quality.json, quality.log, grid.png/.txt).
# The recipe trains on the CPU (scott.recipe has no device option): its teacher stage takes ~41 minutes at the
# config's 2 threads; THREADS=N is faster on a larger host but changes the weights (they depend on the thread count).
set -euo pipefail
WORK=${1:?WORK folder}
OUT=${2:?OUT folder}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
RECIPE=${RECIPE:-configs/recipe/embedded.toml}
VAE=${VAE-models/scott-tiny/vae}        # adopted as the VAE stage (the recipe's VAE, cast to fp16); empty: train it
THREADS=${THREADS:-}                    # torch threads of the recipe; default: the config's
TEACHER=${TEACHER:-}                    # an existing teacher folder: the recipe is not run
DISTILL_STEPS=${DISTILL_STEPS:-800}     # the recipe's [distill] steps
JOBS=${JOBS:-21}                        # every distillation at once (7 arms x 3 seeds; an H200 holds them)
SEEDS=${SEEDS:-0,1,2}
QUALITY_ARGS=${QUALITY_ARGS:-}          # e.g. "--prompts 4 --n-per-prompt 2" for a dry run
mkdir -p "$WORK" "$OUT"
start=$(date +%s)

if [ -z "$TEACHER" ]; then
    recipe=(-m scott.recipe.embedded --out "$WORK/recipe" --config "$RECIPE" --resume --until teacher)
    [ -n "$VAE" ] && recipe+=(--vae "$VAE")
    [ -n "$THREADS" ] && recipe+=(--threads "$THREADS")
    "$PY" "${recipe[@]}" >"$OUT/recipe.log" 2>&1
    TEACHER=$WORK/recipe/teacher/model
    cp "$WORK/recipe/teacher/metrics.json" "$OUT/teacher_metrics.json"
    echo "teacher trained after $(($(date +%s) - start)) s"
fi

# shellcheck disable=SC2086  # QUALITY_ARGS is a word list
"$PY" -m benchmarks.quality --teacher "$TEACHER" --work "$WORK/quality" --budget-steps "$DISTILL_STEPS" \
    --methods lcm,cd,adversarial,scott --train-seeds "$SEEDS" --ablate-eta 0,0.15,0.6 --ablate-ref none \
    --reference shipped=models/scott-tiny --distill-option checkpoint_every=100 --jobs "$JOBS" --device "$DEVICE" \
    --no-progress --json "$OUT/quality.json" --grid "$OUT/grid.png" $QUALITY_ARGS >"$OUT/quality.log" 2>&1
echo "quality benchmark done after $(($(date +%s) - start)) s"
"$PY" -m benchmarks.eval_validation --teacher "$TEACHER" --json "$OUT/eval_validation.json" >"$OUT/eval_validation.log" 2>&1
ls -la "$OUT"
