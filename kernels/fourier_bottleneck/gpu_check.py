"""Correctness of the compiled kernels on a GPU, in one call:

    python -m restore.kernels.fourier_bottleneck.gpu_check [--out results.json] [--seed N] [--quick] [--cpu]

Builds the library (nvcc), then for every shape of the grid (power-of-two planes 8..128 in both
directions, and general sizes), both dtypes and both modes: draws fresh random data, fills the
output with NaN, launches the kernels through the C launch plan on a non-default stream, and
compares with torch.fft on the same GPU and with the NumPy float64 reference (relative error =
max |y - ref| / max |ref|; fp32 <= 1e-5, fp16 <= 2e-3, no NaN or Inf left). Also runs the torch
custom op once per path. Exit status 0 only when every case passes.

``--quick``: one case per plane size and path (what compute-sanitizer runs under, scripts/gpu_check.sh).
``--cpu``: the same cases through the kernels' own block code on the CPU (``library.emulate``)
against the NumPy reference, for the script's dry run on a machine without a GPU.
"""
import argparse
import json
import platform
import sys
import time

import numpy as np

from . import build, library
from .reference import fourier_bottleneck_ref

TOLERANCE = {"float32": 1e-5, "float16": 2e-3}
POW2_SIDES = (8, 16, 32, 64, 128)
GENERAL_SIZES = ((24, 40), (100, 60), (7, 5), (3, 8), (12, 9), (256, 256), (256, 16), (1, 1))


def shape_grid(quick=False):
    if quick:  # every square fused plane size once, and the general path
        yield from ((1, 2, side, side) for side in POW2_SIDES)
        yield (1, 2, 24, 40)
        return
    for h in POW2_SIDES:
        for w in POW2_SIDES:
            yield (2, 3, h, w)
    yield (16, 64, 64, 64)  # many planes: every block of a big grid writes its plane
    for h, w in GENERAL_SIZES:
        yield (2, 3, h, w)


def run_case_cpu(shape, mode, dtype_name, rng):
    """The kernels' block code on the CPU (``library.emulate``) against the NumPy reference."""
    grid = (int(rng.integers(2, 12)), int(rng.integers(2, 12)))
    x = rng.standard_normal(shape).astype(dtype_name)
    weight = rng.standard_normal((shape[1], *grid, 2)).astype(np.float32)
    plan = library.launch_plan(shape, grid if mode == "spectral" else None, mode, dtype_name)
    y = library.emulate(x, weight if mode == "spectral" else None, mode).astype(np.float64)
    ref = fourier_bottleneck_ref(x.astype(np.float64), weight, mode)
    finite = bool(np.isfinite(y).all())
    err = relative_error(y, ref) if finite else float("inf")
    return {"shape": list(shape), "grid": list(grid), "mode": mode, "dtype": dtype_name, "path": plan.path,
            "block": plan.kernels[0].block, "smem_bytes": plan.kernels[0].smem_bytes, "rel_err_numpy": err,
            "rel_err_torch_fft": None, "all_written_finite": finite, "ok": finite and err <= TOLERANCE[dtype_name]}


def relative_error(y, ref):
    return float(np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-30))


