"""Shipping a run as the default model: exported, checked, and run by the runtime without torch's
backend; a run without final weights is refused and leaves the destination alone."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from restore.runtime import Restorer
from restore.runtime.errors import InputError
from restore.trainer.config import load_config
from restore.trainer.ship import FILES, ship
from restore.trainer.train import train

# the shipped model's last stage, its layout shrunk (the blur estimate's graph is shipped too)
CONFIG = Path(__file__).resolve().parents[2] / "trainer" / "configs" / "fourier-unet-deblur-field.yaml"


def test_ship_a_finished_run(tmp_path):
    cfg = load_config(CONFIG, ["model.widths=[8,16]", "model.blocks=1", "model.fourier=1", "model.level_grid=6",
                               "data.train.patch=64", "data.batch=2", "data.workers=0", "train.steps=2", "train.init=null",
                               "val.every=0"])
    train(cfg, tmp_path / "run", progress=False)
    dest = tmp_path / "default"
    metadata = ship(tmp_path / "run", dest, log=lambda _: None)
    assert sorted(p.name for p in dest.iterdir()) == sorted(FILES)  # no staging folder left
    weights = (dest / "model.safetensors").read_bytes()
    assert weights == (tmp_path / "run" / "checkpoints" / "final.safetensors").read_bytes()
    assert json.loads((dest / "metadata.json").read_text()) == metadata
    assert metadata["model"]["checkpoint_sha256"] == hashlib.sha256(weights).hexdigest()
    assert set(json.loads((dest / "sharpness.json").read_text())["clock_motion.png"]) == {"before", "after"}
    image = np.random.default_rng(0).random((40, 56, 3), dtype=np.float32)
    with Restorer(dest, backend="onnxruntime") as onnx, Restorer(dest / "model.safetensors", backend="torch") as ckpt:
        assert np.abs(onnx.restore(image) - ckpt.restore(image)).max() <= 1e-4


def test_ship_refuses_a_run_without_final_weights(tmp_path):
    dest = tmp_path / "default"
    with pytest.raises(InputError, match="no final weights"):
        ship(tmp_path / "nothing", dest)
    assert not dest.exists()
