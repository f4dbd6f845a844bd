"""The whole GPU benchmark matrix in one run; writes benchmarks/results/<device>-<date>.json + .png.

    python -m restore.benchmarks.gpu_matrix            # on a machine with a CUDA GPU

What it measures (every part is guarded: a failing part is recorded with its error and the rest
goes on, so one run always leaves a complete file):

1. per-frame cases, torch fp16 (and fp32 when ``--fp32``): the shipped model (``default``; the
   ``fourier-unet`` architecture randomly initialised when it is not installed) and the peers
   NAFNet-32, MIMO-UNet, DeepRFT-style, at 1280x720, 1920x1080, 3840x2160: latency p50/p95/p99
   with CUDA events, stage breakdown, peak memory, FLOPs, TFLOP/s, measured time / floor;
2. streaming, host frame in to host frame out, double-buffered (``streaming.stream_frames``):
   frames/s, overlap efficiency, pipeline overhead over compute-only time;
3. the runtime's own paths through ``Restorer`` on the shipped model: torch and TensorRT
   backends (TensorRT where an engine/builder is present), tiled as the runtime tiles;
4. the runtime's ``GpuPipeline`` overlap measurement (``runtime.pipeline.measure_overlap``) on
   tile batches of the shipped model;
5. video decode and encode (PyAV, the runtime's threaded reader/writer), timed separately;
6. Real-ESRGAN-style tiling vs the runtime's feathered tiler at 1920x1080: time and seams;
7. the issue's targets, each marked met / not met with the figure behind it.

``--device cpu --sizes 128x96 --frames 2`` runs the same script end to end on a CPU (a smoke run;
the test suite does this), so it is known to work before GPU time is spent on it. ``--skip`` leaves
parts out (streaming, runtime, runtime_pipeline_overlap, video_codec, tiling) to fit a time budget.
"""
import argparse
import datetime
import json
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
PEERS = ("nafnet", "mimo-unet", "deeprft")
SIZES = ("1280x720", "1920x1080", "3840x2160")
TARGET_SIZE = "1920x1080"
PARTS = ("streaming", "runtime", "runtime_pipeline_overlap", "video_codec", "tiling")  # after the per-frame cases


def _guard(record, key, fn):
    """Run one part; on failure store its error under ``key`` instead of stopping the matrix."""
    try:
        record[key] = fn()
    except Exception as e:  # the matrix must finish: record why this part could not run
        record[key] = {"error": f"{type(e).__name__}: {e}", "where": traceback.format_exc(limit=3)}
        print(f"[gpu_matrix] {key}: {type(e).__name__}: {e}", file=sys.stderr)


