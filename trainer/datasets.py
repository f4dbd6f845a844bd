"""Training and evaluation datasets: paired folders, on-the-fly synthetic pairs, bundled images.

Every item is ``{"lq": CxHxW float32 tensor in [0, 1], "gt": same (x scale larger for SR),
"name": str}``. Image work is NumPy; tensors are made at the end. Randomness (crops, flips,
degradations) comes from a generator seeded by (seed, epoch, index), so an item is reproducible and
DataLoader workers need no seeding of their own; call ``set_epoch`` to get new crops each epoch.
"""
import os
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from restore.runtime.errors import ConfigError, InputError
from restore.runtime.image_header import check_image_file
from restore.runtime.pixels import unit_float

from .degradations import build_degradation, centred_kernel

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}

# scikit-image's bundled pictures (no download) and the fixed split. Holdout: a face/person, a
# grey street scene, a star field and a texture, each at least 512x512 so evaluation can use
# 512-pixel crops. The stereo motorcycle pair stays together in train so holdout does not leak.
# Images smaller than a training patch (lfw faces 25x25, microaneurysms 102x102) and synthetic or
# alpha-masked drawings (logo, horse, phantom, color wheel) are not used.
BUILTIN_SPLITS = {
    "train": ("chelsea", "coffee", "motorcycle_left", "motorcycle_right", "rocket", "grass", "gravel",
              "page", "text", "moon", "coins", "cell", "retina", "immunohistochemistry"),
    "holdout": ("astronaut", "camera", "hubble_deep_field", "brick"),
}


def builtin_images(split="train"):
    """``[(name, HxWx3 float32 RGB image)]`` of scikit-image's bundled images for ``split``
    ("train", "holdout" or "all"). Grey images are repeated to three channels."""
    if split == "all":
        names = BUILTIN_SPLITS["train"] + BUILTIN_SPLITS["holdout"]
    elif split in BUILTIN_SPLITS:
        names = BUILTIN_SPLITS[split]
    else:
        raise ConfigError("split", f"unknown builtin split {split!r}", "use 'train', 'holdout' or 'all'")
    return [(name, _builtin(name)) for name in names]


def real_blur_photo():
    """scikit-image's ``clock_motion.png``: a real camera-motion-blurred photo, no sharp reference.
    Kept out of every split; used to check blur detection and as the demo's real-world sample."""
    return _to_float_rgb(_skimage_data().clock())


def real_blur_photo_path():
    """Where scikit-image keeps clock_motion.png (for copying it verbatim)."""
    return Path(_skimage_data().__file__).parent / "clock_motion.png"


def _skimage_data():
    try:
        import skimage.data
    except ImportError as e:
        raise ConfigError("builtin images", "scikit-image is not installed",
                          "pip install 'restore[train]'") from e
    return skimage.data


def _builtin(name):
    data = _skimage_data()
    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = data.stereo_motorcycle()
        image = left if name == "motorcycle_left" else right
    else:
        image = getattr(data, name)()
    return _to_float_rgb(image)


# ---------------------------------------------------------------------------------------------


class PairedFolder(Dataset):
    """``root/blur/NAME`` -> ``root/sharp/NAME`` pairs with identical file names (the CelebA seed's
    layout). ``patch`` crops the same random window from both (GT size; LQ is patch/scale)."""

    def __init__(self, root, patch=None, augment=True, gray=False, scale=1, seed=0,
                 lq_dir="blur", gt_dir="sharp"):
        self.root = Path(root)
        self.lq_dir, self.gt_dir = self.root / lq_dir, self.root / gt_dir
        self.patch, self.augment, self.gray, self.scale, self.seed = patch, augment, gray, int(scale), seed
        self.epoch = 0
        for folder in (self.lq_dir, self.gt_dir):
            if not folder.is_dir():
                raise InputError(folder, "folder not found",
                                 f"a paired dataset needs {lq_dir}/ and {gt_dir}/ with identical file names")
        lq, gt = _image_names(self.lq_dir), _image_names(self.gt_dir)
        if not lq or not gt:
            empty = self.lq_dir if not lq else self.gt_dir
            raise InputError(empty, "contains no images", f"put {', '.join(sorted(IMAGE_SUFFIXES))} files there")
        if lq != gt:
            only_lq, only_gt = sorted(set(lq) - set(gt)), sorted(set(gt) - set(lq))
            detail = "; ".join(f"only in {d.name}/: {', '.join(n[:3])}{' ...' if len(n) > 3 else ''}"
                               for d, n in ((self.lq_dir, only_lq), (self.gt_dir, only_gt)) if n)
            raise InputError(self.root, f"{lq_dir}/ and {gt_dir}/ file names do not match ({detail})",
                             "each blurred image needs a sharp image of the same name")
        if patch is not None and patch % self.scale:
            raise ConfigError("patch", f"{patch} is not a multiple of scale {self.scale}")
        self.names = lq

    def __len__(self):
        return len(self.names)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __getitem__(self, index):
        name = self.names[index]
        lq = read_image(self.lq_dir / name, gray=self.gray)
        gt = read_image(self.gt_dir / name, gray=self.gray)
        s = self.scale
        if gt.shape[:2] != (lq.shape[0] * s, lq.shape[1] * s):
            raise InputError(self.gt_dir / name, f"size {gt.shape[1]}x{gt.shape[0]} does not match "
                             f"{lq.shape[1]}x{lq.shape[0]} x{s} of its blurred pair", "pairs must be aligned")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.patch is not None:
            p = self.patch // s
            if min(lq.shape[:2]) < p:
                raise InputError(self.lq_dir / name, f"smaller than the {p}-pixel patch", "lower patch")
            y = int(rng.integers(0, lq.shape[0] - p + 1))
            x = int(rng.integers(0, lq.shape[1] - p + 1))
            lq = lq[y:y + p, x:x + p]
            gt = gt[y * s:(y + p) * s, x * s:(x + p) * s]
        if self.augment:
            flip, turns = bool(rng.integers(2)), int(rng.integers(4))
            lq, gt = _augment(lq, flip, turns), _augment(gt, flip, turns)
        return {"lq": to_tensor(lq), "gt": to_tensor(gt), "name": Path(name).stem}


