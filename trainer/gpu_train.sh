#!/usr/bin/env bash
# The shipped model's training on a GPU, as one time-boxed device call: the data of its last CPU
# stage (trainer/configs/fourier-unet-deblur-field6.yaml: curved shake, blurs up to 35 px / sigma 5 /
# radius 8, rescaled pictures, unblurred ones, sensor noise, JPEG and H.264), in one stage from
# scratch with the final layout (Fourier blocks above the bottleneck, the deconvolution front end
# with kernel bank 2, its backoff and backoff dropout), bigger patches and batches. (Under AMP the front end's
# kernel estimate and Wiener filter stay fp32.) Without PyAV on the machine the H.264 step is left
# out (the script says so).
#   OUT=/folder/that/comes/back bash trainer/gpu_train.sh [extra dotted overrides...]
#   TRAIN_MIN=6 (default; at most 8): the run's time budget in minutes, inside the 10-minute command
# The run folder (checkpoints with optimizer and EMA state) stays in a scratch folder; only what
# ships comes back under $OUT/train, a run folder `python -m restore.trainer.ship` takes as it is:
# checkpoints/final.safetensors (the EMA weights, about 12 MB, checked under 16 MiB), metrics.jsonl,
# curves.png, config.yaml. Not run on a GPU yet (none lent so far); its CPU dry run is a test.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder whose files come back}"
TRAIN_MIN=${TRAIN_MIN:-6}
if (( TRAIN_MIN < 1 || TRAIN_MIN > 8 )); then echo "gpu_train: TRAIN_MIN must be 1..8 minutes" >&2; exit 7; fi
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/gpu_train.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
source scripts/restore_path.sh
restore_path "$SCRATCH"
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MPLCONFIGDIR="$SCRATCH/mpl" TORCHINDUCTOR_CACHE_DIR="$SCRATCH/inductor" \
    TRITON_CACHE_DIR="$SCRATCH/triton" CUDA_CACHE_PATH="$SCRATCH/nv"
RUN_DIR=$SCRATCH/run
OVERRIDES=(
  train.init=null
  data.train.patch=256
  data.batch=32
  data.workers=8
  train.steps=60000
  train.time_budget_min="$TRAIN_MIN"
  train.threads=0
  train.amp=true
  train.lr=1.0e-3
  train.ema=0.999
  train.ckpt_every=100000
  train.log_every=50
  val.every=500
  val.data.patch=512
  schedule.warmup=1000
)
if ! python3 -c "import av" 2>/dev/null; then
  echo "gpu_train: PyAV is not installed here: training without the H.264 step" >&2
  OVERRIDES+=(data.train.degradation.h264=null)
fi
# The budget stops the loop; the timeout (budget + 90 s for start-up, validation and saving) stops
# anything that hangs, still inside the device tool's 600 s.
timeout $(( TRAIN_MIN * 60 + 90 )) python3 -m restore.runtime train trainer/configs/fourier-unet-deblur-field6.yaml \
  "${OVERRIDES[@]}" "$@" --run-dir "$RUN_DIR" --no-progress
weights=$RUN_DIR/checkpoints/final.safetensors
if (( $(stat -c %s "$weights") >= 16 * 1024 * 1024 )); then
  echo "gpu_train: $weights is over the 16 MiB a returned file may have" >&2; exit 5
fi
mkdir -p "$OUT/train/checkpoints"
cp "$weights" "$OUT/train/checkpoints/"
cp "$RUN_DIR/metrics.jsonl" "$RUN_DIR/curves.png" "$RUN_DIR/config.yaml" "$OUT/train/"
ls -laR "$OUT/train"
