"""The fixed deblurring holdout (``builtin-holdout``). This protocol was fixed before the shipped
model was trained; changing it to flatter a model is not allowed.

- Images: ``builtin_images("holdout")`` (astronaut, camera, hubble_deep_field, brick), never used
  in training (``datasets.BUILTIN_SPLITS`` keeps them out of the train split).
- Per image: ``CROPS_PER_IMAGE`` = 2 crops of ``CROP`` = 512 x 512 pixels at full resolution (no
  resizing), positions drawn with the seed; images smaller than 512 on a side are left out.
- The first crop of every image is blurred by a linear motion PSF of length U(5, 25) px at an angle
  U(0, 180) degrees, the second by a Gaussian PSF of sigma U(1, 3): half motion, half Gaussian.
- Then Gaussian noise of sigma 0.01 is added and the result clipped to [0, 1].
- All random numbers come from ``np.random.default_rng([SEED, image_index])``.
- Blur is a true convolution with reflected borders (``degradations.apply_kernel``); the kernel
  is kept with each crop for the oracle (non-blind) baselines.
- Metrics: PSNR and SSIM (``trainer.metrics``) over the whole 512 x 512 RGB crop, data range 1.
"""
from dataclasses import dataclass

import cv2
import numpy as np

from .datasets import builtin_images
from .degradations import (apply_kernel, defocus_kernel, gaussian_kernel, gaussian_noise, jpeg, linear_motion_kernel,
                           trajectory_kernel)

SEED = 20261121
CROP = 512
CROPS_PER_IMAGE = 2
MOTION_LENGTH = (5.0, 25.0)
MOTION_ANGLE = (0.0, 180.0)
GAUSSIAN_SIGMA = (1.0, 3.0)
NOISE_SIGMA = 0.01


@dataclass
class HoldoutCrop:
    name: str  # e.g. "astronaut_0_motion"
    gt: np.ndarray  # HxWx3 float32 in [0, 1]
    lq: np.ndarray  # blurred + noisy
    kernel: np.ndarray  # the true PSF
    blur: dict  # {"kind": "motion", "length": .., "angle": ..} or {"kind": "gaussian", "sigma": ..}


def holdout_crops(images=None):
    """The holdout crops, in a fixed order. ``images`` defaults to the builtin holdout split."""
    images = builtin_images("holdout") if images is None else images
    crops = []
    for index, (name, image) in enumerate(images):
        h, w = image.shape[:2]
        if min(h, w) < CROP:
            continue
        rng = np.random.default_rng([SEED, index])
        for k in range(CROPS_PER_IMAGE):
            y = int(rng.integers(0, h - CROP + 1))
            x = int(rng.integers(0, w - CROP + 1))
            gt = np.ascontiguousarray(image[y:y + CROP, x:x + CROP], dtype=np.float32)
            if k % 2 == 0:
                length, angle = float(rng.uniform(*MOTION_LENGTH)), float(rng.uniform(*MOTION_ANGLE))
                kernel = linear_motion_kernel(length, angle)
                blur = {"kind": "motion", "length": round(length, 2), "angle": round(angle, 1)}
            else:
                sigma = float(rng.uniform(*GAUSSIAN_SIGMA))
                kernel = gaussian_kernel(sigma)
                blur = {"kind": "gaussian", "sigma": round(sigma, 3)}
            blurred = np.clip(apply_kernel(gt, kernel), 0, 1)
            lq, _ = gaussian_noise(blurred, NOISE_SIGMA, rng)
            crops.append(HoldoutCrop(f"{name}_{k}_{blur['kind']}", gt, lq, kernel, blur))
    return crops


# ---------------------------------------------------------------------------------------------
# The field holdout (``builtin-field``): the same four pictures, blurred the ways users' pictures
# are. Fixed on 2026-12-01 before the stage trained on the matching data (issue 16); changing it
# to flatter a model is not allowed.
#
# Per picture, 9 crops of 512 x 512, all with Gaussian noise of sigma FIELD_NOISE after the blur:
# - "shake" x2: a curved camera-shake path (``trajectory_kernel``, extent U(11, 31) px, anxiety
#   U(0.2, 0.6), 39 px grid), which the point-symmetric kernel bank cannot express;
# - "defocus" x1 (disk radius U(5, 8)) and "gaussian" x1 (sigma U(3, 5)): beyond the old bank;
# - "soft" x2: the picture upscaled by U(2, 5) (bicubic), then a 512 crop of it blurred by a straight
#   motion of U(9, 25) px at U(0, 180) degrees; the target is the upscaled (soft) picture;
# - "jpeg" x2: motion U(5, 25) px (first) or Gaussian sigma U(1, 3) (second), then the noise, then
#   JPEG at quality U(30, 70);
# - "sharp" x1: no blur at all, only the noise: a picture that must come back no worse.
# Random numbers: ``np.random.default_rng([FIELD_SEED, image_index, case_index])``.
# Targets (mean PSNR gain per category; issue 16): shake >= +1.5 dB, defocus/gaussian >= +1.5,
# soft >= +1.0, jpeg >= +1.5, and no single crop worse than its input by more than 0.1 dB.

