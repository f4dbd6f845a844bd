import cv2
import numpy as np
import pytest
import torch

from restore.runtime.errors import ConfigError, InputError
from restore.trainer.datasets import (BUILTIN_SPLITS, PairedFolder, SyntheticPairs, build_dataset, builtin_images,
                                      real_blur_photo)

DEGRADATION = {"blur": {"kinds": ["gaussian", "motion"], "sigma": [1, 3], "length": [5, 25]},
               "noise": {"sigma": [0, 0.01]}, "jpeg": None, "downscale": None}


def _write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


@pytest.fixture
def paired(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("001.png", "002.png", "003.png"):
        sharp = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        _write(tmp_path / "sharp" / name, sharp)
        _write(tmp_path / "blur" / name, cv2.GaussianBlur(sharp, (5, 5), 1.5))
    return tmp_path


def test_paired_folder_items(paired):
    ds = PairedFolder(paired, augment=False)
    assert len(ds) == 3
    item = ds[1]
    assert item["name"] == "002"
    assert item["lq"].shape == item["gt"].shape == (3, 48, 64)
    assert item["lq"].dtype == torch.float32 and 0 <= item["gt"].min() and item["gt"].max() <= 1
    # RGB order: the file holds BGR.
    bgr = cv2.imread(str(paired / "sharp" / "002.png"))
    np.testing.assert_allclose(item["gt"][0].numpy(), bgr[..., 2] / 255, atol=1e-6)


def test_paired_folder_patches_align_and_reproduce(paired):
    ds = PairedFolder(paired, patch=32, augment=True, seed=3)
    a, b = ds[0], ds[0]
    assert a["lq"].shape == (3, 32, 32)
    assert torch.equal(a["gt"], b["gt"]) and torch.equal(a["lq"], b["lq"])
    full = PairedFolder(paired, augment=False)[0]
    # The crop of lq and gt come from the same place: find the gt crop in the full image.
    gt = full["gt"].numpy().transpose(1, 2, 0)
    crop = a["gt"].numpy().transpose(1, 2, 0)
    found = any(np.allclose(np.rot90(np.fliplr(crop) if f else crop, -k), gt[y:y + 32, x:x + 32])
                for f in (0, 1) for k in range(4) for y in range(17) for x in range(33))
    assert found
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["gt"], a["gt"])
    gray = PairedFolder(paired, gray=True, augment=False)[0]
    assert gray["lq"].shape == (1, 48, 64)


def test_paired_folder_errors(tmp_path, paired):
    (paired / "sharp" / "003.png").rename(paired / "sharp" / "004.png")
    with pytest.raises(InputError, match="003.png.*004.png"):
        PairedFolder(paired)
    (tmp_path / "empty" / "blur").mkdir(parents=True)
    (tmp_path / "empty" / "sharp").mkdir()
    with pytest.raises(InputError, match="no images"):
        PairedFolder(tmp_path / "empty")
    with pytest.raises(InputError, match="not found"):
        PairedFolder(tmp_path / "nowhere")


def test_paired_folder_unreadable_and_mismatched_files(tmp_path):
    rng = np.random.default_rng(0)
    _write(tmp_path / "sharp" / "a.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    _write(tmp_path / "blur" / "a.png", rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    (tmp_path / "sharp" / "b.png").write_bytes(b"junk")
    (tmp_path / "blur" / "b.png").write_bytes(b"junk")
    ds = PairedFolder(tmp_path)
    with pytest.raises(InputError, match="does not match"):
        ds[0]
    with pytest.raises(InputError, match=r"b\.png"):
        ds[1]


def test_builtin_split_is_fixed_and_disjoint():
    assert not set(BUILTIN_SPLITS["train"]) & set(BUILTIN_SPLITS["holdout"])
    assert "clock" not in BUILTIN_SPLITS["train"] + BUILTIN_SPLITS["holdout"]
    holdout = builtin_images("holdout")
    assert [n for n, _ in holdout] == list(BUILTIN_SPLITS["holdout"])
    assert sum(min(img.shape[:2]) >= 512 for _, img in holdout) >= 4
    for _, img in holdout:
        assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] == 3 and img.max() <= 1
    photo = real_blur_photo()
    assert photo.shape == (300, 400, 3)
    with pytest.raises(ConfigError):
        builtin_images("test")


