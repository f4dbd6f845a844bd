"""Overlap efficiency of the double-buffered GPU pipeline (runtime/pipeline.py) on a real GPU.

    python -m restore.benchmarks.gpu_pipeline [--artifact DIR] [--batches 32] [--tile 256] [--out PATH.json] [--host]

For each workload it times, on the pipeline's own buffers and streams (``measure_overlap``):
compute only (input already on the device), pipelined (host tiles in, host tiles out, 2 and 3
slots) and serial (copy, compute, copy in turn). ``efficiency = pipelined / compute_only``: 1.0
means the PCIe copies and host staging are fully hidden. Workloads, each skipped with its reason
when it cannot run here:
- ``synthetic-*``: an elementwise kernel (pipeline_busy_kernel.cu, loaded as PTX) with a set amount of arithmetic per
  element, so the compute/copy ratio is known (light: copy-bound, heavy: compute-bound);
- ``torch-shipped-fp16``: the shipped model on CUDA through ``torch_executor``, fp16 with its
  fp32 islands (``trainer/models/precision.py``), eager, fp16 tiles;
- ``tensorrt``: the engine of ``--artifact`` (model.fp16.engine / model.engine).
Tiles are 256 x 256 RGB float32, batch 4 (3 MiB each way per batch), as the runtime feeds them.

``--host`` (the GPU script's dry run): the host-thread driver (runtime/host_streams.py) and the
shipped model in fp32 on the CPU, queued on the pipeline's compute stream; nothing overlaps much on
two cores, but every step of the measurement runs.
"""
import argparse
import json
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

from restore.runtime.atomic import atomic_write_text
from restore.runtime.cuda_mem import cuda_call, get_driver
from restore.runtime.errors import EXIT_NOT_AVAILABLE, BackendError
from restore.runtime.pipeline import GpuPipeline, measure_overlap

CHANNELS, BATCH = 3, 4
TILE = 256  # --tile

KERNEL_PTX = Path(__file__).resolve().parent / "pipeline_busy_kernel.ptx"  # from pipeline_busy_kernel.cu