def _log(text):
    print(f"[gpu_matrix {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def our_model():
    from restore.runtime.artifact import DEFAULT_MODEL_DIR

    return "default" if DEFAULT_MODEL_DIR.is_dir() and any(DEFAULT_MODEL_DIR.glob("*.safetensors")) else "fourier-unet"


def per_frame_cases(models, sizes, precisions, frames, warmup, device):
    from . import suite

    case_list = suite.cases(models, ["torch"], sizes, [None], precisions)
    done = []

    def show(record):
        done.append(record)
        _log(f"{len(done)}/{len(case_list)} {record['model']} {record['size']} {record['precision']}: "
             + (f"{record['fps']:.1f} fps" if "fps" in record else record.get("error", "")))

    # streaming is measured in its own section, with more frames
    return suite.run_matrix(case_list, frames, warmup, device, on_result=show, stream=False)


def streaming_cases(report, frames, warmup, device):
    """Double-buffered whole-frame streaming for every successful fp16/fp32 per-frame case."""
    from .harness import TorchRunner, overlap_efficiency, synthetic_frame
    from .streaming import measure_stream
    from .suite import load_torch_model, parse_size

    out = []
    for r in report["results"]:
        if r.get("error"):
            continue
        entry = {"model": r["model"], "size": r["size"], "precision": r["precision"]}
        try:
            model, _ = load_torch_model(r["model"])
            runner = TorchRunner(model, device, r["precision"])
            stream = measure_stream(runner, synthetic_frame(*parse_size(r["size"])), frames=frames, warmup=warmup)
            stages = r["stages_ms"]
            compute = stages["compute"]
            entry.update(stream)
            entry["compute_only_ms"] = compute
            entry["pipeline_overhead"] = stream["period_ms"] / compute - 1 if compute else None
            entry["overlap_efficiency"] = overlap_efficiency([stages["upload"], compute, stages["download"]], stream["period_ms"])
            r["overlap_efficiency"] = entry["overlap_efficiency"]
            r["stream_fps"] = stream["fps"]
            del runner, model
        except Exception as e:  # e.g. out of memory at 4K for a large peer
            entry["error"] = f"{type(e).__name__}: {e}"
        _log(f"stream {entry['model']} {entry['size']} {entry['precision']}: "
             + (f"{entry['fps']:.1f} fps, overhead {entry['pipeline_overhead']:.1%}" if "fps" in entry else entry["error"]))
        out.append(entry)
        _free_cuda()
    return out


def runtime_cases(model, sizes, frames, warmup, device):
    """The product path: ``Restorer`` with the torch and TensorRT backends on the shipped model
    (a zoo name goes in as a checkpoint: the torch backend runs it, TensorRT needs an export)."""
    from . import suite

    records = []
    on_gpu = str(device).startswith("cuda")
    for backend in ("runtime:torch", "tensorrt"):
        if backend == "tensorrt" and not on_gpu:
            records.append({"model": model, "backend": backend, "skipped": "TensorRT needs a CUDA GPU"})
            continue
        for size in sizes:
            precision = "fp16" if on_gpu else "fp32"
            case = suite.Case(model, backend, suite.parse_size(size), None, precision)
            try:
                record = suite.run_one(case, frames, warmup, device)
            except Exception as e:  # TensorRT absent or no engine for this GPU: recorded, not fatal
                record = {"model": model, "backend": backend, "size": size, "precision": precision, "error": f"{type(e).__name__}: {e}"}
            _log(f"runtime {backend} {size}: " + (f"{record['fps']:.1f} fps" if "fps" in record else record["error"]))
            records.append(record)
            _free_cuda()
    return records


def runtime_pipeline_overlap(model, device):
    """The runtime's ``measure_overlap`` on 32 batches of 4 tiles of 256 through the torch module."""
    from restore.runtime.pipeline import GpuPipeline, measure_overlap, torch_executor

    from .suite import load_torch_model

    torch_model, _ = load_torch_model(model)
    net = torch_model.to(device).eval()
    shape = (3, 256, 256)
    batches = [np.random.default_rng(i).random((4,) + shape, dtype=np.float32) for i in range(32)]
    with GpuPipeline(torch_executor(net, shape, shape), shape, shape, max_batch=4) as pipeline:
        return measure_overlap(pipeline, batches)


def video_codec(sizes, frames):
    """Decode and encode frames/s with the runtime's threaded PyAV reader and writer (default H.264)."""
    from restore.runtime.media import VideoInfo, VideoReader, VideoWriter

    from .harness import synthetic_frame
    from .suite import parse_size

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            w, h = parse_size(size)
            frame = synthetic_frame(w, h)
            path = Path(tmp) / f"clip-{size}.mp4"
            start = time.perf_counter()
            writer = VideoWriter(path, VideoInfo.constant_rate(w, h, 30))
            for i in range(frames):
                writer.write(np.roll(frame, 4 * i, axis=1))  # moving content, as a real clip
            writer.close()
            encode_s = time.perf_counter() - start
            start = time.perf_counter()
            with VideoReader(path) as reader:
                decoded = sum(1 for _ in reader)
            decode_s = time.perf_counter() - start
            out.append({"size": size, "frames": frames, "codec": "h264 (libx264 CRF 18 veryfast, PyAV)", "encode_fps": frames / encode_s,
                        "decode_fps": decoded / decode_s, "decoded_frames": decoded})
            _log(f"video {size}: encode {out[-1]['encode_fps']:.1f} fps, decode {out[-1]['decode_fps']:.1f} fps")
    return out


def tiling_comparison(model, size, device, tile=256, repeats=3):
    from .esrgan_tiler import compare_tilers
    from .harness import TorchRunner, synthetic_frame
    from .suite import load_torch_model, parse_size

    torch_model, origin = load_torch_model(model)
    runner = TorchRunner(torch_model, device, "fp16" if str(device).startswith("cuda") else "fp32", tile=tile)
    result = compare_tilers(runner, synthetic_frame(*parse_size(size)), tile=tile, repeats=repeats)
    result["model"], result["origin"] = model, origin
    return result


def targets(report, ours):
    """The issue's targets at 1920x1080 fp16, each with the figure it was judged on."""
    rows = [r for r in report["per_frame"]["results"] if not r.get("error") and r["size"] == TARGET_SIZE and r["precision"] == "fp16"]
    by_model = {r["model"]: r for r in rows}
    streams = {s["model"]: s for s in report.get("streaming") or [] if isinstance(s, dict) and s.get("size") == TARGET_SIZE
               and s.get("precision") == "fp16" and "fps" in s}
    mine, nafnet = by_model.get(ours), by_model.get("nafnet")
    stream = streams.get(ours)
    result = {}
    if stream:
        result["stream_fps>=120"] = {"value": stream["fps"], "met": stream["fps"] >= 120}
        if stream.get("pipeline_overhead") is not None:
            result["pipeline_overhead<=10%"] = {"value": stream["pipeline_overhead"], "met": stream["pipeline_overhead"] <= 0.10}
    if mine and nafnet:
        result["faster_than_nafnet32"] = {"value": {"ours_ms": mine["latency_ms"]["p50"], "nafnet_ms": nafnet["latency_ms"]["p50"]},
                                          "met": mine["latency_ms"]["p50"] < nafnet["latency_ms"]["p50"]}
    if mine and mine.get("floor"):
        ratio = mine["floor"]["compute_over_floor"]
        result["within_3x_of_floor"] = {"value": ratio, "met": ratio is not None and ratio <= 3.0}
    result["our_psnr"] = _our_metrics(ours)
    return result


def _our_metrics(model):
    """PSNR/SSIM of the shipped model as recorded in its artifact (the peers here are untrained)."""
    from restore.runtime.artifact import DEFAULT_MODEL_DIR

    meta = DEFAULT_MODEL_DIR / "metadata.json"
    if model != "default" or not meta.is_file():
        return None
    return json.loads(meta.read_text()).get("model", {}).get("metrics")


def _free_cuda():
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def device_slug(report):
    name = report["per_frame"]["device"].get("name") or report["per_frame"]["device"]["device"]
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default=None, help="cuda (default when present) or cpu for a smoke run")
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--frames", type=int, default=50, help="timed frames per per-frame case")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--stream-frames", type=int, default=120)
    parser.add_argument("--fp32", action="store_true", help="also time fp32")
    parser.add_argument("--models", default=None, help="comma-separated; default: ours + the three peers")
    parser.add_argument("--out", default=str(RESULTS), help="folder for <device>-<date>.json and .png")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out")
    args = parser.parse_args(argv)
    skip = {p for p in args.skip.split(",") if p}
    if skip - set(PARTS):
        print(f"gpu_matrix: error: unknown part(s) {', '.join(sorted(skip - set(PARTS)))}; parts: {', '.join(PARTS)}", file=sys.stderr)
        return 2

    import torch

    import restore.benchmarks.peers  # noqa: F401  (registers the peers)

    from . import report as report_io

    device = args.device or ("cuda" if torch.cuda.is_available() else None)
    if device is None:
        print("gpu_matrix: error: no CUDA GPU here (pass --device cpu for a smoke run)", file=sys.stderr)
        return 2
    sizes = [s for s in args.sizes.split(",") if s]
    ours = our_model()
    models = args.models.split(",") if args.models else [ours, *PEERS]
    precisions = ["fp16", "fp32"] if args.fp32 else (["fp16"] if device.startswith("cuda") else ["fp32"])
    stream_frames = args.stream_frames if device.startswith("cuda") else min(args.stream_frames, 3)
    _log(f"device {device}; models {models}; sizes {sizes}; precisions {precisions}")

    started = time.time()
    report = {"format": "restore-gpu-matrix/1", "ours": ours,
              "command": report_io.command_line("gpu_matrix", argv)}
    report["per_frame"] = per_frame_cases(models, sizes, precisions, args.frames, args.warmup, device)
    tiling_size = TARGET_SIZE if TARGET_SIZE in sizes else sizes[0]
    on_gpu = device.startswith("cuda")
    parts = {
        "streaming": lambda: streaming_cases(report["per_frame"], stream_frames, min(args.warmup, 5), device),
        "runtime": lambda: runtime_cases(ours, sizes, args.frames, args.warmup, device),
        "runtime_pipeline_overlap": (lambda: runtime_pipeline_overlap(ours, device)) if on_gpu else None,
        "video_codec": lambda: video_codec(sizes, max(4, min(args.stream_frames, 60))),
        "tiling": lambda: tiling_comparison(ours, tiling_size, device, tile=256 if on_gpu else 64, repeats=3 if on_gpu else 1),
    }
    for key, part in parts.items():
        if part is not None and key not in skip:
            _guard(report, key, part)
    _guard(report, "targets", lambda: targets(report, ours))
    report["seconds"] = time.time() - started

    out = Path(args.out)
    stem = f"{device_slug(report)}-{datetime.date.today().isoformat()}"
    report_io.write_json(report, out / f"{stem}.json")
    report_io.plot(report["per_frame"], out / f"{stem}.png",
                   title=f"restore GPU matrix: {report['per_frame']['device'].get('name')} (torch, per frame)")
    print(report_io.table(report["per_frame"]))
    print(json.dumps(report.get("targets"), indent=2, default=str))
    print(f"wrote {out / stem}.json and .png in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
