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

import numpy as np

from .datasets import builtin_images
from .degradations import apply_kernel, gaussian_kernel, gaussian_noise, linear_motion_kernel

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
