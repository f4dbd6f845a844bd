"""The shipped model where users meet it (issue 16): cost per 1080p frame, video flicker on a
static compressed scene, the held correction on a slow pan, and tile seams against the
whole-image run; each for the shipped model
and, with ``--baseline``, for an earlier artifact in the same run.

    python -m restore.benchmarks.field [--baseline DIR] [--out benchmarks/results/field-DATE.json]

- cost: ONNX Runtime (CPU) seconds per 1920x1080 frame, median of ``--repeats``, the models
  interleaved round by round;
- flicker: a static 640x480 scene (the holdout picture astronaut, motion blur 15 px at 30
  degrees, fresh sensor noise of sigma 0.005 in every frame) as H.264 CRF 23, decoded and restored
  as a video (``Restorer.stream``: the blur estimate follows the frames and the correction is held
  where nothing moved, runtime/sequence.py); flicker = mean absolute
  difference between consecutive frames, of the output over the input's (target <= 1.2);
- pan: the same clip, 16 frames, the camera moving 0.25 px right and 0.1 px down a frame (slow
  enough for much of the picture to pass the held correction's gate): the share of pixels more
  than 3 levels from the frame restored alone, the largest difference, and the flicker ratio
  held and alone;
- seams: a 1024x768 picture (astronaut enlarged 2x, the same blur) restored in 256 tiles with
  overlap 32, against the same weights on the whole picture at once (torch); ``seam_ratio``
  (runtime/tiler.py) of each residual on the tile lines, tiled over whole (target within 5%).
Results: JSON and a PNG beside it.
"""
import argparse
import datetime
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from restore.runtime.atomic import atomic_path, atomic_write_text

from .media import cpu_model
from .report import command_line

RESULTS = Path(__file__).parent / "results"
PAN = (0.25, 0.1)  # the slow pan's camera move, pixels a frame


def scene(width, height, scale=1.0):
    import cv2
    from skimage import data

    from restore.trainer.degradations import apply_kernel, linear_motion_kernel

    picture = data.astronaut().astype(np.float32) / 255
    picture = cv2.resize(picture, (int(512 * scale), int(512 * scale)), interpolation=cv2.INTER_CUBIC)
    picture = np.clip(cv2.resize(picture, (width, height), interpolation=cv2.INTER_CUBIC), 0, 1)
    return np.clip(apply_kernel(picture, linear_motion_kernel(15, 30)), 0, 1)


def cost(models, repeats):
    """Seconds per 1080p frame of each of ``models`` (name -> model), interleaved round by round
    (other work on a shared machine then weighs on every model alike), median over ``repeats``."""
    from contextlib import ExitStack

    from restore.runtime import Restorer

    frame = (scene(1920, 1080) * 255).astype(np.uint8)
    with ExitStack() as stack:
        restorers = {name: stack.enter_context(Restorer(model, backend="onnxruntime")) for name, model in models.items()}
        times = {name: [] for name in models}
        for r in restorers.values():
            r.restore(frame)  # warm-up
        for _ in range(repeats):
            for name, r in restorers.items():
                start = time.perf_counter()
                r.restore(frame)
                times[name].append(time.perf_counter() - start)
        return {name: {"seconds_per_1080p_frame": round(statistics.median(times[name]), 3), "runtime": r.description}
                for name, r in restorers.items()}


def clip(tmp, frames, drift=(0.0, 0.0)):
    """The field clip, decoded: the scene with fresh sensor noise in every frame, as H.264 CRF 23;
    ``drift``: the camera's move in (x, y) pixels a frame (0: a static scene)."""
    import cv2

    from restore.runtime.media import EncoderSettings, VideoInfo, VideoReader, VideoWriter

    canvas = scene(680, 520)
    rng = np.random.default_rng(0)
    path = tmp / f"clip-{drift[0]}-{drift[1]}.mp4"
    writer = VideoWriter(path, VideoInfo.constant_rate(640, 480, 25), EncoderSettings(crf=23, preset="medium"))
    for i in range(frames):
        shift = np.float32([[1, 0, -drift[0] * i], [0, 1, -drift[1] * i]])
        still = cv2.warpAffine(canvas, shift, (680, 520), flags=cv2.INTER_CUBIC)[20:500, 20:660]
        noisy = np.clip(still + rng.normal(0, 0.005, still.shape), 0, 1)
        writer.write((noisy * 255).round().astype(np.uint8), i)
    writer.close()
    with VideoReader(path) as reader:
        return [frame.image for frame in reader]


