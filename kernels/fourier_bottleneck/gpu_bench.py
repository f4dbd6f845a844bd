"""Speed of the fused kernel on a GPU, in one call:

    python -m restore.kernels.fourier_bottleneck.gpu_bench [--out results.json] [--skip-trt] [--cpu]

At N*C = 2048 planes (N=32, C=64) of 32x32, 64x64 and 128x128 fp16: the fused kernel, the torch
path (x.float() -> rfft2 -> multiply by the sampled response -> irfft2 -> fp16; the response is
sampled once, outside the timing) and the memory floor (bytes read + written by the op over the
device-to-device copy bandwidth measured here). CUDA-event timing: warm-up, then the median over
repeats of a batch of launches. Then, on a GPU in TensorRT-RTX's support matrix (compute
capability 7.5, 8.6, 8.9, 12.0; not Hopper's 9.0), a TensorRT-RTX engine containing the plugin is
built and run in a child process (an abort there must not lose the figures), recording what
happened. Writes the JSON (default benchmarks/results/fourier-bottleneck-<device>-<date>.json) and
a PNG beside it.

``--cpu`` (the GPU script's dry run): 8 planes of 64x64, the kernels' block code emulated on the
CPU against torch.fft on the CPU, timed with the host clock; the figures only prove the plumbing.
"""
import argparse
import json
import platform
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from . import build, library

PLANES = (32, 64)  # N, C: 2048 planes
SIDES = (32, 64, 128)
GRID = 8
DEFAULT_RESULTS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
RTX_CAPABILITIES = ((7, 5), (8, 6), (8, 9), (12, 0))  # TensorRT-RTX's support matrix (1.0 to 1.5)
TRIAL_TIMEOUT_S = 240  # under the device tool's 600 s per command, with the rest of the script


def time_cuda(torch, fn, batch=20, repeats=30, warmup=5):
    """Median milliseconds of one call of fn, from CUDA events around batches of calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(batch):
            fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / batch)
    return float(np.median(samples)), [float(v) for v in samples]


def copy_bandwidth(torch, nbytes=1 << 30):
    """Device-to-device copy bandwidth in bytes/s, counting bytes read and written."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_(0, 255)
    dst = torch.empty_like(src)
    ms, _ = time_cuda(torch, lambda: dst.copy_(src), batch=5, repeats=20)
    return 2 * nbytes / (ms * 1e-3)


def bench_size(torch, torch_op, side, bandwidth):
    n, c = PLANES
    x = torch.randn(n, c, side, side, device="cuda").half()
    weight = torch.randn(c, GRID, GRID, 2, device="cuda")
    plan = library.launch_plan(tuple(x.shape), (GRID, GRID), "spectral", "float16")
    y = torch.empty_like(x)
    workspace = torch.empty(max(plan.workspace_bytes, 1), dtype=torch.uint8, device="cuda")
    stream = torch.cuda.current_stream().cuda_stream

    def fused():
        library.launch(plan, x.data_ptr(), weight.data_ptr(), y.data_ptr(), workspace.data_ptr(), stream)

    response = torch_op.sample_response(weight, side, side)

    def torch_path():
        return torch.fft.irfft2(torch.fft.rfft2(x.float()) * response, s=(side, side)).half()

    fused_ms, fused_samples = time_cuda(torch, fused)
    torch_ms, torch_samples = time_cuda(torch, torch_path)
    fused()
    expected = torch_path()
    torch.cuda.synchronize()
    rel_err = float((y.float() - expected.float()).abs().max() / expected.float().abs().max())
    moved = 2 * x.numel() * x.element_size()  # read x once, write y once (the weight is 16 KiB)
    floor_ms = moved / bandwidth * 1e3
    return {
        "shape": list(x.shape), "dtype": "float16", "planes": n * c, "path": plan.path,
        "block": plan.kernels[0].block, "smem_bytes": plan.kernels[0].smem_bytes,
        "fused_us": fused_ms * 1e3, "torch_us": torch_ms * 1e3, "floor_us": floor_ms * 1e3,
        "speedup_vs_torch": torch_ms / fused_ms, "fraction_of_floor": floor_ms / fused_ms,
        "fused_effective_GBps": moved / (fused_ms * 1e-3) / 1e9, "bytes_moved": moved,
        "rel_err_vs_torch": rel_err, "fused_samples_ms": fused_samples, "torch_samples_ms": torch_samples,
    }


