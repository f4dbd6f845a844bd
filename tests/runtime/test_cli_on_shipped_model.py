"""Every command on the shipped model (runtime/models/default), on small inputs: the other CLI
tests use tiny artifacts, so these catch what only the real model breaks. `restore bench`'s
defaults are in tests/benchmarks/test_bench.py, `restore detect` on the bundled motion-blurred
photo in tests/runtime/test_blur.py (it takes no model)."""
import json
import sys

import cv2
import numpy as np
import onnx
import pytest

from restore.runtime.artifact import DEFAULT_MODEL_DIR
from restore.runtime.cli import main

CHECKPOINT = DEFAULT_MODEL_DIR / "model.safetensors"
RNG = np.random.default_rng(0)


def command(monkeypatch, entry, *args):
    """Run a console script's ``main`` in-process with ARGS; return its exit code."""
    monkeypatch.setattr(sys, "argv", ["restore", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        entry()
    return e.value.code


def blurred_photo(height=72, width=96):
    """A crop of the bundled blurry sample (RGB uint8), small enough for one tile, blurred further by
    a 15 px horizontal motion: a blur the model is sure of (on the crop alone it mostly backs off)."""
    image = cv2.imread(str(DEFAULT_MODEL_DIR / "clock_motion.png"))[..., ::-1]
    crop = np.ascontiguousarray(image[100 : 100 + height, 150 : 150 + width])
    line = np.zeros((15, 15), np.float32)
    line[7] = 1 / 15
    return cv2.filter2D(crop, -1, line, borderType=cv2.BORDER_REFLECT)


def test_run_restores_an_image_with_the_default_model(tmp_path, monkeypatch):
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    cv2.imwrite(str(src), blurred_photo()[..., ::-1])
    assert command(monkeypatch, main, "run", src, "-o", out, "-q") == 0
    restored = cv2.imread(str(out))
    assert restored.shape == (72, 96, 3)
    assert 1.0 < np.abs(restored.astype(np.float32) - cv2.imread(str(src))).mean() < 40.0  # changed, not garbage


def test_demo_with_the_default_model(tmp_path, monkeypatch):
    samples = tmp_path / "samples"
    samples.mkdir()
    cv2.imwrite(str(samples / "clock.png"), blurred_photo()[..., ::-1])
    out = tmp_path / "demo"
    assert command(monkeypatch, main, "demo", "-o", out, "--samples", samples) == 0
    assert cv2.imread(str(out / "clock.before_after.png")).shape[0] == 72
    assert "| clock.png |" in (out / "report.md").read_text()


def test_eval_of_the_shipped_checkpoint_on_a_folder(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    for sub in ("blur", "sharp"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    sharp = (RNG.random((64, 64, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "data" / "sharp" / "a.png"), sharp)
    cv2.imwrite(str(tmp_path / "data" / "blur" / "a.png"), cv2.GaussianBlur(sharp, (7, 7), 1.5))
    assert command(monkeypatch, main, "eval", CHECKPOINT, "--data", tmp_path / "data", "--json", "--no-baselines") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["arch"] == "fourier-unet" and report["crops"] == 1 and np.isfinite(report["output_psnr"])


def test_export_of_the_shipped_checkpoint(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from restore.export.cli import main as export_main

    out = tmp_path / "artifact"
    code = command(monkeypatch, export_main, CHECKPOINT, "-o", out, "--target", "onnx", "--tile", "64", "--batch", "1..1", "--no-validate")
    assert code == 0
    graph = onnx.load(str(out / "model.onnx"))
    assert [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim][1:] == [3, 64, 64]
    assert json.loads((out / "metadata.json").read_text())["model"]["arch"] == "fourier-unet"