def mean_change(frames):
    """Flicker: the mean absolute difference of consecutive frames (fraction of full scale)."""
    return float(np.mean([np.abs(a.astype(np.float32) - b.astype(np.float32)).mean() / 255 for a, b in zip(frames, frames[1:])]))


def flicker(model, decoded):
    from restore.runtime import Restorer

    with Restorer(model, backend="onnxruntime") as r:
        restored = list(r.stream(decoded))
    source, output = mean_change(decoded), mean_change(restored)
    return {"input": round(source, 6), "output": round(output, 6), "ratio": round(output / source, 3)}


def pan(model, decoded):
    """A video's held correction where the camera moves slowly: each frame as ``Restorer.stream``
    gives it against the same frame restored alone."""
    from restore.runtime import Restorer

    with Restorer(model, backend="onnxruntime") as r:
        held = list(r.stream(decoded))
        alone = [r.restore(frame) for frame in decoded]
    off = np.stack([np.abs(a.astype(np.int16) - b).max(axis=2) for a, b in zip(held, alone)])
    return {"share_off_by_more_than_3_levels": round(float((off > 3).mean()), 5), "max_levels_off": int(off.max()),
            "flicker_ratio_held": round(mean_change(held) / mean_change(decoded), 3),
            "flicker_ratio_alone": round(mean_change(alone) / mean_change(decoded), 3)}


def seams(model):
    from restore.runtime import Restorer
    from restore.runtime.artifact import resolve_model
    from restore.runtime.tiler import seam_ratio
    from restore.trainer.checkpoint import model_from_checkpoint
    from restore.trainer.inference import restore_array

    picture = scene(1024, 768, scale=2.0)
    with Restorer(model, backend="onnxruntime", tile=256, overlap=32) as r:
        tiled = r.restore(picture)
    whole = restore_array(model_from_checkpoint(resolve_model(model).checkpoint).eval(), picture)
    tiled_ratio, whole_ratio = (seam_ratio(out - picture, 256, 32) for out in (tiled, whole))
    return {"tiled": round(tiled_ratio, 3), "whole_image": round(whole_ratio, 3), "tiled_over_whole": round(tiled_ratio / whole_ratio, 3),
            "max_abs_difference_levels": round(float(np.abs(tiled - whole).max() * 255), 2)}


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(report["models"])
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    panels = [("seconds per 1080p frame (ORT CPU)", lambda m: m["cost"]["seconds_per_1080p_frame"], None),
              ("static video flicker, output / input", lambda m: m["flicker"]["ratio"], 1.2),
              ("slow pan: % of pixels > 3 levels\nfrom the frame restored alone", lambda m: 100 * m["pan"]["share_off_by_more_than_3_levels"], None),
              ("seam ratio, tiled / whole image", lambda m: m["seams"]["tiled_over_whole"], 1.05)]
    for ax, (title, value, target) in zip(axes, panels):
        bars = ax.bar(models, [value(report["models"][m]) for m in models], color=["C0", "0.6"][: len(models)])
        ax.bar_label(bars, fmt="%.3g")
        if target:
            ax.axhline(target, color="C3", ls="--", lw=1, label=f"target {target}")
            ax.legend(fontsize=8)
        ax.set_title(title, fontsize=10)
    fig.suptitle(f"restore field checks on {report['cpu']}, {report['date']}", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--baseline", default=None, help="An earlier artifact directory, measured the same way in the same run.")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    date = datetime.date.today().isoformat()
    out = args.out or RESULTS / f"field-{date}.json"
    report = {"command": command_line("field", argv), "cpu": cpu_model(), "date": date, "models": {}}
    models = {"shipped": args.model} | ({"baseline": args.baseline} if args.baseline else {})
    costs = cost(models, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        static, panning = clip(Path(tmp), args.frames), clip(Path(tmp), 16, PAN)
        for name, model in models.items():
            row = {"model": str(model), "cost": costs[name], "flicker": flicker(model, static), "pan": pan(model, panning),
                   "seams": seams(model)}
            report["models"][name] = row
            print(f"{name}: {json.dumps(row)}", flush=True)
    if args.baseline:
        report["cost_ratio_shipped_over_baseline"] = round(report["models"]["shipped"]["cost"]["seconds_per_1080p_frame"]
                                                           / report["models"]["baseline"]["cost"]["seconds_per_1080p_frame"], 3)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    plot(report, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