class SyntheticPairs(Dataset):
    """Pairs made on the fly: a clean patch (GT, ``patch`` pixels) and its degraded version.

    ``images``: a folder path, a list of HxW[xC] arrays, or a list of (name, array) pairs as
    ``builtin_images`` returns. ``degradation``: a config dict for ``build_degradation`` or a
    callable ``(img, rng) -> (img, params)``. The patch is cut with a margin around it before
    degrading, so blur kernels see real neighbours instead of reflected borders. ``kernel_size``:
    each pair also carries its blur kernel centred on a ``kernel_size`` square (a delta when the
    degradation drew no blur), the target of ``loss.kernel``. ``rescale``: ``{"factor": [low, high],
    "prob": p}``: with probability p the clean picture is first resized by a factor drawn
    log-uniformly from the range (bicubic up: soft high-resolution content, as a phone's or an
    upscaler's; area-averaged down: denser detail), and that resized picture is the target.
    """

    margin = 32

    def __init__(self, images, degradation, patch=128, augment=True, length=1000, seed=0, scale=1, gray=False,
                 kernel_size=None, rescale=None):
        self.images = _load_images(images, gray)
        if not self.images:
            raise InputError(images if isinstance(images, (str, os.PathLike)) else "images",
                             "no images to make pairs from", "give a folder of images or a list of arrays")
        self.degrade = degradation if callable(degradation) else build_degradation(degradation)
        self.scale = int(scale)
        if patch % self.scale:
            raise ConfigError("patch", f"{patch} is not a multiple of scale {self.scale}")
        self.patch, self.augment, self.length, self.seed = int(patch), augment, int(length), seed
        if kernel_size is not None and (int(kernel_size) < 1 or int(kernel_size) % 2 == 0):
            raise ConfigError("kernel_size", f"{kernel_size} is not a positive odd number", "e.g. kernel_size: 31")
        self.kernel_size = kernel_size and int(kernel_size)
        rescale = dict(rescale or {"factor": [1, 1], "prob": 0})
        factor = rescale.pop("factor", [1, 1])
        self.rescale_prob = float(rescale.pop("prob", 1.0))
        if rescale or not (isinstance(factor, (list, tuple)) and len(factor) == 2 and 0 < factor[0] <= factor[1]):
            raise ConfigError("rescale", f"expected {{factor: [low, high], prob: p}} with 0 < low <= high, got {factor!r} {rescale or ''}")
        self.rescale_log = np.log(np.asarray(factor, np.float64))
        self.epoch = 0

    def __len__(self):
        return self.length

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        name, image = self.images[index % len(self.images)]
        m, p = self.margin, self.patch
        if self.rescale_prob and rng.uniform() < self.rescale_prob:
            window = _rescaled_crop(image, p + 2 * m, float(np.exp(rng.uniform(*self.rescale_log))), rng)
        else:
            window = _random_crop(image, p + 2 * m, rng)
        if self.augment:
            window = _augment(window, bool(rng.integers(2)), int(rng.integers(4)))
        lq, params = self.degrade(window, rng)
        gt = window[m:m + p, m:m + p]
        lm, lp = m // self.scale, p // self.scale
        lq = lq[lm:lm + lp, lm:lm + lp]
        if lq.shape[:2] != (lp, lp):
            raise ConfigError("degradation", f"output {lq.shape[:2]} does not match patch {p} / scale {self.scale}",
                              "set the dataset's scale to the degradation's downscale factor")
        item = {"lq": to_tensor(lq), "gt": to_tensor(np.ascontiguousarray(gt)), "name": f"{name}_{index}"}
        if self.kernel_size:
            item["kernel"] = torch.from_numpy(centred_kernel(params.get("kernel", np.ones((1, 1))), self.kernel_size))
        return item


