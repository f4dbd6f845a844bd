"""``restore bench``: latency, throughput, memory, FLOPs and distance to the hardware floor."""
import datetime
import re
from pathlib import Path

import click

from restore.runtime.errors import ConfigError


def _split(values):
    """Options may be repeated and/or comma-separated: --model a,b --model c -> [a, b, c]."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _tiles(values):
    tiles = []
    for v in _split(values) or ["0"]:
        try:
            t = int(v)
        except ValueError:
            raise ConfigError(f"--tile {v}", "not a number", "give tile sizes in pixels, 0 for whole frames") from None
        tiles.append(t or None)
    return tiles


@click.command("bench")
@click.option("--model", "models", multiple=True, help="Zoo name (fourier-unet, nafnet, mimo-unet, deeprft, ...), 'default', an artifact dir or a checkpoint. Repeat or comma-separate. [default: default if installed, else fourier-unet]")
@click.option("--backend", "backends", multiple=True, help="torch (in-process, whole frames or --tile), or through the runtime: onnxruntime, openvino, tensorrt, runtime:torch, auto. Repeat or comma-separate. [default: torch on a GPU; auto (the runtime's own choice) on a CPU]")
@click.option("--size", "sizes", multiple=True, help="Frame sizes WIDTHxHEIGHT, comma-separated. [default: 1280x720,1920x1080,3840x2160 on a GPU; 1280x720 on a CPU]")
@click.option("--tile", "tiles", multiple=True, help="Tile sizes in pixels (0 = whole frame), comma-separated. [default: 0]")
@click.option("--precision", "precisions", multiple=True, help="fp32, fp16 (bf16). [default: fp16 on a GPU, fp32 on a CPU]")
@click.option("--frames", type=click.IntRange(1), help="Timed frames per case. [default: 20 on a GPU, 3 on a CPU]")
@click.option("--warmup", type=click.IntRange(0), help="Untimed frames first (autotuning, allocations). [default: 3 on a GPU, 1 on a CPU]")
@click.option("--device", default=None, help="cpu, cuda or cuda:N. [default: cuda if available]")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write all results here. [default: restore-bench-DEVICE-DATE.json here, when neither --json nor --plot is given]")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False), help="Write a PNG plot here. [default: beside the default JSON]")
@click.option("--no-floor", is_flag=True, help="Skip measuring the device's matmul rate and bandwidth.")
@click.option("--no-stream", is_flag=True, help="On a GPU, skip the double-buffered streaming run (overlap efficiency).")
@click.option("--peer", type=click.Choice(["vs-mlrt"]), help="Instead: the shipped model against a peer on this CPU, same frames and threads (benchmarks/vsmlrt.py); --size [default: 640x360,1280x720] and --json's folder apply.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no 'wrote' lines: only the results table (stdout) and errors.")
def bench(models, backends, sizes, tiles, precisions, frames, warmup, device, json_out, plot_out, no_floor, no_stream, peer, quiet):
    """Time models and backends on synthetic frames, host frame in to host frame out.

    Per case: latency p50/p95/p99 (after warm-up), frames/s and megapixels/s, the median time of
    each stage (decode, upload, compute, download, stitch, encode; n/a where a backend has no such
    stage), on a GPU the double-buffered stream's frames/s and overlap efficiency, peak host RSS
    and device memory, FLOPs per pixel, achieved TFLOP/s and compute time over the hardware floor.
    """
    from tqdm import tqdm

    from . import report, suite
    from .harness import default_device, parse_size

    if peer:
        from . import vsmlrt

        vsmlrt.run([parse_size(v) for v in _split(sizes) or ["640x360", "1280x720"]], 2, Path(json_out).parent if json_out else Path("benchmarks/results"))
        return

    device = device or default_device()
    if not (device == "cpu" or device.startswith("cuda")):
        raise ConfigError(f"--device {device}", "unknown device", "use cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}", "no CUDA GPU is available here", "use --device cpu")
    gpu = device.startswith("cuda")
    models = _split(models) or [_default_model()]
    case_list = suite.cases(models, _split(backends) or (["torch"] if gpu else ["auto"]),
                            _split(sizes) or (["1280x720", "1920x1080", "3840x2160"] if gpu else ["1280x720"]),
                            _tiles(tiles), _split(precisions) or (["fp16"] if gpu else ["fp32"]))
    frames = frames or (20 if gpu else 3)
    warmup = (3 if gpu else 1) if warmup is None else warmup
    if not (json_out or plot_out):
        json_out, plot_out = _default_outputs(device)
    with tqdm(total=len(case_list) * (frames + warmup), unit="frame", desc="bench", leave=False, disable=quiet) as bar:
        def show(record):
            bar.set_postfix_str(f"{record['model']} {record['size']}")

        result = suite.run_matrix(case_list, frames, warmup, device, progress=bar,
                                  measure_floor=not no_floor and any(c.backend in suite.TORCH_BACKENDS for c in case_list),
                                  on_result=show, stream=not no_stream)
    click.echo(report.table(result))
    if json_out:
        report.write_json(result, json_out)
        if not quiet:
            click.echo(f"wrote {json_out}")
    if plot_out:
        if report.plot(result, plot_out):
            if not quiet:
                click.echo(f"wrote {plot_out}")
        else:
            plot_out = None
    failed = [r for r in result["results"] if r.get("error")]
    if failed:
        from restore.runtime.errors import PartialFailure

        written = " and ".join(str(p) for p in (json_out, plot_out) if p)
        if len(failed) == len(case_list):
            outcome = "nothing was measured" + (f"; the errors are recorded in {written}" if written else "")
        else:
            outcome = f"the other {len(case_list) - len(failed)} are in {written}" if written else "the other results are in the table above"
        raise PartialFailure(f"{len(failed)} of {len(case_list)} cases", f"failed (see FAILED rows); {outcome}")


def _default_model():
    from restore.runtime.artifact import DEFAULT_MODEL_DIR

    return "default" if DEFAULT_MODEL_DIR.is_dir() and any(DEFAULT_MODEL_DIR.iterdir()) else "fourier-unet"


def _default_outputs(device):
    """restore-bench-DEVICE-DATE.json/.png in the current folder, numbered so that an earlier
    run's files are never overwritten."""
    stem = f"restore-bench-{re.sub(r'[^a-z0-9]+', '-', device.lower())}-{datetime.date.today().isoformat()}"
    n = 1
    while True:
        name = stem if n == 1 else f"{stem}-{n}"
        json_out, plot_out = Path(f"{name}.json"), Path(f"{name}.png")
        if not (json_out.exists() or plot_out.exists()):
            return json_out, plot_out
        n += 1
