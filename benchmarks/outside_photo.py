"""A photo from outside the repository (matplotlib's sample ``grace_hopper.jpg``: in no split and no
holdout) blurred three ways, restored through the runtime as a user would (``Restorer``, ONNX
Runtime, tiles of 256), PSNR gain over the blurred input for each model given:

    python -m restore.benchmarks.outside_photo [MODEL ...] [--out benchmarks/results/outside-photo-DATE.json]

Cases (noise sigma 0.005, seed fixed): three curved camera shakes along a 21 px path; the photo
upscaled 3x (bicubic, soft high-resolution content), then a straight 15 px motion; the photo as it
is (sharp: must come back no worse). MODEL: artifact directories or names (default: the shipped one).
"""
import argparse
import datetime
import json
from pathlib import Path

import numpy as np

from restore.runtime.atomic import atomic_write_text

from .media import cpu_model
from .report import command_line

RESULTS = Path(__file__).parent / "results"
SEED = 20261202
NOISE = 0.005


def cases():
    import cv2
    from matplotlib import cbook

    from restore.trainer.degradations import apply_kernel, linear_motion_kernel, trajectory_kernel

    photo = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    photo = cv2.cvtColor(photo, cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    rng = np.random.default_rng(SEED)
    out = [(f"curved shake 21 px, path {i}", photo, trajectory_kernel(rng, size=39, length=21, anxiety=0.4)) for i in range(3)]
    upscaled = np.clip(cv2.resize(photo, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC), 0, 1)
    out.append(("upscaled 3x, then motion 15 px", upscaled, linear_motion_kernel(15, 30)))
    out.append(("sharp (noise only)", photo, np.ones((1, 1), np.float32)))
    return [(name, gt, np.clip(apply_kernel(gt, k) + rng.normal(0, NOISE, gt.shape), 0, 1).astype(np.float32)) for name, gt, k in out]


def main(argv=None):
    from restore.runtime import Restorer
    from restore.trainer.metrics import psnr

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=["default"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    date = datetime.date.today().isoformat()
    out = args.out or RESULTS / f"outside-photo-{date}.json"
    restorers = {m: Restorer(m, backend="onnxruntime", tile=256) for m in args.models}
    rows = []
    for name, gt, lq in cases():
        gains = {m: round(float(psnr(gt, r.restore(lq)) - psnr(gt, lq)), 3) for m, r in restorers.items()}
        rows.append({"case": name, "size": list(gt.shape[:2]), "gain_db": gains})
        print(f"{name:34s}", "  ".join(f"{m}: {g:+.2f} dB" for m, g in gains.items()), flush=True)
    report = {"command": command_line("outside_photo", argv), "cpu": cpu_model(),
              "date": date, "photo": "matplotlib sample data grace_hopper.jpg", "noise": NOISE, "seed": SEED, "cases": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
