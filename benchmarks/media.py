"""Media layer benchmark: PyAV decode/encode against the OpenCV path it replaced, encode quality,
and an end-to-end video restore showing the decode and encode threads overlap the model.

    python -m restore.benchmarks.media [--frames 30] [--sizes 1280x720,1920x1080] [--out benchmarks/results/media.json]

Per size, on one clip panning over a photo-like frame with grain (the input: H.264 CRF 23 medium,
what a camera or web file looks like):
- decode frames/s to RGB arrays: the runtime's VideoReader (PyAV, decode thread) vs
  cv2.VideoCapture (+ the BGR->RGB swap the old path did);
- encode frames/s from RGB arrays: the runtime's VideoWriter with libx264 CRF 18 at presets
  veryfast (the default) and medium vs cv2.VideoWriter mp4v (the old default for .mp4);
- PSNR of each encode against the frames before encoding (RGB, and luma Y as video tools report
  it; RGB PSNR of any 4:2:0 encode is capped by the chroma subsampling, measured as
  ``psnr_ceiling_yuv420_db``), and its bitrate relative to the input.
End to end: the steps of ``restore_video`` (what ``restore run`` calls), each stage's busy time
(decode thread, restorer, encode thread) counted in that run: with the stages overlapping, the
total stays near the slowest stage, not their sum. Twice: with an identity ONNX model at the
largest size (the media layer's own cost) and with the shipped model at 1280x720 on the first
``--model-frames`` frames (the real job, which the model dominates). Each stage alone is timed
too, for reference. The OpenCV baseline lives only in this file.
"""
import argparse
import datetime
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from restore.runtime.atomic import atomic_path, atomic_write_text

from .report import command_line

RESULTS = Path(__file__).parent / "results"


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        return platform.processor() or "unknown"


def clip_frames(width, height, frames):
    """A pan over a photo-like frame with luma grain (the same noise in R, G and B, as a camera's
    after its processing; independent per-channel noise is what 4:2:0 throws away first)."""
    import cv2

    from .harness import synthetic_frame

    smooth = cv2.GaussianBlur(synthetic_frame(width, height), (0, 0), 1.0).astype(np.float32)
    grain = np.random.default_rng(1).normal(0, 3, (height, width, 1)).astype(np.float32)
    base = np.clip(smooth + grain, 0, 255).astype(np.uint8)
    return [np.roll(base, 4 * i, axis=1) for i in range(frames)]


def yuv420_ceiling(frames):
    """PSNR of a 4:2:0 round trip without compression: the most any 4:2:0 encode can reach."""
    import av

    def back(frame):
        return av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p").to_ndarray(format="rgb24")

    return round(float(np.mean([psnr(f, back(f)) for f in frames[:5]])), 2)


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse)) if mse > 0 else float("inf")


def luma(frame):
    return frame.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def bitrate(path, frames, fps):
    return Path(path).stat().st_size * 8 / (frames / fps)


def decoded_rgb(path):
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def encode_pyav(path, frames, fps, preset):
    from restore.runtime.media import EncoderSettings, VideoInfo, VideoWriter

    h, w = frames[0].shape[:2]
    start = time.perf_counter()
    writer = VideoWriter(path, VideoInfo.constant_rate(w, h, fps), EncoderSettings(preset=preset))
    for i, frame in enumerate(frames):
        writer.write(frame, i)
    writer.close()
    return time.perf_counter() - start


def encode_opencv(path, frames, fps):
    import cv2

    h, w = frames[0].shape[:2]
    start = time.perf_counter()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return time.perf_counter() - start


def decode_pyav(path):
    from restore.runtime.media import VideoReader

    start = time.perf_counter()
    with VideoReader(path) as reader:
        count = sum(1 for _ in reader)
    return count, time.perf_counter() - start


def decode_opencv(path):
    import cv2

    start = time.perf_counter()
    cap = cv2.VideoCapture(str(path))
    count = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        count += 1
    cap.release()
    return count, time.perf_counter() - start


