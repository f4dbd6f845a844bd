"""trainer/calibrate.py: the backoff mapping of a trained model, chosen on training pictures,
written as a run folder ``ship`` takes; the correction at full strength it scores mappings with."""
import json

import numpy as np
import torch

from restore.trainer.calibrate import calibrate, full_strength
from restore.trainer.checkpoint import load_checkpoint, save_checkpoint
from restore.trainer.inference import restore_array
from restore.trainer.models import build_model

SPEC = {"type": "fourier-unet", "widths": [8, 16], "blocks": 1, "fourier": 1, "norm": "none", "level_grid": 4,
        "deconv": True, "bank": 2, "backoff": [0.95, 1.0]}


def _model():
    torch.manual_seed(0)
    model = build_model(SPEC).eval()
    with torch.no_grad():
        model.deconv_gate.fill_(0.5)  # the front end's estimates reach the output
    return model


def test_full_strength_leaves_the_backoff_out_and_puts_it_back():
    model = _model()
    image = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    with torch.no_grad():
        sharp = torch.zeros(1, model.deconv.estimator.classify[-1].out_features)
        sharp[0, -1] = 0.97  # confidence 0.03: the shipped mapping scales the correction to 0
        model.estimate = lambda tiles: sharp
        model.deconv.estimator.forward = lambda y: sharp
    assert np.array_equal(restore_array(model, image), image.clip(0, 1))  # backed off entirely
    full = full_strength(model, image)
    assert np.abs(full - image).mean() > 1e-3 and model.backoff == (0.95, 1.0)
    model.backoff = None
    assert np.array_equal(full, restore_array(model, image))


def test_calibrate_writes_the_chosen_mapping_as_a_run_ship_takes(tmp_path):
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints" / "final.safetensors", _model())
    (run / "config.yaml").write_text("name: tiny\n")
    report = calibrate(run, log=lambda message: None)
    out = tmp_path / "run-calibrated"
    chosen = report["chosen"]["backoff"]
    assert chosen in [c["backoff"] for c in report["candidates"]] and report["crops"] == 108
    safe = [c for c in report["candidates"] if c["worst_gain_db"] >= -0.1]
    best = max(safe, key=lambda c: c["mean_gain_db"]) if safe else max(report["candidates"], key=lambda c: c["worst_gain_db"])
    assert report["chosen"] == best
    ckpt = load_checkpoint(out / "checkpoints" / "final.safetensors")
    assert ckpt["config"]["backoff"] == chosen and (out / "config.yaml").is_file()
    assert json.loads((out / "calibration.json").read_text())["chosen"] == report["chosen"]
    weights = load_checkpoint(run / "checkpoints" / "final.safetensors")["state_dict"]
    assert all(torch.equal(weights[k], v) for k, v in ckpt["state_dict"].items())  # the same weights