def build_dataset(cfg):
    """Dataset from a config dict: ``{"type": "builtin"|"synthetic"|"paired", ...}``.

    builtin:   ``split`` (train/holdout/all) plus SyntheticPairs options (degradation, patch, ...)
    synthetic: ``images`` (folder) plus SyntheticPairs options
    paired:    ``root`` plus PairedFolder options
    """
    cfg = dict(cfg)
    kind = cfg.pop("type", None)
    try:
        if kind == "builtin":
            split = cfg.pop("split", "train")
            return SyntheticPairs(builtin_images(split), cfg.pop("degradation", None), **cfg)
        if kind == "synthetic":
            return SyntheticPairs(cfg.pop("images"), cfg.pop("degradation", None), **cfg)
        if kind == "paired":
            return PairedFolder(cfg.pop("root"), **cfg)
    except (TypeError, KeyError) as e:
        raise ConfigError(f"dataset ({kind})", f"bad options: {e}", "see restore.trainer.datasets") from None
    raise ConfigError("dataset.type", f"unknown dataset type {kind!r}", "use builtin, synthetic or paired")


# ---------------------------------------------------------------------------------------------


def read_image(path, gray=False):
    """An image file as float32 HxWx3 RGB (or HxWx1 with ``gray``) in [0, 1]; alpha is dropped."""
    check_image_file(path)  # missing, empty, damaged or too large for memory: refused unread
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data is not None and data.size else None
    if image is None:
        raise InputError(path, "cannot read this image (missing, empty or not an image)",
                         "check the file or remove it from the dataset")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    image = _to_float_rgb(image)
    return _to_gray(image) if gray else image


def to_tensor(image):
    """HxWxC float32 array -> CxHxW tensor."""
    image = image if image.ndim == 3 else image[..., None]
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))


def _image_names(folder):
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _load_images(images, gray):
    if isinstance(images, (str, os.PathLike)):
        folder = Path(images)
        if not folder.is_dir():
            raise InputError(folder, "folder not found", "give a folder of clean images")
        loaded = [(Path(n).stem, read_image(folder / n)) for n in _image_names(folder)]
    else:
        loaded = [item if isinstance(item, tuple) else (f"image{i}", item) for i, item in enumerate(images)]
        loaded = [(name, _to_float_rgb(np.asarray(img))) for name, img in loaded]
    return [(name, _to_gray(img) if gray else img) for name, img in loaded]


def _to_float_rgb(image):
    image = unit_float(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    elif image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[..., :3]
    return np.ascontiguousarray(image)


def _to_gray(image):
    """BT.601 luma, HxWx1."""
    return (image[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32))[..., None].astype(np.float32)


def _random_crop(image, size, rng):
    """A size x size window; images smaller than that are reflected out to it first."""
    h, w = image.shape[:2]
    if h < size or w < size:
        py, px = max(0, size - h), max(0, size - w)
        image = np.pad(image, ((py // 2, py - py // 2), (px // 2, px - px // 2), (0, 0)), mode="reflect")
        h, w = image.shape[:2]
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return image[y:y + size, x:x + size]


def _rescaled_crop(image, size, factor, rng):
    """A size x size window of ``image`` resized by ``factor`` (cut first, then resized: the same
    pixels as resizing the whole picture, at a window's cost)."""
    factor = max(factor, size / min(image.shape[:2]))  # a downscale cannot need more than the picture
    source = _random_crop(image, int(np.ceil(size / factor)) + 2, rng)
    interpolation = cv2.INTER_CUBIC if factor > 1 else cv2.INTER_AREA
    resized = cv2.resize(np.ascontiguousarray(source), None, fx=factor, fy=factor, interpolation=interpolation)
    resized = resized.reshape(resized.shape[:2] + image.shape[2:])
    return np.clip(resized[:size, :size], 0, 1)


def _augment(image, flip, turns):
    if flip:
        image = image[:, ::-1]
    return np.ascontiguousarray(np.rot90(image, turns))