def bench_size_cpu(torch, torch_op, side, planes=8, repeats=3):
    """The dry run's stand-in for ``bench_size``: emulated block code vs torch.fft, host clock."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, planes, side, side)).astype(np.float16)
    weight = rng.standard_normal((planes, GRID, GRID, 2)).astype(np.float32)
    response = torch_op.sample_response(torch.from_numpy(weight), side, side)
    xt = torch.from_numpy(x)

    def best(fn):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - start)
        return min(times) * 1e3, out

    fused_ms, y = best(lambda: library.emulate(x, weight))
    torch_ms, expected = best(lambda: torch.fft.irfft2(torch.fft.rfft2(xt.float()) * response, s=(side, side)).half())
    moved = 2 * x.nbytes
    bandwidth = copy_bandwidth_cpu(torch)
    floor_ms = moved / bandwidth * 1e3
    expected = expected.float().numpy()
    return {
        "shape": list(x.shape), "dtype": "float16", "planes": planes, "path": "emulated on the CPU",
        "fused_us": fused_ms * 1e3, "torch_us": torch_ms * 1e3, "floor_us": floor_ms * 1e3,
        "speedup_vs_torch": torch_ms / fused_ms, "fraction_of_floor": floor_ms / fused_ms, "bytes_moved": moved,
        "rel_err_vs_torch": float(np.abs(y.astype(np.float32) - expected).max() / np.abs(expected).max()),
    }


def copy_bandwidth_cpu(torch, nbytes=64 << 20):
    src = torch.ones(nbytes, dtype=torch.uint8)
    dst = torch.empty_like(src)
    start = time.perf_counter()
    dst.copy_(src)
    return 2 * nbytes / (time.perf_counter() - start)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [f"{r['shape'][2]}x{r['shape'][3]}" for r in results["sizes"]]
    series = [("fused kernel", "fused_us"), ("torch rfft2*G irfft2", "torch_us"), ("memory floor", "floor_us")]
    xs = np.arange(len(sizes))
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (label, key) in enumerate(series):
        values = [r[key] for r in results["sizes"]]
        bars = ax.bar(xs + (i - 1) * 0.27, values, 0.27, label=label)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(xs, [f"{s}\n{r['speedup_vs_torch']:.1f}x torch, {100 * r['fraction_of_floor']:.0f}% of floor"
                       for s, r in zip(sizes, results["sizes"])], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("microseconds (median)")
    ax.set_title(f"Fourier bottleneck, 2048 fp16 planes, {results['device']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def trt_engine_trial():
    """Build an engine with the plugin using TensorRT-RTX on this GPU machine and run it once."""
    report = {"steps": [], "log": []}

    def step(name, **info):
        report["steps"].append({"step": name, **info})
        print("trt:", name, info, file=sys.stderr, flush=True)

    try:
        import tensorrt_rtx_bindings as trt
    except Exception as err:  # not installed on this machine
        step("import tensorrt_rtx_bindings", ok=False, error=repr(err))
        return report
    step("import tensorrt_rtx_bindings", ok=True, version=trt.__version__)
    try:
        import torch

        from . import plugin_graph
        from .trt_plugin import register_trt_plugin

        class Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)

            def log(self, severity, msg):
                if int(severity) <= int(trt.ILogger.Severity.WARNING):
                    report["log"].append(f"{severity.name}: {msg}")

        logger = Logger()
        register_trt_plugin(trt)
        channels, side = 8, 64
        model, weights = plugin_graph.make_plugin_graph(channels=channels, height=side, width=side, fp16=True)
        engine_bytes, layers = plugin_graph.build_engine(trt, model, (1, channels, side, side),
                                                         (4, channels, side, side), (8, channels, side, side))
        step("build engine (fp16, profile batch 1..8)", ok=True, bytes=len(engine_bytes), plugin_layers=layers)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(engine_bytes)
        step("deserialize", ok=engine is not None)
        if engine is None:
            return report
        context = engine.create_execution_context()
        step("create execution context", ok=context is not None)
        if context is None:
            return report
        shape = (4, channels, side, side)
        x = torch.randn(shape, device="cuda").half()
        y = torch.full(shape, float("nan"), device="cuda", dtype=torch.float16)
        context.set_input_shape("input", shape)
        context.set_tensor_address("input", x.data_ptr())
        context.set_tensor_address("output", y.data_ptr())
        stream = torch.cuda.Stream()
        ok = context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        expected = plugin_graph.expected_output(x.cpu().numpy(), weights)
        got = y.double().cpu().numpy()
        finite = bool(np.isfinite(got).all())
        err = float(np.abs(got - expected).max() / np.abs(expected).max()) if finite else float("inf")
        step("execute_async_v3", ok=bool(ok) and finite and err <= 5e-3, returned=bool(ok), all_finite=finite,
             rel_err_vs_reference=err)
        if ok and finite:
            ms, _ = time_cuda(torch, lambda: context.execute_async_v3(torch.cuda.current_stream().cuda_stream))
            step("engine latency", ok=True, median_us=ms * 1e3)
    except Exception as err:
        step("exception", ok=False, error=repr(err), traceback=traceback.format_exc())
    return report


def run_trt_trial_in_child():
    done = subprocess.run([sys.executable, "-m", "restore.kernels.fourier_bottleneck.gpu_bench", "--trt-only"],
                          capture_output=True, text=True, timeout=TRIAL_TIMEOUT_S)
    match = re.search(r"^TRT-TRIAL (.*)$", done.stdout, flags=re.M)
    trial = json.loads(match.group(1)) if match else {"steps": []}
    trial["child_exit_code"] = done.returncode
    trial["child_stderr_tail"] = done.stderr[-4000:]
    return trial


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="JSON path (a PNG is written beside it) "
                                      "[default: benchmarks/results/fourier-bottleneck-<device>-<date>.json]")
    parser.add_argument("--trt-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-trt", action="store_true", help="do not try the TensorRT-RTX engine")
    parser.add_argument("--cpu", action="store_true", help="dry run on the CPU (emulated kernels, tiny size)")
    args = parser.parse_args(argv)
    if args.trt_only:
        print("TRT-TRIAL " + json.dumps(trt_engine_trial()), flush=True)
        return 0

    import torch

    from . import torch_op

    if not args.cpu and not torch.cuda.is_available():
        print("gpu_bench: error: no CUDA GPU visible to torch (--cpu for a dry run)", file=sys.stderr)
        return 2
    build.build()
    sizes = []
    if args.cpu:
        device, capability, bandwidth = "cpu (emulated block code)", None, copy_bandwidth_cpu(torch)
        sizes.append(bench_size_cpu(torch, torch_op, 64))
    else:
        device, capability = torch.cuda.get_device_name(), torch.cuda.get_device_capability()
        bandwidth = copy_bandwidth(torch)
        print(f"{device}: device-to-device copy {bandwidth / 1e9:.0f} GB/s (read + write)", flush=True)
        sizes += [bench_size(torch, torch_op, side, bandwidth) for side in SIDES]
    for r in sizes:
        print(f"{r['shape']}: fused {r['fused_us']:.1f} us, torch {r['torch_us']:.1f} us "
              f"({r['speedup_vs_torch']:.2f}x), floor {r['floor_us']:.1f} us "
              f"({100 * r['fraction_of_floor']:.0f}% of floor), rel err vs torch {r['rel_err_vs_torch']:.1e}",
              flush=True)
    date = time.strftime("%Y-%m-%d", time.gmtime())
    results = {
        "benchmark": "fourier-bottleneck", "device": device, "capability": list(capability or ()), "date": date,
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
        "copy_bandwidth_GBps": bandwidth / 1e9,
        "method": "host clock, best of 3 (dry run)" if args.cpu else
                  "CUDA events around batches of 20 launches, 5 warm-up batches, median of 30",
        "targets_64x64": {"speedup_vs_torch": 3.0, "fraction_of_floor": 0.5},
        "sizes": sizes,
    }
    results["trt_rtx_engine"] = trt_trial_or_reason(args, capability)
    slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")
    out = Path(args.out) if args.out else DEFAULT_RESULTS_DIR / f"fourier-bottleneck-{slug}-{date}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    plot(results, out.with_suffix(".png"))
    print("wrote", out, "and", out.with_suffix(".png"))
    return 0


def trt_trial_or_reason(args, capability):
    if args.skip_trt or args.cpu:
        return {"skipped": "--skip-trt" if args.skip_trt else "no GPU (dry run)"}
    if tuple(capability) not in RTX_CAPABILITIES:
        matrix = "/".join(f"{a}.{b}" for a, b in RTX_CAPABILITIES)
        return {"skipped": f"compute capability {capability[0]}.{capability[1]} is not supported by "
                           f"TensorRT-RTX's support matrix ({matrix}): not tried"}
    return run_trt_trial_in_child()


if __name__ == "__main__":
    sys.exit(main())
