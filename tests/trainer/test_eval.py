"""restore eval: the fixed holdout protocol, the classical baselines, and the report of a tiny
checkpoint (JSON keys, grid PNG, user errors)."""
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from restore.trainer import holdout
from restore.trainer.baselines import richardson_lucy, run_baselines, unsharp_mask, wiener
from restore.trainer.checkpoint import save_checkpoint
from restore.trainer.cli import evaluate
from restore.trainer.datasets import BUILTIN_SPLITS, builtin_images
from restore.trainer.degradations import apply_kernel, gaussian_kernel
from restore.trainer.metrics import psnr
from restore.trainer.models import build_model


@pytest.fixture(scope="module")
def crops():
    return holdout.holdout_crops()


@pytest.fixture
def tiny_checkpoint(tmp_path):
    model = build_model({"type": "fourier-unet", "widths": [8, 16], "blocks": 1, "fourier": 1})
    return save_checkpoint(tmp_path / "tiny.safetensors", model, metrics={"note": "untrained"})


def test_holdout_protocol_is_fixed(crops):
    assert not set(BUILTIN_SPLITS["holdout"]) & set(BUILTIN_SPLITS["train"])
    assert len(crops) == holdout.CROPS_PER_IMAGE * len(BUILTIN_SPLITS["holdout"])
    kinds = [c.blur["kind"] for c in crops]
    assert kinds.count("motion") == kinds.count("gaussian") == len(crops) // 2
    for c in crops:
        assert c.gt.shape == c.lq.shape == (512, 512, 3)
        if c.blur["kind"] == "motion":
            assert 5 <= c.blur["length"] <= 25 and 0 <= c.blur["angle"] <= 180
        else:
            assert 1 <= c.blur["sigma"] <= 3
        # the residual after removing the blur is the noise of sigma 0.01 (less where clipped)
        residual = c.lq - np.clip(apply_kernel(c.gt, c.kernel), 0, 1)
        assert 0.006 < residual.std() < 0.0105
    again = holdout.holdout_crops()
    assert all(np.array_equal(a.lq, b.lq) and a.name == b.name for a, b in zip(crops, again))
    # crops are cut from the full-resolution holdout images
    images = dict(builtin_images("holdout"))
    name = crops[0].name.rsplit("_", 2)[0]
    assert any(np.array_equal(crops[0].gt, images[name][y:y + 512, x:x + 512])
               for y in range(images[name].shape[0] - 511) for x in range(images[name].shape[1] - 511))


@pytest.mark.parametrize("index", [0, 1], ids=["motion", "gaussian"])
def test_oracle_deconvolution_beats_the_blurred_input(crops, index):
    crop = crops[index]
    base = psnr(crop.gt, crop.lq)
    kernel = crop.kernel.astype(np.float64)
    assert psnr(crop.gt, wiener(crop.lq, kernel)) > base + 1.0
    assert psnr(crop.gt, richardson_lucy(crop.lq, kernel)) > base + 1.0
    sharpened = unsharp_mask(crop.lq)
    assert sharpened.shape == crop.lq.shape and abs(sharpened.mean() - crop.lq.mean()) < 0.01


def test_baselines_without_a_kernel_are_blind_only():
    img = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    assert set(run_baselines(img)) == {"unsharp_mask", "wiener_blind", "unsupervised_wiener_blind", "richardson_lucy_blind"}


