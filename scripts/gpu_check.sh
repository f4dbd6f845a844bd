#!/usr/bin/env bash
# Every GPU figure of the project in one device call (scripts/README.md: parts, budgets, layout).
#
#   OUT=/folder/that/comes/back bash scripts/gpu_check.sh             # on the GPU machine
#   OUT=/tmp/x bash scripts/gpu_check.sh --dry-run                    # CPU: every part, tiny sizes
#
# Each part runs under `timeout` with its own budget, cut to what is left of the whole script's
# (GPU_CHECK_BUDGET_S, default 530 s, inside the device tool's 600 s per command), and a failing
# part is recorded and the next one runs. The dry run gives every budget 4 times the seconds
# (GPU_CHECK_BUDGET_SCALE): a shared CPU is slower than the GPU machine at everything.
# What comes back, and nothing else is written outside a scratch folder that is removed at the
# end: $OUT/gpu_check.json (every part's status and figures), $OUT/logs.txt (every part's
# output), $OUT/kernel_bench.png, $OUT/model.png.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder whose files come back}"
DRY=${GPU_CHECK_DRY_RUN:-0}
[[ "${1:-}" == "--dry-run" ]] && DRY=1
PY=${PYTHON:-python3}
SCALE=${GPU_CHECK_BUDGET_SCALE:-$(( DRY ? 4 : 1 ))}
BUDGET_S=${GPU_CHECK_BUDGET_S:-$(( 530 * SCALE ))}
mkdir -p "$OUT"
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
source scripts/restore_path.sh
restore_path "$SCRATCH"
# caches of matplotlib, torch inductor, triton and the CUDA JIT go to the scratch folder too
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH="/usr/local/cuda/bin:$PATH" MPLCONFIGDIR="$SCRATCH/mpl" \
    TORCHINDUCTOR_CACHE_DIR="$SCRATCH/inductor" TRITON_CACHE_DIR="$SCRATCH/triton" CUDA_CACHE_PATH="$SCRATCH/nv"
PARTS=$SCRATCH/parts
mkdir -p "$PARTS"
LOG=$OUT/logs.txt
: >"$LOG"

# part NAME BUDGET_S COMMAND...: COMMAND writes its figures to $PARTS/NAME.json; its exit status,
# seconds, budget (on the GPU) and the timeout it ran under go to $PARTS/NAME.status.
part() {
    local name=$1 budget=$2 limit left start rc
    shift 2
    limit=$(( budget * SCALE ))
    left=$(( BUDGET_S - SECONDS ))
    (( limit > left )) && limit=$left
    if (( limit < 5 )); then
        printf '{"rc": null, "seconds": 0, "budget_s": %d, "timeout_s": 0, "skipped": "no time left"}\n' \
            "$budget" >"$PARTS/$name.status"
        return
    fi
    echo "=== $name (timeout ${limit} s, at ${SECONDS} s)" | tee -a "$LOG"
    start=$SECONDS
    timeout -k 5 "$limit" "$@" >>"$LOG" 2>&1
    rc=$?
    printf '{"rc": %d, "seconds": %d, "budget_s": %d, "timeout_s": %d}\n' "$rc" $(( SECONDS - start )) "$budget" \
        "$limit" >"$PARTS/$name.status"
    echo "=== $name: exit $rc in $(( SECONDS - start )) s" | tee -a "$LOG"
}

GPU_TESTS=(tests/kernels/test_torch_op.py tests/runtime/test_api.py tests/runtime/test_cuda_mem.py
           tests/runtime/test_pipeline.py tests/runtime/test_capi.py tests/runtime/test_trt_backend.py
           tests/reliability/test_engines.py tests/trainer/test_train.py)
if (( DRY )); then
    CPU=--cpu QUICK=--quick SIZES=64x64 FRAMES=(--frames 1 --warmup 0 --stream-frames 1) DEVICE=(--device cpu)
    PIPE=(--host --tile 64 --batches 2) VIDEO=(--cpu --size 64x64 --frames 8)
    GPU_TESTS=(tests/kernels/test_torch_op.py)
else
    CPU="" QUICK="" SIZES=1280x720,1920x1080 FRAMES=(--frames 20 --warmup 5 --stream-frames 40) DEVICE=()
    PIPE=(--batches 16) VIDEO=(--size 1920x1080 --frames 120)
fi

part environment 20 bash -c "nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv || true
    nvcc --version | tail -2; $PY -V; $PY -m pip list 2>/dev/null | grep -i -E '^(torch|cuda-bindings|cupy-cuda13x|onnxruntime|av|numpy) '"
part build 90 $PY -m restore.kernels.fourier_bottleneck.build
part kernel_check 45 $PY -m restore.kernels.fourier_bottleneck.gpu_check $CPU $QUICK --out "$PARTS/kernel_check.json"
part kernel_bench 40 $PY -m restore.kernels.fourier_bottleneck.gpu_bench $CPU --out "$PARTS/kernel_bench.json"
part model 120 $PY -m restore.benchmarks.gpu_matrix "${DEVICE[@]}" --models default --sizes "$SIZES" "${FRAMES[@]}" \
    --skip runtime_pipeline_overlap,video_codec,tiling --out "$PARTS/model"
part pipeline 40 $PY -m restore.benchmarks.gpu_pipeline "${PIPE[@]}" --out "$PARTS/pipeline.json"
part video 25 $PY -m restore.benchmarks.gpu_video "${VIDEO[@]}" --out "$PARTS/video.json"
part gpu_tests 90 $PY -m pytest -m gpu -q -p no:cacheprovider --junitxml="$PARTS/gpu_tests.xml" "${GPU_TESTS[@]}"
if (( DRY )); then
    part sanitizer 50 $PY -m restore.kernels.fourier_bottleneck.gpu_check --cpu --quick --out "$PARTS/sanitizer.json"
else
    part sanitizer 50 compute-sanitizer --tool memcheck --error-exitcode 1 \
        $PY -m restore.kernels.fourier_bottleneck.gpu_check --quick --out "$PARTS/sanitizer.json"
fi

$PY scripts/gpu_check_summary.py "$PARTS" "$OUT" $(( DRY ))