def test_synthetic_pairs_reproducible_and_shaped():
    images = [np.random.default_rng(i).random((100, 150, 3)).astype(np.float32) for i in range(2)]
    ds = SyntheticPairs(images, DEGRADATION, patch=64, length=10, seed=5)
    assert len(ds) == 10
    a, b = ds[3], SyntheticPairs(images, DEGRADATION, patch=64, length=10, seed=5)[3]
    assert a["lq"].shape == a["gt"].shape == (3, 64, 64)
    assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"])
    assert not torch.equal(a["lq"], a["gt"])
    other = SyntheticPairs(images, DEGRADATION, patch=64, length=10, seed=6)[3]
    assert not torch.equal(a["gt"], other["gt"])
    tiny = SyntheticPairs([np.zeros((20, 30))], DEGRADATION, patch=32, length=2, gray=True)[0]
    assert tiny["gt"].shape == (1, 32, 32)


def test_synthetic_pairs_super_resolution_and_folder(tmp_path):
    _write(tmp_path / "clean" / "x.png", np.random.default_rng(0).integers(0, 256, (90, 90, 3), dtype=np.uint8))
    cfg = {"blur": {"kinds": ["gaussian"], "sigma": [0.5, 1.5]}, "downscale": 4}
    ds = SyntheticPairs(tmp_path / "clean", cfg, patch=64, scale=4, length=3)
    item = ds[0]
    assert item["lq"].shape == (3, 16, 16) and item["gt"].shape == (3, 64, 64)
    assert item["name"].startswith("x_")
    with pytest.raises(ConfigError):
        SyntheticPairs(tmp_path / "clean", cfg, patch=64, scale=1, length=3)[0]
    with pytest.raises(ConfigError):
        SyntheticPairs(tmp_path / "clean", cfg, patch=62, scale=4)


def test_build_dataset_kinds(paired):
    ds = build_dataset({"type": "builtin", "split": "holdout", "degradation": DEGRADATION, "patch": 64, "length": 4})
    assert ds[0]["name"] == "astronaut_0" and ds[1]["gt"].shape == (3, 64, 64)
    assert len(build_dataset({"type": "paired", "root": str(paired), "patch": 32})) == 3
    with pytest.raises(ConfigError):
        build_dataset({"type": "imagenet"})
    with pytest.raises(ConfigError):
        build_dataset({"type": "paired", "root": str(paired), "crop": 32})


def test_works_with_a_dataloader():
    images = [np.random.default_rng(0).random((80, 80, 3)).astype(np.float32)]
    loader = torch.utils.data.DataLoader(SyntheticPairs(images, DEGRADATION, patch=32, length=6), batch_size=3)
    batch = next(iter(loader))
    assert batch["lq"].shape == (3, 3, 32, 32) and len(batch["name"]) == 3


def test_synthetic_pairs_carry_their_blur_kernel_on_request():
    images = [np.random.default_rng(0).random((80, 80, 3)).astype(np.float32)]
    blur = {"blur": {"kinds": ["motion"], "length": [5, 9]}}
    item = SyntheticPairs(images, blur, patch=32, length=2, kernel_size=31)[0]
    assert item["kernel"].shape == (31, 31) and abs(float(item["kernel"].sum()) - 1.0) < 1e-5
    assert "kernel" not in SyntheticPairs(images, blur, patch=32, length=2)[0]
    delta = SyntheticPairs(images, {"noise": 0.01}, patch=32, length=2, kernel_size=5)[0]["kernel"]
    assert delta[2, 2] == 1.0 and delta.sum() == 1.0  # no blur drawn: the identity kernel
    with pytest.raises(ConfigError, match="odd"):
        SyntheticPairs(images, blur, kernel_size=30)


def test_rescale_makes_the_target_the_resized_picture():
    """Upscaled by 3, a window of the picture is soft: the clean target has a third of the detail
    per pixel (its gradient energy drops), and the pair stays aligned."""
    images = [("noise", np.random.default_rng(0).random((200, 200, 3)).astype(np.float32))]
    plain = SyntheticPairs(images, {"noise": {"sigma": 0.0}}, patch=64, length=4, seed=1)
    soft = SyntheticPairs(images, {"noise": {"sigma": 0.0}}, patch=64, length=4, seed=1, rescale={"factor": [3, 3], "prob": 1})

    def energy(t):
        return float((t[:, :, 1:] - t[:, :, :-1]).pow(2).mean())

    for i in range(4):
        assert energy(soft[i]["gt"]) < 0.3 * energy(plain[i]["gt"])
        assert torch.equal(soft[i]["lq"], soft[i]["gt"])  # no degradation but noise 0: the same picture
    dense = SyntheticPairs(images, {"noise": {"sigma": 0.0}}, patch=64, length=2, seed=1, rescale={"factor": [0.5, 0.5]})
    assert dense[0]["gt"].shape == (3, 64, 64)
    with pytest.raises(ConfigError, match="rescale"):
        SyntheticPairs(images, {}, patch=64, rescale={"factor": [2, 1]})