def run_case(torch, torch_op, shape, mode, dtype_name, rng, stream):
    torch_dtype = getattr(torch, dtype_name)
    grid = (int(rng.integers(2, 12)), int(rng.integers(2, 12)))
    x = torch.from_numpy(rng.standard_normal(shape).astype(dtype_name)).cuda()
    weight = torch.from_numpy(rng.standard_normal((shape[1], *grid, 2)).astype(np.float32)).cuda()
    plan = library.launch_plan(shape, grid if mode == "spectral" else None, mode, dtype_name)
    y = torch.full_like(x, float("nan"))  # poison: an element the kernel does not write stays NaN
    workspace = torch.full((max(plan.workspace_bytes, 1),), 255, dtype=torch.uint8, device=x.device)
    torch.cuda.synchronize()
    with torch.cuda.stream(stream):
        library.launch(plan, x.data_ptr(), weight.data_ptr(), y.data_ptr(), workspace.data_ptr(), stream.cuda_stream)
    stream.synchronize()
    y64 = y.double().cpu().numpy()
    x64 = x.double().cpu().numpy()
    ref = fourier_bottleneck_ref(x64, weight.cpu().numpy(), mode)
    torch_ref = torch_op.fourier_bottleneck_fft(x.double(), weight.double(), mode).cpu().numpy()
    finite = bool(np.isfinite(y64).all())
    err_ref = relative_error(y64, ref) if finite else float("inf")
    err_torch = relative_error(y64, torch_ref) if finite else float("inf")
    tol = TOLERANCE[dtype_name]
    return {
        "shape": list(shape), "grid": list(grid), "mode": mode, "dtype": dtype_name, "path": plan.path,
        "block": plan.kernels[0].block, "smem_bytes": plan.kernels[0].smem_bytes,
        "rel_err_numpy": err_ref, "rel_err_torch_fft": err_torch, "all_written_finite": finite,
        "ok": finite and err_ref <= tol and err_torch <= tol,
    }


def check_torch_op(torch, torch_op, rng):
    """The custom op on CUDA (fused and general path) against the NumPy reference."""
    results = []
    for shape in ((4, 8, 32, 32), (2, 3, 24, 40)):
        x = torch.from_numpy(rng.standard_normal(shape).astype(np.float16)).cuda()
        weight = torch.from_numpy(rng.standard_normal((shape[1], 8, 8, 2)).astype(np.float32)).cuda()
        with torch.no_grad():
            y = torch_op.fourier_bottleneck(x, weight, "spectral")
        ref = fourier_bottleneck_ref(x.double().cpu().numpy(), weight.cpu().numpy(), "spectral")
        err = relative_error(y.double().cpu().numpy(), ref)
        results.append({"shape": list(shape), "dtype": "float16", "rel_err_numpy": err, "ok": err <= 2e-3})
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock)")
    parser.add_argument("--quick", action="store_true", help="one case per plane size and path")
    parser.add_argument("--cpu", action="store_true", help="emulate the kernels on the CPU (no GPU needed)")
    args = parser.parse_args(argv)

    import torch

    from . import torch_op

    if not args.cpu and not torch.cuda.is_available():
        print("gpu_check: error: no CUDA GPU visible to torch (--cpu emulates the kernels)", file=sys.stderr)
        return 2
    library_path = build.build()
    print("library:", library_path, file=sys.stderr)
    seed = args.seed if args.seed is not None else time.time_ns() % 2**32
    rng = np.random.default_rng(seed)
    stream = None if args.cpu else torch.cuda.Stream()
    cases = []
    for shape in shape_grid(args.quick):
        for dtype_name in ("float32", "float16"):
            for mode in ("spectral", "gir"):
                if args.cpu:
                    case = run_case_cpu(shape, mode, dtype_name, rng)
                else:
                    case = run_case(torch, torch_op, shape, mode, dtype_name, rng, stream)
                cases.append(case)
                flag = "ok  " if case["ok"] else "FAIL"
                print(f"{flag} {str(tuple(shape)):20s} {mode:8s} {dtype_name:7s} {case['path']:7s} "
                      f"numpy {case['rel_err_numpy']:.2e}", flush=True)
    op_cases = [] if args.cpu or args.quick else check_torch_op(torch, torch_op, rng)
    for case in op_cases:
        print(f"{'ok  ' if case['ok'] else 'FAIL'} torch op {tuple(case['shape'])} rel err {case['rel_err_numpy']:.2e}")
    failed = [c for c in cases + op_cases if not c["ok"]]
    on_gpu = not args.cpu
    summary = {
        "device": torch.cuda.get_device_name() if on_gpu else "cpu (emulated block code)",
        "capability": list(torch.cuda.get_device_capability()) if on_gpu else None,
        "torch": torch.__version__, "python": platform.python_version(), "seed": seed,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "tolerance": TOLERANCE,
        "cases": cases, "torch_op": op_cases, "failed": len(failed), "passed": len(cases) + len(op_cases) - len(failed),
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1)
    print(f"{summary['passed']} passed, {summary['failed']} failed (seed {seed})")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