def make_clip(tmp, width, height, frames, fps):
    """The input clip: ``clip_frames`` as H.264 CRF 23 medium; returns (path, the RGB frames)."""
    from restore.runtime.media import EncoderSettings, VideoInfo, VideoWriter

    rgb = clip_frames(width, height, frames)
    source = tmp / f"input-{width}x{height}-{frames}.mp4"
    writer = VideoWriter(source, VideoInfo.constant_rate(width, height, fps), EncoderSettings(crf=23, preset="medium"))
    for i, frame in enumerate(rgb):
        writer.write(frame, i)
    writer.close()
    return source, rgb


def codec_case(tmp, width, height, frames, fps):
    source, rgb = make_clip(tmp, width, height, frames, fps)
    input_bps = bitrate(source, frames, fps)
    row = {"size": f"{width}x{height}", "frames": frames, "input": "H.264 CRF 23 medium", "input_mbps": round(input_bps / 1e6, 2),
           "psnr_ceiling_yuv420_db": yuv420_ceiling(rgb)}
    n, seconds = decode_pyav(source)
    row["decode_fps_pyav"] = round(n / seconds, 1)
    n, seconds = decode_opencv(source)
    row["decode_fps_opencv"] = round(n / seconds, 1)
    encodes = {}
    for preset in ("veryfast", "medium"):
        path = tmp / f"x264-{preset}-{width}.mp4"
        encodes[f"x264 {preset}"] = (path, encode_pyav(path, rgb, fps, preset))
    path = tmp / f"mp4v-{width}.mp4"
    encodes["mp4v (OpenCV)"] = (path, encode_opencv(path, rgb, fps))
    row["encode"] = {}
    for name, (path, seconds) in encodes.items():
        out = decoded_rgb(path)
        row["encode"][name] = {"fps": round(frames / seconds, 1), "psnr_db": round(float(np.mean([psnr(a, b) for a, b in zip(rgb, out)])), 2),
                               "luma_psnr_db": round(float(np.mean([psnr(luma(a), luma(b)) for a, b in zip(rgb, out)])), 2),
                               "bitrate_vs_input": round(bitrate(path, frames, fps) / input_bps, 2), "frames_decoded": len(out)}
    print(f"{row['size']}: decode {row['decode_fps_pyav']} fps (PyAV) vs {row['decode_fps_opencv']} (OpenCV); "
          + "; ".join(f"{k} {v['fps']} fps {v['psnr_db']} dB RGB {v['luma_psnr_db']} dB Y x{v['bitrate_vs_input']} bitrate" for k, v in row["encode"].items()), flush=True)
    return row, source, rgb


class TimedRestorer:
    """The restorer with the seconds spent in ``restore`` counted (the main thread's busy time)."""

    def __init__(self, restorer):
        self.restorer, self.scale, self.busy_s = restorer, restorer.scale, 0.0

    def restore(self, image, **kwargs):
        start = time.perf_counter()
        try:
            return self.restorer.restore(image, **kwargs)
        finally:
            self.busy_s += time.perf_counter() - start


