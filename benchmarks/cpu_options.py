"""ONNX Runtime session options and OpenVINO modes on the shipped model, one option at a time, on
this CPU: the measurements behind the CPU backends' settings.

    python -m restore.benchmarks.cpu_options [--rounds 2] [--out benchmarks/results]

Each variant runs the same 4 tiles (256 x 256, random values) in batches, interleaved with the
others for ``--rounds`` rounds (best kept: the machine may be shared); reported as ms per tile,
its ratio to ORT's defaults with every core, and the PSNR of its output against that baseline.
"""
import datetime
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import numpy as np

TILES = 4


def _ort_session(path, threads, **config):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    for key, value in config.items():
        if key == "level":
            options.graph_optimization_level = value
        elif key == "arena":
            options.enable_cpu_mem_arena = value
        elif key == "parallel":
            options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
            options.inter_op_num_threads = threads
        else:
            options.add_session_config_entry(key, value)
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _ort(path, cores, batch, streams=1, **config):
    sessions = [_ort_session(path, max(1, cores // streams), **config) for _ in range(streams)]
    pool = ThreadPoolExecutor(streams)

    def run(tiles):
        parts = [tiles[i : i + batch] for i in range(0, len(tiles), batch)]
        jobs = [pool.submit(sessions[k % streams].run, None, {sessions[0].get_inputs()[0].name: p}) for k, p in enumerate(parts)]
        return np.concatenate([j.result()[0] for j in jobs])

    return run


def _openvino(path, cores, batch, hint, streams=None):
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": cores, "PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": "f32"}
    if streams:
        config["NUM_STREAMS"] = streams
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    queue = ov.AsyncInferQueue(compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    outputs = {}
    queue.set_callback(lambda request, i: outputs.__setitem__(i, request.get_output_tensor(0).data.copy()))

    def run(tiles):
        for i in range(0, len(tiles), batch):
            queue.start_async({0: tiles[i : i + batch]}, i)
        queue.wait_all()
        return np.concatenate([outputs[i] for i in sorted(outputs)])

    return run


def variants(path, cores):
    import onnxruntime as ort

    from restore.runtime.backends.base import cpu_streams

    streams = cpu_streams(cores)
    each = max(1, TILES // streams)

    found = {
        "ort defaults, batch 4": lambda: _ort(path, cores, 4),
        "ort batch 1": lambda: _ort(path, cores, 1),
        "ort batch 8": lambda: _ort(path, cores, 8),
        "ort set_denormal_as_zero": lambda: _ort(path, cores, 4, **{"session.set_denormal_as_zero": "1"}),
        "ort no spinning": lambda: _ort(path, cores, 4, **{"session.intra_op.allow_spinning": "0"}),
        "ort no memory arena": lambda: _ort(path, cores, 4, arena=False),
        "ort graph level extended": lambda: _ort(path, cores, 4, level=ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
        "ort parallel execution": lambda: _ort(path, cores, 4, parallel=True),
        f"ort {streams} streams, batch 1 each": lambda: _ort(path, cores, 1, streams=streams),
        f"ort {streams} streams, batch {each} each (the backend)": lambda: _ort(path, cores, each, streams=streams),
    }
    try:
        import openvino  # noqa: F401
    except ImportError:
        return found
    found.update({
        "openvino latency, batch 4": lambda: _openvino(path, cores, 4, "LATENCY"),
        "openvino latency, batch 1": lambda: _openvino(path, cores, 1, "LATENCY"),
        f"openvino throughput {streams} streams, batch {each} each (the backend)": lambda: _openvino(path, cores, each, "THROUGHPUT", streams),
        f"openvino throughput {streams} streams, batch 1 each": lambda: _openvino(path, cores, 1, "THROUGHPUT", streams),
    })
    return found


@click.command()
@click.option("--rounds", default=2, show_default=True, type=click.IntRange(1))
@click.option("--out", "out_dir", default="benchmarks/results", show_default=True, type=click.Path(file_okay=False))
def main(rounds, out_dir):
    """Time ORT session options and OpenVINO modes on the shipped model, interleaved."""
    from restore.runtime.artifact import resolve_model
    from restore.runtime.atomic import atomic_write_text
    from restore.runtime.backends.base import physical_cores
    from restore.runtime.backends.cpu_choice import cpu_name

    path = resolve_model("default").onnx
    cores = physical_cores()
    tiles = np.random.default_rng(0).random((TILES, 3, 256, 256), dtype=np.float32)
    runs = {name: make() for name, make in variants(path, cores).items()}
    baseline = next(iter(runs))
    reference = runs[baseline](tiles)
    psnr = {}
    for name, run in runs.items():  # also the warm-up
        mse = float(np.mean((run(tiles) - reference) ** 2))
        psnr[name] = None if mse == 0 else 10 * np.log10(1 / mse)
    best = {name: float("inf") for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run(tiles)
            best[name] = min(best[name], (time.perf_counter() - start) * 1e3 / TILES)
    rows = [{"variant": n, "ms_per_tile": best[n], "speedup": best[baseline] / best[n], "psnr_db": psnr[n]} for n in runs]
    for r in rows:
        p = "same" if r["psnr_db"] is None else f"{r['psnr_db']:.0f} dB"
        click.echo(f"{r['variant']:55s} {r['ms_per_tile']:8.0f} ms/tile  x{r['speedup']:.2f}  {p}")
    click.echo(f"CPU: {cpu_name()}, {cores} physical cores; load average {os.getloadavg()[0]:.1f} (shared machine)")
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report = {"format": "restore-cpu-options/1", "created": created, "cpu": cpu_name(), "cores": cores, "rounds": rounds,
              "load_average": os.getloadavg()[0], "model": path.name, "results": rows}
    target = Path(out_dir) / f"cpu-options-{created[:10]}.json"
    atomic_write_text(target, json.dumps(report, indent=2) + "\n")
    click.echo(f"wrote {target}")


if __name__ == "__main__":
    main()
