"""Blur analysis on a seeded set of synthetic blurs of scikit-image's photos and textures."""
import json
import time

import numpy as np
import pytest
from click.testing import CliRunner

from restore.runtime.blur import blur_map, classify_blur, estimate_noise, sharp_tile_mask
from restore.runtime.detect_cli import detect
from restore.trainer import degradations as D
from restore.trainer.datasets import builtin_images, real_blur_photo, real_blur_photo_path

# Natural photos and textures. The smooth scientific pictures (cell, retina, moon) and the
# document scans are left out: whole crops of them have almost no detail to judge.
PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "motorcycle_left", "rocket", "hubble_deep_field",
          "brick", "grass", "gravel", "coins", "immunohistochemistry")
CROP = 256


@pytest.fixture(scope="module")
def photos():
    return [(n, img) for n, img in builtin_images("all") if n in PHOTOS]


def _seeded_cases(photos, per_class, seed, noise=0.0):
    """(truth, uint8 image, true angle) triples: motion L 9-25 at any angle, Gaussian sigma
    1.5-3, and sharp; crops that are mostly flat even before blurring are skipped."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < 3 * per_class:
        name, image = photos[rng.integers(len(photos))]
        y, x = rng.integers(0, image.shape[0] - CROP + 1), rng.integers(0, image.shape[1] - CROP + 1)
        crop = image[y:y + CROP, x:x + CROP]
        if blur_map(crop).flat.mean() > 0.5:
            continue
        kind, angle = ("motion", "defocus", "sharp")[len(cases) % 3], None
        if kind == "motion":
            angle = rng.uniform(0, 180)
            crop, _ = D.motion_blur(crop, rng.uniform(9, 25), angle)
        elif kind == "defocus":
            crop, _ = D.gaussian_blur(crop, rng.uniform(1.5, 3.0))
        crop = crop + rng.normal(0, noise, crop.shape) if noise else crop
        cases.append((kind, np.clip(np.rint(crop * 255), 0, 255).astype(np.uint8), angle))
    return cases


def _angle_error(a, b):
    return abs((a - b + 90) % 180 - 90)


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_motion_vs_gaussian_accuracy(photos, noise):
    cases = _seeded_cases(photos, per_class=20, seed=2024, noise=noise)
    start = time.perf_counter()
    results = [(kind, classify_blur(img), angle) for kind, img, angle in cases]
    blurred = [(kind, r) for kind, r, _ in results if kind != "sharp"]
    binary = np.mean([(kind == "motion") == (r.kind == "motion") for kind, r in blurred])
    three_way = np.mean([kind == r.kind for kind, r, _ in results])
    errors = [_angle_error(r.angle_deg, angle) for kind, r, angle in results if kind == r.kind == "motion"]
    print(f"\nnoise {noise}: motion vs Gaussian {100 * binary:.1f}% ({len(blurred)} blurred crops), "
          f"sharp/motion/defocus {100 * three_way:.1f}% ({len(results)} crops), motion angle error "
          f"median {np.median(errors):.2f} max {np.max(errors):.2f} deg, "
          f"{1000 * (time.perf_counter() - start) / len(results):.0f} ms per {CROP}px crop")
    assert binary >= 0.90
    assert three_way >= 0.85
    assert np.median(errors) < 3.0


def test_motion_length_estimate(photos):
    image = dict(photos)["camera"][100:356, 100:356]
    blurred, _ = D.motion_blur(image, 17, 60)
    report = classify_blur(blurred)
    assert report.kind == "motion"
    assert abs(report.length_px - 17) <= 2
    assert _angle_error(report.angle_deg, 60) < 3


def test_real_motion_blurred_photo_is_motion():
    report = classify_blur(real_blur_photo())
    print(f"\nclock_motion.png: {report.kind} angle {report.angle_deg} length {report.length_px} "
          f"confidence {report.confidence:.2f}")
    assert report.kind == "motion"
    # The clock was smeared sideways.
    assert _angle_error(report.angle_deg, 0) < 10


def test_flat_regions_are_not_called_blurred(photos):
    image = dict(photos)["gravel"][:256, :256].copy()
    image[64:192, 64:192] = 0.5  # a constant patch in a sharp texture
    bmap = blur_map(image, tile=64)
    assert bmap.flat[1:3, 1:3].all()
    assert not bmap.blurred[1:3, 1:3].any()
    blurred, _ = D.gaussian_blur(image, 2.5)
    bmap = blur_map(blurred, tile=64)
    assert bmap.flat[1:3, 1:3].all() and not bmap.blurred[1:3, 1:3].any()
    assert bmap.blurred[~bmap.flat].all()  # the textured rest is blurred
    constant = np.full((128, 128, 3), 0.3, np.float32)
    assert bmap.flat.shape == (4, 4)
    assert blur_map(constant).flat.all()
    assert classify_blur(constant).kind == "sharp"


def test_blur_map_finds_a_blurred_region(photos):
    image = dict(photos)["grass"][:256, :256].copy()
    left, _ = D.gaussian_blur(image, 2.0)
    image[:, :128] = left[:, :128]
    bmap = blur_map(image, tile=64)
    assert bmap.blurred[:, :2].all()
    assert not bmap.blurred[:, 2:].any()
    mask = sharp_tile_mask(image, tile=128)
    assert mask.tolist() == [[False, True], [False, True]]
    boxes = sharp_tile_mask(image, tile=128, boxes=[(0, 0, 128, 128), (0, 160, 96, 96), (100, 100, 64, 64)])
    assert boxes.tolist() == [False, True, False]


def test_noise_is_not_detail(photos):
    rng = np.random.default_rng(0)
    sharp = dict(photos)["coffee"][:256, :256]
    blurred, _ = D.gaussian_blur(sharp, 2.0)
    noisy = np.clip(blurred + rng.normal(0, 0.01, blurred.shape), 0, 1)
    assert abs(estimate_noise(np.full((200, 200), 0.5) + rng.normal(0, 0.01, (200, 200))) - 0.01) < 0.001
    assert classify_blur(noisy).kind == "defocus"
    assert blur_map(noisy).blurred_fraction > 0.8


def test_detect_cli_writes_overlay_and_report(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(detect, [str(real_blur_photo_path()), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "motion" in result.output
    report = json.loads((out / "clock_motion.json").read_text())
    assert report["blur"]["kind"] == "motion"
    assert np.array(report["map"]["flat"]).shape == (5, 7)
    import cv2
    overlay = cv2.imread(str(out / "clock_motion.blurmap.png"))
    assert overlay.shape == (300, 400, 3)
    assert not list(out.glob("*.partial*"))


def test_detect_cli_rejects_unreadable_images(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    result = CliRunner().invoke(detect, [str(bad), "-o", str(tmp_path / "out")])
    assert result.exit_code != 0
    from restore.runtime.errors import InputError
    assert isinstance(result.exception, InputError)
    assert "broken.png" in str(result.exception)
    assert not (tmp_path / "out" / "broken.json").exists()


def test_blur_analysis_imports_without_torch():
    import subprocess
    import sys
    code = ("import sys, restore.runtime.blur, restore.runtime.detect_cli; "
            "assert not {'torch', 'skimage'} & set(sys.modules), 'runtime pulled in a training dependency'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_restore_detect_exit_code_for_a_bad_image(tmp_path):
    import subprocess
    import sys
    bad = tmp_path / "empty.jpg"
    bad.write_bytes(b"")
    run = subprocess.run([sys.executable, "-m", "restore.runtime.cli", "detect", str(bad), "-o", str(tmp_path)],
                         capture_output=True, text=True)
    assert run.returncode == 3
    assert run.stderr.startswith("restore: error:") and "empty.jpg" in run.stderr and "Traceback" not in run.stderr