def end_to_end(tmp, source, rgb, fps, model="identity"):
    """The video job ``restore run`` does (media.restore_video's steps) through ``model``
    ("identity": a pass-through ONNX model; else what ``Restorer`` takes, e.g. "default"), with each
    stage's busy time counted in that same run, and each stage alone for reference."""
    from restore.runtime import Restorer, Sequence
    from restore.runtime.media import VideoReader, VideoWriter, restore_frames
    from restore.runtime.testing import write_conv_artifact

    label = "identity ONNX (tile 512, batch 1)" if model == "identity" else f"{model} (auto backend)"
    if model == "identity":
        model = write_conv_artifact(tmp / "identity", layers=0, tile=512, overlap=16, batch=1)
    frames = len(rgb)
    with Restorer(model, backend="onnxruntime" if label.startswith("identity") else "auto") as restorer:
        restorer.restore(rgb[0])  # warm-up: session start and first allocations
        timed = TimedRestorer(restorer)
        start = time.perf_counter()
        with VideoReader(source) as reader:
            writer = VideoWriter(tmp / "restored.mp4", reader.info.scaled(restorer.scale), source=reader)
            restore_frames(timed, reader, writer, reader.frame_count, progress=False, reader=reader)
        total_s = time.perf_counter() - start
        busy = {"decode": reader.busy_s, "restore": timed.busy_s, "encode": writer.busy_s}
        _, decode_s = decode_pyav(source)
        start = time.perf_counter()
        sequence = Sequence()
        for frame in rgb:
            restorer.restore(frame, sequence=sequence)
        alone = {"decode": decode_s, "restore": time.perf_counter() - start, "encode": encode_pyav(tmp / "alone.mp4", rgb, fps, None)}
        description = restorer.description
    slowest = max(busy.values())
    result = {"size": f"{rgb[0].shape[1]}x{rgb[0].shape[0]}", "frames": frames, "model": label, "runtime": description,
              "stage_busy_s": {k: round(v, 2) for k, v in busy.items()}, "sum_of_stages_s": round(sum(busy.values()), 2),
              "stage_alone_s": {k: round(v, 2) for k, v in alone.items()},
              "total_s": round(total_s, 2), "total_over_slowest": round(total_s / slowest, 3), "fps": round(frames / total_s, 2)}
    print(f"end to end {result['size']}: {result['total_s']} s total, busy in that run {result['stage_busy_s']} "
          f"(sum {result['sum_of_stages_s']} s), total / slowest = {result['total_over_slowest']}; each stage alone {result['stage_alone_s']}", flush=True)
    return result


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["end_to_end"] if isinstance(report["end_to_end"], list) else [report["end_to_end"]]
    fig, (left, *rights) = plt.subplots(1, 1 + len(runs), figsize=(6 + 6 * len(runs), 4.5))
    rows = report["codec"]
    labels = ["decode PyAV", "decode OpenCV"] + [f"encode {k}" for k in rows[0]["encode"]]
    width = 0.8 / len(rows)
    for j, row in enumerate(rows):
        values = [row["decode_fps_pyav"], row["decode_fps_opencv"]] + [v["fps"] for v in row["encode"].values()]
        bars = left.bar(np.arange(len(labels)) + j * width, values, width, label=row["size"])
        left.bar_label(bars, fmt="%.0f", fontsize=7)
    left.set_xticks(np.arange(len(labels)) + width * (len(rows) - 1) / 2, labels, rotation=20, ha="right", fontsize=8)
    left.set_ylabel("frames/s")
    left.set_title("decode / encode, RGB arrays in and out")
    left.legend()
    for right, e2e in zip(rights, runs):
        names = [f"{k} busy" for k in e2e["stage_busy_s"]] + ["sum", "total"]
        values = list(e2e["stage_busy_s"].values()) + [e2e["sum_of_stages_s"], e2e["total_s"]]
        bars = right.bar(names, values, color=["C0", "C1", "C2", "0.6", "C3"])
        right.bar_label(bars, fmt="%.1f s", fontsize=8)
        right.set_title(f"{e2e['model'].split(' (')[0]}, {e2e['size']}, {e2e['frames']} frames: total / slowest stage = {e2e['total_over_slowest']}", fontsize=9)
        right.set_ylabel("seconds")
    fig.suptitle(f"restore media layer (PyAV {report['pyav']}) on {report['cpu']}, {report['date']}", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--sizes", default="1280x720,1920x1080")
    parser.add_argument("--model-frames", type=int, default=10, help="Frames of the 1280x720 clip the shipped model restores end to end (0: skip).")
    parser.add_argument("--out", type=Path, default=RESULTS / "media.json")
    args = parser.parse_args(argv)

    import av

    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    report = {"command": command_line("media", argv), "cpu": cpu_model(), "cores": _cores(),
              "date": datetime.date.today().isoformat(), "pyav": av.__version__, "codec": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for w, h in sizes:
            row, source, rgb = codec_case(tmp, w, h, args.frames, args.fps)
            report["codec"].append(row)
        report["end_to_end"] = [end_to_end(tmp, source, rgb, args.fps)]
        if args.model_frames:
            source, rgb = make_clip(tmp, 1280, 720, args.model_frames, args.fps)
            report["end_to_end"].append(end_to_end(tmp, source, rgb, args.fps, model="default"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    plot(report, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


def _cores():
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


if __name__ == "__main__":
    raise SystemExit(main())
