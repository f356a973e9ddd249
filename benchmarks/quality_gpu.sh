#!/usr/bin/env bash
# The quality benchmark and its eta / h / lambda_adv ablation on one GPU, from scratch, in one command: the recipe's
# teacher trained on the shipped model's VAE by benchmarks/teacher_probe.py (frozen x10 text encoder, TEACHER_STEPS
# steps), then benchmarks/quality.py on that teacher (all six distillations on the GPU at once, the teacher's rows
# evaluated meanwhile). A CPU host runs the same command (DEVICE=cpu) with small numbers as a dry run.
#
#   benchmarks/quality_gpu.sh WORK OUT
#   TEACHER=runs/e3/teacher/model VARIANTS="te_frozen_emb10 emb10_b128" PROBE_MAX_STEPS=30000 \
#       benchmarks/quality_gpu.sh WORK OUT     # a carried teacher; the probe only trains longer teachers beside it
#
# WORK: scratch folder; OUT: where the reports land (quality.json, quality.log, grid.png/.txt, probe results).
# Measured on an H200 (2026-11-26), with five more teacher variants beside the recipe's: 2,400 teacher steps in
# ~180 s after ~50 s of latents; distillation 0.20 s/step (CD) to 0.27 s/step (SCott, h = 3) with six side by side,
# i.e. ~220 s for 800 steps; a student row (500 images x 2 seed sets) takes seconds. A device machine keeps no files
# between calls, so the whole command must fit one call (~8-9 minutes): keep VARIANTS to the recipe's teacher.
set -uo pipefail
WORK=${1:?WORK folder}
OUT=${2:?OUT folder}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
TEACHER_STEPS=${TEACHER_STEPS:-2400}   # recipes/embedded.toml [teacher] steps
PROBE_BUDGET=${PROBE_BUDGET:-300}      # seconds of training per teacher variant, at most
PROBE_ARGS=${PROBE_ARGS:-}             # e.g. "--eval-prompts 4" for a dry run
# More teacher variants train beside it for the same steps, e.g. the shape probe's "emb10_xattn16 emb10_fg3 ...".
VARIANTS=${VARIANTS-te_frozen_emb10}
TEACHER=${TEACHER:-}                   # an existing teacher folder: no teacher is trained for the benchmark
PROBE_MAX_STEPS=${PROBE_MAX_STEPS:-$TEACHER_STEPS}
DISTILL_STEPS=${DISTILL_STEPS:-800}    # recipes/embedded.toml [distill] steps
JOBS=${JOBS:-6}
QUALITY_ARGS=${QUALITY_ARGS:-}         # e.g. "--prompts 4 --n-per-prompt 2" for a dry run
TOTAL=${TOTAL:-540}                    # seconds for the whole command; a rerun on a kept WORK resumes
mkdir -p "$WORK" "$OUT"
start=$(date +%s)
teacher=${TEACHER:-$WORK/probe/teacher-te_frozen_emb10}
save_at=$([ -n "$TEACHER" ] && echo 0 || echo "$TEACHER_STEPS")

probe=
if [ -n "$VARIANTS" ] && { [ -n "$TEACHER" ] || [ ! -f "$teacher/model_index.json" ]; }; then
    # shellcheck disable=SC2086  # VARIANTS and PROBE_ARGS are word lists
    $PY benchmarks/teacher_probe.py --run "$WORK/run" --vae models/scott-tiny/vae --out "$WORK/probe" \
        --device "$DEVICE" --budget "$PROBE_BUDGET" --join 60 --save-at "$save_at" --max-steps "$PROBE_MAX_STEPS" \
        --variants $VARIANTS $PROBE_ARGS >"$OUT/probe.log" 2>&1 &
    probe=$!
fi
until [ -f "$teacher/model_index.json" ]; do
    kill -0 "$probe" 2>/dev/null || { echo "teacher probe ended without saving $teacher" >&2; break; }
    sleep 5
done
echo "teacher ready after $(($(date +%s) - start)) s"

if [ -f "$teacher/model_index.json" ]; then
    # shellcheck disable=SC2086  # QUALITY_ARGS is a word list
    timeout $((TOTAL - ($(date +%s) - start))) $PY benchmarks/quality.py --teacher "$teacher" --work "$WORK/quality" \
        --budget-steps "$DISTILL_STEPS" --distill-option checkpoint_every=100 --jobs "$JOBS" --device "$DEVICE" \
        --no-progress --json "$OUT/quality.json" --grid "$OUT/grid.png" $QUALITY_ARGS >"$OUT/quality.log" 2>&1
    echo "quality benchmark exited $? after $(($(date +%s) - start)) s"
fi
if [ -n "$probe" ]; then
    # The probe may train longer than the benchmark (PROBE_MAX_STEPS): stop it at TOTAL so its rows still come back.
    while kill -0 "$probe" 2>/dev/null && [ $(($(date +%s) - start)) -lt "$TOTAL" ]; do sleep 5; done
    kill -0 "$probe" 2>/dev/null && { pkill -P "$probe"; kill "$probe"; echo "teacher probe stopped at TOTAL"; }
    wait "$probe"
    echo "teacher probe exited $? after $(($(date +%s) - start)) s"
fi

# Whatever finished comes back, also after a timeout: the probe's rows and grids, the evaluated quality rows.
cp "$WORK/probe/results.jsonl" "$OUT/probe_results.jsonl" 2>/dev/null
cp "$WORK/probe/grids.png" "$OUT/probe_grids.png" 2>/dev/null
tar czf "$OUT/rows.tgz" -C "$WORK" probe/log.txt quality/eval $(cd "$WORK" && ls quality/*/train/log.jsonl 2>/dev/null) \
    2>/dev/null
ls -la "$OUT"