def gpu_info():
    rt = get_driver("cuda-python").rt
    props = cuda_call(rt.cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {"gpu": name.strip("\x00 "), "compute_capability": f"{props.major}.{props.minor}",
            "async_engines": props.asyncEngineCount, "runtime_version": cuda_call(rt.cudaRuntimeGetVersion()),
            "driver_version": cuda_call(rt.cudaDriverGetVersion())}


def synthetic_executor(iterations):
    """An ``execute`` launching the ``busy`` kernel (PTX, JIT-compiled by the driver for this GPU:
    no NVRTC or nvcc needed on the benchmark machine) on the pipeline's compute stream."""
    from cuda.bindings import driver as cu

    get_driver("cuda-python")  # makes the runtime's primary context current in this thread
    cuda_call(cu.cuInit(0), "cuInit")
    module = cuda_call(cu.cuModuleLoadData(KERNEL_PTX.read_bytes() + b"\0"), "cuModuleLoadData")
    function = cuda_call(cu.cuModuleGetFunction(module, b"busy"), "cuModuleGetFunction")
    item = CHANNELS * TILE * TILE

    def execute(count, d_in, d_out, stream):
        n = count * item
        values = [np.array([d_in], np.uint64), np.array([d_out], np.uint64),
                  np.array([n], np.uint32), np.array([iterations], np.uint32)]
        pointers = np.array([v.ctypes.data for v in values], np.uint64)
        cuda_call(cu.cuLaunchKernel(function, (n + 255) // 256, 1, 1, 256, 1, 1, 0,
                                    cu.CUstream(stream.raw), pointers.ctypes.data, 0), "cuLaunchKernel")

    return execute


def shipped_model():
    from restore.runtime.artifact import DEFAULT_MODEL_DIR
    from restore.trainer.checkpoint import model_from_checkpoint

    return model_from_checkpoint(DEFAULT_MODEL_DIR / "model.safetensors").eval()


def torch_shipped_fp16():
    import torch

    from restore.runtime.pipeline import torch_executor
    from restore.trainer.models.precision import half_precision

    if not torch.cuda.is_available():
        raise RuntimeError("torch has no CUDA here")
    shape = (CHANNELS, TILE, TILE)
    return torch_executor(half_precision(shipped_model()).cuda(), shape, shape, np.float16)


def host_torch_executor(driver):
    """An ``execute`` for the host driver: the shipped model (fp32, CPU) queued on the compute
    stream, reading and writing the pipeline's host-side "device" buffers."""
    import torch

    net = shipped_model()
    item = (CHANNELS, TILE, TILE)

    def execute(count, d_in, d_out, stream):
        nbytes = count * int(np.prod(item)) * 4

        def run():
            x = driver.host_view(d_in, nbytes).view(np.float32).reshape((count,) + item)
            with torch.inference_mode():
                driver.host_view(d_out, nbytes).view(np.float32)[...] = net(torch.from_numpy(x)).numpy().ravel()

        driver.launch(stream, run)

    return execute


def run_case(name, execute, batches, slots_list, out_shape=None, dtype=np.float32, driver=None):
    results = []
    for slots in slots_list:
        pipe = GpuPipeline(execute, (CHANNELS, TILE, TILE), out_shape or (CHANNELS, TILE, TILE), BATCH,
                           dtype, dtype, slots=slots, driver=driver or get_driver("cuda-python"))
        try:
            result = measure_overlap(pipe, batches, repeats=3)
            # Sanity: the pipeline's outputs equal a serial run's (same kernel, same inputs).
            piped = list(pipe.run(batches[:3]))
            serial = [list(pipe.run([b]))[0] for b in batches[:3]]
            result["outputs_match_serial"] = all(np.array_equal(a, b) for a, b in zip(piped, serial))
        finally:
            pipe.close()
        result["workload"] = name
        results.append(result)
        print(f"{name:28s} slots={slots} compute {result['compute_only_s'] * 1e3:8.1f} ms  pipelined "
              f"{result['pipelined_s'] * 1e3:8.1f} ms  serial {result['serial_s'] * 1e3:8.1f} ms  "
              f"efficiency {result['efficiency']:.3f}  (serial/compute {result['serial_over_compute']:.3f})", flush=True)
    return results


def main(argv=None):
    global TILE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact", type=Path, help="export artifact directory with a TensorRT engine")
    parser.add_argument("--batches", type=int, default=32, help="batches of 4 tiles per timed run")
    parser.add_argument("--tile", type=int, default=TILE, help="tile side in pixels")
    parser.add_argument("--iterations", default="0,64,512", help="synthetic kernel FMAs per element (comma-separated)")
    parser.add_argument("--out", type=Path, help="JSON path [default: benchmarks/results/gpu_pipeline_<gpu>.json]")
    parser.add_argument("--host", action="store_true", help="dry run: host-thread driver, shipped model on the CPU")
    args = parser.parse_args(argv)
    TILE = args.tile

    rng = np.random.default_rng(0)
    batches = [rng.random((BATCH, CHANNELS, TILE, TILE), dtype=np.float32) for _ in range(args.batches)]
    cases, skipped = [], {}
    if args.host:
        from restore.runtime.host_streams import HostDriver

        info = {"gpu": "none (host-thread driver, CPU)"}
        driver = HostDriver()
        cases += run_case("host-torch-shipped-fp32", host_torch_executor(driver), batches, (2,), driver=driver)
        return write_report(args, info, cases, skipped)
    try:
        info = gpu_info()
    except BackendError as e:
        print(f"gpu_pipeline: error: {e}", file=sys.stderr)
        return EXIT_NOT_AVAILABLE

    for iterations in (int(v) for v in args.iterations.split(",")):
        name = f"synthetic-{iterations}fma"
        try:
            cases += run_case(name, synthetic_executor(iterations), batches, (2, 3))
        except Exception as e:
            skipped[name] = f"{type(e).__name__}: {e}"
    try:
        cases += run_case("torch-shipped-fp16", torch_shipped_fp16(), [b.astype(np.float16) for b in batches], (2,),
                          dtype=np.float16)
    except Exception as e:
        skipped["torch-shipped-fp16"] = f"{type(e).__name__}: {e}"
    if args.artifact:
        try:
            from restore.runtime.artifact import resolve_model
            from restore.runtime.backends.tensorrt import TensorRTBackend

            backend = TensorRTBackend(resolve_model(args.artifact)).activate()
            engine = backend.engine
            trt_batches = [b[: engine.max_batch].astype(engine.input_dtype) for b in batches]
            cases += run_case("tensorrt", engine.execute, trt_batches, (2,), engine.output_item_shape, engine.input_dtype)
            backend.deactivate()
        except Exception as e:
            skipped["tensorrt"] = f"{type(e).__name__}: {e}"
    else:
        skipped["tensorrt"] = "no --artifact given"
    return write_report(args, info, cases, skipped)


def write_report(args, info, cases, skipped):
    report = {"benchmark": "gpu_pipeline", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "host": platform.node(), "python": sys.version.split()[0], **info,
              "tile": TILE, "channels": CHANNELS, "batch": BATCH, "cases": cases, "skipped": skipped}
    slug = re.sub(r"[^a-z0-9]+", "_", info["gpu"].lower()).strip("_")
    out = args.out or Path(__file__).resolve().parent / "results" / f"gpu_pipeline_{slug}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(report, indent=2))
    print(f"wrote {out}" + (f"; skipped: {skipped}" if skipped else ""))
    return 0 if cases else 1


if __name__ == "__main__":
    sys.exit(main())
