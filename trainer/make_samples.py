"""Regenerate the demo's sample images in runtime/samples/ (seeded, so the files come out the same).

    python -m restore.trainer.make_samples [OUT_DIR]

Writes crops of HOLDOUT builtin images (never trained on) blurred with known kernels, their sharp
references under sharp/ with the same names (so ``restore demo`` can report PSNR), a copy of
scikit-image's clock_motion.png (real camera-motion blur, no reference) and SAMPLES.json listing
how each was made.
"""
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

from restore.runtime.atomic import atomic_path, atomic_write_bytes, atomic_write_text

from .datasets import builtin_images, real_blur_photo_path
from .degradations import gaussian_blur, motion_blur

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "runtime" / "samples"
SEED = 2024

# (output name, holdout image, crop top, crop left, crop size, blur)
SAMPLES = (
    ("astronaut_motion.png", "astronaut", 0, 64, 384, ("motion", {"length": 15.0, "angle": 30.0})),
    ("camera_gaussian.png", "camera", 40, 64, 384, ("gaussian", {"sigma": 2.0})),
    ("hubble_motion.png", "hubble_deep_field", 300, 400, 384, ("motion", {"length": 11.0, "angle": 120.0})),
)


def make_samples(out_dir=DEFAULT_OUT):
    out_dir = Path(out_dir)
    (out_dir / "sharp").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    holdout = dict(builtin_images("holdout"))
    manifest = {}
    for name, source, top, left, size, (kind, params) in SAMPLES:
        sharp = holdout[source][top:top + size, left:left + size]
        blurred, used = motion_blur(sharp, **params) if kind == "motion" else gaussian_blur(sharp, **params)
        # A little sensor noise, as in a real photo (and so the demo is not a noiseless toy).
        blurred = np.clip(blurred + rng.normal(0, 0.005, blurred.shape).astype(np.float32), 0, 1)
        gray = source == "camera"  # scikit-image's camera is a grey picture: keep it one channel
        _write_png(out_dir / name, blurred, gray)
        _write_png(out_dir / "sharp" / name, sharp, gray)
        manifest[name] = {"source": f"skimage.data.{source}", "crop": [top, left, size, size],
                          "blur": {k: v for k, v in used.items() if k != "kernel"}, "noise_sigma": 0.005,
                          "reference": f"sharp/{name}"}
    with atomic_path(out_dir / "clock_motion.png") as tmp:
        shutil.copyfile(real_blur_photo_path(), tmp)
    manifest["clock_motion.png"] = {"source": "skimage.data.clock (clock_motion.png)",
                                    "blur": {"kind": "real camera motion"}, "reference": None}
    atomic_write_text(out_dir / "SAMPLES.json", json.dumps({"seed": SEED, "samples": manifest}, indent=2) + "\n")
    return manifest


def _write_png(path, image, gray):
    u8 = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    u8 = u8[..., 0] if gray else cv2.cvtColor(u8, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", u8, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path}")
    atomic_write_bytes(path, buf.tobytes())


if __name__ == "__main__":
    out = make_samples(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT)
    print("\n".join(out))
