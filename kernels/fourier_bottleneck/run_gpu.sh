#!/usr/bin/env bash
# GPU checks of the Fourier bottleneck kernel (see README.md, "Running on a GPU").
#
#   bash kernels/fourier_bottleneck/run_gpu.sh prepare-rtx   # here (network): TensorRT-RTX wheels
#                                                              # for Python 3.12, split in two parts
#   bash kernels/fourier_bottleneck/run_gpu.sh stash-rtx     # GPU machine, call 1: keep part 1 in /tmp
#   bash kernels/fourier_bottleneck/run_gpu.sh all           # GPU machine, call 2: build, check,
#                                                              # bench, GPU tests, TensorRT-RTX trial
#
# The TensorRT-RTX libs wheel (95 MB) is larger than one call may carry (64 MiB), so it travels in
# two parts over two calls to the same warm machine. Without part 1 in /tmp, `all` still runs
# everything else and records that TensorRT-RTX was not installed.
set -uo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
OUT=${OUT:-$REPO/gpu-out}
PARTS=/tmp/restore_rtx_parts
RTX_VERSION=1.7.1.116

prepare_rtx() {
    rm -rf .whl/rtx1 .whl/rtx2 .whl/dl && mkdir -p .whl/rtx1 .whl/rtx2 .whl/dl
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        -d .whl/dl "tensorrt-rtx-cu13-bindings==$RTX_VERSION" "tensorrt-rtx-cu13-libs==$RTX_VERSION" || exit 1
    mv .whl/dl/tensorrt_rtx_cu13_bindings-*.whl .whl/rtx1/
    libs=$(ls .whl/dl/tensorrt_rtx_cu13_libs-*.whl)
    (cd .whl/dl && split -b 56M "$(basename "$libs")" "$(basename "$libs").part-")
    mv .whl/dl/*.part-aa .whl/rtx1/ && mv .whl/dl/*.part-ab .whl/rtx2/
    rm -rf .whl/dl
    du -sh .whl/rtx1 .whl/rtx2
}

stash_rtx() {
    mkdir -p "$PARTS" && cp .whl/rtx1/* "$PARTS"/ && ls -la "$PARTS"
}

install_rtx() {
    # part 1 from an earlier call (stash-rtx), part 2 carried now
    local bindings part_a part_b
    bindings=$(ls "$PARTS"/tensorrt_rtx_cu13_bindings-*.whl 2>/dev/null | head -1)
    part_a=$(ls "$PARTS"/*.part-aa 2>/dev/null | head -1)
    part_b=$(ls .whl/rtx2/*.part-ab 2>/dev/null | head -1)
    if [[ -z "$bindings" || -z "$part_a" || -z "$part_b" ]]; then
        echo "TensorRT-RTX not installed: wheel parts missing (bindings='$bindings' a='$part_a' b='$part_b')"
        return 1
    fi
    local wheel="/tmp/$(basename "${part_a%.part-aa}")"
    cat "$part_a" "$part_b" >"$wheel"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$bindings" "$wheel"
}

run_all() {
    # at most 8 files come back from $OUT: one log, the check JSON, the bench JSON and PNG
    mkdir -p "$OUT"
    local log="$OUT/run_gpu.log"
    : >"$log"
    export PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
    # the package maps restore.kernels -> kernels/ (pyproject package-dir); a symlink shim gives the
    # same import names without installing
    mkdir -p /tmp/restore_shim/restore
    for d in kernels benchmarks runtime export trainer; do ln -sfn "$REPO/$d" /tmp/restore_shim/restore/$d; done
    export PYTHONPATH=/tmp/restore_shim:/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv 2>&1 | tee -a "$log"
    install_rtx 2>&1 | tee -a "$log"

    python3 -m restore.kernels.fourier_bottleneck.build --force 2>&1 | tee -a "$log"
    python3 -m restore.kernels.fourier_bottleneck.gpu_check --out "$OUT/gpu_check.json" 2>&1 | tee -a "$log"
    local check=${PIPESTATUS[0]}
    python3 -m restore.kernels.fourier_bottleneck.gpu_bench 2>&1 | tee -a "$log"
    local bench=${PIPESTATUS[0]}
    python3 -m pytest tests/kernels -q -p no:cacheprovider 2>&1 | tail -25 | tee -a "$log"
    echo "gpu_check exit $check, gpu_bench exit $bench" | tee -a "$log"
    ls -la "$OUT"
    [[ $check -eq 0 && $bench -eq 0 ]]
}

case "${1:-all}" in
    prepare-rtx) prepare_rtx ;;
    stash-rtx) stash_rtx ;;
    all) run_all ;;
    *) echo "usage: $0 prepare-rtx | stash-rtx | all" >&2; exit 2 ;;
esac