def test_eval_of_a_tiny_checkpoint_on_a_folder_reports_json_and_grid(tiny_checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    for sub in ("blur", "sharp"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    for i, (name, image) in enumerate(builtin_images("holdout")[:2]):
        sharp = image[:64, :64]
        blurred = np.clip(apply_kernel(sharp, gaussian_kernel(1.5)) + rng.normal(0, 0.01, sharp.shape), 0, 1)
        for sub, img in (("sharp", sharp), ("blur", blurred)):
            cv2.imwrite(str(tmp_path / "data" / sub / f"{name}.png"), np.round(img[..., ::-1] * 255).astype(np.uint8))
    out = tmp_path / "report"
    result = CliRunner().invoke(evaluate, [str(tiny_checkpoint), "--data", str(tmp_path / "data"), "--json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {"input_psnr", "output_psnr", "gain_db", "input_ssim", "output_ssim", "mean", "images", "methods"} <= set(report)
    assert report["crops"] == 2 and report["arch"] == "fourier-unet"
    assert report["gain_db"] == pytest.approx(report["output_psnr"] - report["input_psnr"], abs=1e-3)
    assert "wiener_blind" in report["methods"] and "wiener_oracle" not in report["methods"]  # no kernel in a folder
    for row in report["images"]:
        assert set(row["psnr"]) == set(report["methods"])
    assert (out / "grid.png").is_file() and json.loads((out / "report.json").read_text())["crops"] == 2
    grid = cv2.imread(str(out / "grid.png"))
    assert grid.shape[0] == 2 * 64


def test_eval_on_the_builtin_holdout_without_baselines(tiny_checkpoint):
    result = CliRunner().invoke(evaluate, [str(tiny_checkpoint), "--data", "builtin-holdout", "--json", "--no-baselines"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["crops"] == 8 and report["protocol"]["crop"] == 512 and report["protocol"]["noise_sigma"] == 0.01
    assert report["methods"] == ["input", "model"]
    assert 15 < report["input_psnr"] < 35


def test_field_holdout_protocol_is_fixed():
    """builtin-field: 9 crops per holdout picture, the kinds of blur users bring, reproducible."""
    crops = holdout.field_crops()
    assert len(crops) == 36 and crops[0].name == "astronaut_0_shake"
    kinds = [c.blur["kind"] for c in crops]
    assert {k: kinds.count(k) for k in set(kinds)} == {"shake": 8, "defocus": 4, "gaussian": 4, "soft": 8, "jpeg": 8, "sharp": 4}
    again = holdout.field_crops()
    assert all(np.array_equal(a.lq, b.lq) and a.blur == b.blur for a, b in zip(crops, again))
    for c in crops:
        assert c.gt.shape == c.lq.shape == (512, 512, 3)
        blur = c.blur
        if blur["kind"] == "shake":
            assert c.kernel.shape == (39, 39) and 11 <= blur["extent"] <= 31
            assert not np.allclose(c.kernel, c.kernel[::-1, ::-1], atol=1e-3)  # curved: no point symmetry
        elif blur["kind"] == "defocus":
            assert 5 <= blur["radius"] <= 8
        elif blur["kind"] == "gaussian":
            assert 3 <= blur["sigma"] <= 5
        elif blur["kind"] == "soft":
            assert 2 <= blur["upscale"] <= 5 and 9 <= blur["length"] <= 25
        elif blur["kind"] == "jpeg":
            assert 30 <= blur["quality"] <= 70
        else:  # sharp: only the noise
            assert 44 < psnr(c.gt, c.lq) < 48
    uniform = holdout.uniform_pictures()
    assert [n for n, _ in uniform][:5] == ["constant_0", "constant_1", "constant_128", "constant_254", "constant_255"]


def test_eval_on_the_field_holdout_reports_categories_targets_and_uniform_pictures(tiny_checkpoint):
    result = CliRunner().invoke(evaluate, [str(tiny_checkpoint), "--data", "builtin-field", "--json", "--no-baselines"])
    assert result.exit_code == 0, result.output
    field = json.loads(result.output)["field"]
    assert set(field["categories"]) == {"shake", "defocus", "gaussian", "soft", "jpeg", "sharp"}
    assert field["categories"]["shake"] | {"mean_gain_db": 0, "worst_gain_db": 0, "met": False} == {
        "crops": 8, "mean_gain_db": 0, "worst_gain_db": 0, "target_db": 1.5, "met": False}
    assert field["worst"]["target_db"] == -0.1
    assert len(field["uniform"]["pictures"]) == 9 and all(u["finite"] for u in field["uniform"]["pictures"])
    text = CliRunner().invoke(evaluate, [str(tiny_checkpoint), "--data", "builtin-field", "--no-baselines"]).output
    assert "category" in text and "worst crop" in text and "uniform pictures" in text


def test_eval_user_errors(tmp_path, tiny_checkpoint):
    result = CliRunner().invoke(evaluate, [str(tmp_path / "missing.pt")])
    assert result.exit_code != 0 and "checkpoint not found" in str(result.exception)
    result = CliRunner().invoke(evaluate, [str(tiny_checkpoint), "--data", str(tmp_path / "nowhere")])
    assert result.exit_code != 0 and "builtin-field or a folder" in str(result.exception)


def test_laplacian_variance_ranks_sharp_above_blurred_and_before_after_writes_png(tmp_path, tiny_checkpoint):
    from restore.trainer.checkpoint import model_from_checkpoint
    from restore.trainer.datasets import real_blur_photo
    from restore.trainer.sharpness import before_after, laplacian_variance

    sharp = dict(builtin_images("holdout"))["camera"][:128, :128]
    assert laplacian_variance(sharp) > 3 * laplacian_variance(apply_kernel(sharp, gaussian_kernel(2.0)))
    photo = real_blur_photo()[:96, :96]
    restored, figure = before_after(model_from_checkpoint(tiny_checkpoint), photo, tmp_path / "pair.png")
    assert restored.shape == photo.shape
    assert figure["before"] == pytest.approx(laplacian_variance(photo))
    assert cv2.imread(str(tmp_path / "pair.png")).shape == (96, 2 * 96 + 8, 3)
