#!/usr/bin/env bash
# The shipped model's training on a GPU: same config and data as the CPU runs that produced
# runtime/models/default, in one stage with the final layout (the Fourier blocks above the
# bottleneck and the deconvolution front end from the start), bigger patches and batches, and many
# more steps. (Under AMP the front end's kernel estimate and Wiener filter stay fp32.)
# Not run here (the machine that trained the shipped model has no GPU).
#   usage: trainer/gpu_train.sh [RUN_DIR] [extra dotted overrides...]
#   several GPUs: NPROC=4 trainer/gpu_train.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${1:-runs/fourier-unet-deblur-gpu}
shift || true
NPROC=${NPROC:-1}
OVERRIDES=(
  model.level_fourier=1
  model.level_grid=32
  model.deconv=true
  data.train.kernel_size=31
  loss.kernel=0.02
  data.train.patch=256
  data.batch=32
  data.workers=8
  train.steps=60000
  train.time_budget_min=0
  train.threads=0
  train.amp=true
  train.lr=1.0e-3
  train.ema=0.999
  train.ckpt_every=1000
  train.log_every=50
  val.every=2000
  val.data.patch=512
  schedule.warmup=1000
)
RESUME=()
[[ -f "$RUN_DIR/checkpoints/latest.pt" ]] && RESUME=(--resume)
if [[ "$NPROC" -gt 1 ]]; then
  exec torchrun --standalone --nproc_per_node "$NPROC" -m restore.runtime train \
    trainer/configs/fourier-unet-deblur.yaml "${OVERRIDES[@]}" "$@" --run-dir "$RUN_DIR" "${RESUME[@]}"
fi
exec restore train trainer/configs/fourier-unet-deblur.yaml "${OVERRIDES[@]}" "$@" --run-dir "$RUN_DIR" "${RESUME[@]}"
