"""Soak test: restore a long video through the streaming pipeline on CPU and watch the memory.

    python -m restore.benchmarks.soak [--frames 1000] [--size 320x240] [--model tiny|default|PATH] [--every 100]

Writes an MJPG test video of ``--frames`` frames, then runs the same pieces as ``restore run``
on a video -- ``VideoReader`` (decode thread, bounded queue) -> ``Restorer.restore`` (tiler + ONNX
Runtime) -> ``VideoWriter`` (encode thread, atomic rename) -- and samples this process's RSS every
``--every`` frames. The model is by default a tiny conv net (runtime/testing.py; two 3x3 convs, tile
64, overlap 16) so that 1,000 frames take a minute or two; ``--model default`` takes the shipped one.

Reported: RSS at each sample, the slope of a least-squares line through the samples after the
warm-up (``--warmup`` frames; arenas, caches and queues fill up there), in bytes per frame, and the
growth over that stretch. A leak of one frame buffer per frame (320x240x3 float32 = 920 kB) would
show as a slope of ~920,000 B/frame; the check passes when the growth after warm-up stays under
``--max-growth-mb`` (allocator noise). Results: benchmarks/results/soak.json and soak.png.
"""
import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from restore.runtime.atomic import atomic_path

RESULTS = Path(__file__).parent / "results"


def rss_bytes():
    """Resident set size of this process (Linux /proc; psutil elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss


def write_test_video(path, frames, size, fps=25):
    """A moving pattern with noise (so MJPG frames differ and the decoder does real work)."""
    import cv2

    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(frames):
        base = 127 + 100 * np.sin((x + 3 * i) / 9.0) * np.cos((y - 2 * i) / 7.0)
        frame = np.clip(base[..., None] + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        writer.write(frame)
    writer.release()
    return path


def soak(frames=1000, size=(320, 240), model="tiny", every=100, warmup=200, workdir=None, progress=True):
    """Run the soak; returns a dict of the figures (see the module doc)."""
    from tqdm import tqdm

    from restore.runtime.api import Restorer
    from restore.runtime.media import VideoReader, VideoWriter

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        if model == "tiny":
            from restore.runtime.testing import write_conv_artifact

            model = write_conv_artifact(tmp / "tiny", layers=2, tile=64, overlap=16, batch=4)
        video = write_test_video(tmp / "in.avi", frames, size)
        samples = []  # (frames done, RSS bytes)
        start = time.perf_counter()
        with Restorer(model, backend="onnxruntime") as restorer, VideoReader(video) as reader:
            writer = VideoWriter(tmp / "out.mkv", reader.info.scaled(restorer.scale))
            done = 0
            try:
                samples.append((0, rss_bytes()))
                for frame in tqdm(reader, total=frames, unit="frame", disable=not progress, desc="soak"):
                    writer.write(restorer.restore(frame.image), frame.pts)
                    done += 1
                    if done % every == 0:
                        samples.append((done, rss_bytes()))
            except BaseException:
                writer.abort(keep_partial=False)
                raise
            writer.close()
            description = restorer.description
        seconds = time.perf_counter() - start
    if done != frames:
        raise RuntimeError(f"restored {done} of {frames} frames")
    return summarise(samples, warmup, frames, size, seconds, description)


def summarise(samples, warmup, frames, size, seconds, description):
    after = [(n, r) for n, r in samples if n >= warmup]
    n, r = np.array(after, dtype=np.float64).T
    slope = float(np.polyfit(n, r, 1)[0]) if len(after) >= 2 else float("nan")
    return {
        "frames": frames,
        "frame_size": f"{size[0]}x{size[1]}",
        "runtime": description,
        "seconds": round(seconds, 2),
        "frames_per_s": round(frames / seconds, 1),
        "warmup_frames": warmup,
        "rss_samples": [{"frames": int(f), "rss_mb": round(b / 2**20, 2)} for f, b in samples],
        "slope_bytes_per_frame": round(slope, 1),
        "growth_after_warmup_mb": round(float(r.max() - r[0]) / 2**20, 2),
        "peak_rss_mb": round(max(b for _, b in samples) / 2**20, 1),
    }


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = [s["frames"] for s in result["rss_samples"]]
    rss = [s["rss_mb"] for s in result["rss_samples"]]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(frames, rss, marker="o")
    ax.axvline(result["warmup_frames"], color="grey", linestyle=":", label="end of warm-up")
    ax.set_xlabel("frames restored")
    ax.set_ylabel("RSS (MB)")
    ax.set_title(f"soak: {result['frames']} frames {result['frame_size']}, slope {result['slope_bytes_per_frame']:.0f} B/frame")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT of the test video")
    parser.add_argument("--model", default="tiny", help="tiny (a small conv net), default, or an artifact path")
    parser.add_argument("--every", type=int, default=100, help="sample RSS every N frames")
    parser.add_argument("--warmup", type=int, default=200, help="frames before the slope is measured")
    parser.add_argument("--max-growth-mb", type=float, default=8.0, help="fail when RSS grows more after warm-up")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for soak.json and soak.png")
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    result = soak(args.frames, size, args.model, args.every, args.warmup)
    result["command"] = "python -m restore.benchmarks.soak " + " ".join(argv if argv is not None else __import__("sys").argv[1:])
    result["max_growth_mb"] = args.max_growth_mb
    result["passed"] = result["growth_after_warmup_mb"] <= args.max_growth_mb
    from restore.runtime.atomic import atomic_write_text

    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "soak.json", json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "soak.png")
    print(json.dumps({k: v for k, v in result.items() if k != "rss_samples"}, indent=2))
    for s in result["rss_samples"]:
        print(f"  {s['frames']:6d} frames  {s['rss_mb']:8.2f} MB")
    if not result["passed"]:
        raise SystemExit(f"RSS grew {result['growth_after_warmup_mb']} MB after warm-up (limit {args.max_growth_mb} MB)")


if __name__ == "__main__":
    main()