FIELD_SEED = 20261201
FIELD_NOISE = 0.005
FIELD_CASES = ("shake", "shake", "defocus", "gaussian", "soft", "soft", "jpeg", "jpeg", "sharp")
FIELD_TARGETS = {"shake": 1.5, "defocus": 1.5, "gaussian": 1.5, "soft": 1.0, "jpeg": 1.5, "sharp": -0.1}
FIELD_WORST = -0.1  # no crop may lose more than this against its input


def field_crops(images=None, crop=CROP, seed=FIELD_SEED):
    """The field holdout crops, in a fixed order (``HoldoutCrop.blur["kind"]`` is the category).
    Other ``images``, ``crop`` and ``seed``: the same protocol elsewhere (e.g. on the training
    pictures, for calibration); pictures smaller than ``crop`` are left out."""
    images = builtin_images("holdout") if images is None else images
    crops = []
    for index, (name, image) in enumerate(images):
        if min(image.shape[:2]) < crop:
            continue
        for case, kind in enumerate(FIELD_CASES):
            rng = np.random.default_rng([seed, index, case])
            crops.append(_field_crop(f"{name}_{case}_{kind}", image, kind, case, rng, crop))
    return crops


def _field_crop(name, image, kind, case, rng, crop):
    if kind == "soft":
        factor = float(rng.uniform(2, 5))
        image = np.clip(cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC), 0, 1)
    h, w = image.shape[:2]
    y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    gt = np.ascontiguousarray(image[y:y + crop, x:x + crop], dtype=np.float32)
    blur = {"kind": kind}
    if kind == "shake":
        length, anxiety = float(rng.uniform(11, 31)), float(rng.uniform(0.2, 0.6))
        kernel = trajectory_kernel(rng, size=39, length=length, anxiety=anxiety)
        blur.update(extent=round(length, 1), anxiety=round(anxiety, 2))
    elif kind == "defocus":
        radius = float(rng.uniform(5, 8))
        kernel, blur["radius"] = defocus_kernel(radius), round(radius, 2)
    elif kind == "gaussian" or (kind == "jpeg" and case % 2):
        sigma = float(rng.uniform(*((3, 5) if kind == "gaussian" else GAUSSIAN_SIGMA)))
        kernel, blur["sigma"] = gaussian_kernel(sigma), round(sigma, 2)
    elif kind in ("soft", "jpeg"):
        length, angle = float(rng.uniform(*((9, 25) if kind == "soft" else MOTION_LENGTH))), float(rng.uniform(0, 180))
        kernel = linear_motion_kernel(length, angle)
        blur.update(length=round(length, 1), angle=round(angle, 1))
        if kind == "soft":
            blur["upscale"] = round(factor, 2)
    else:  # sharp
        kernel = np.ones((1, 1), np.float32)
    lq, _ = gaussian_noise(np.clip(apply_kernel(gt, kernel), 0, 1), FIELD_NOISE, rng)
    if kind == "jpeg":
        quality = int(rng.integers(30, 71))
        lq, blur["quality"] = jpeg(lq, quality)[0], quality
    return HoldoutCrop(name, gt, lq, kernel, blur)


def uniform_pictures():
    """[(name, HxWx3 float32)]: constant pictures at the extremes and in between, and near-constant
    ones with faint noise (half a level) or a one-level ramp; a model must return them within a
    level, with no non-finite value."""
    rng = np.random.default_rng([FIELD_SEED, 99])
    pictures = [(f"constant_{level}", np.full((256, 384, 3), level / 255, np.float32)) for level in (0, 1, 128, 254, 255)]
    for level in (0.0, 0.5, 1.0):
        noisy = np.clip(level + rng.normal(0, 0.5 / 255, (256, 384, 3)), 0, 1).astype(np.float32)
        pictures.append((f"near_{level:g}", noisy))
    ramp = np.broadcast_to(np.linspace(100, 101, 384, dtype=np.float32)[None, :, None] / 255, (256, 384, 3))
    pictures.append(("ramp_1_level", np.ascontiguousarray(ramp)))
    return pictures
