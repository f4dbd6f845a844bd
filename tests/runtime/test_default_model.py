"""The shipped default model: its exported ONNX matches its checkpoint, and the runtime runs it
without torch."""
import hashlib
import json

import numpy as np
import pytest

from restore.runtime import Restorer
from restore.runtime.artifact import DEFAULT_MODEL_DIR
from restore.runtime.streams import read_image

SAMPLE = DEFAULT_MODEL_DIR.parents[1] / "samples" / "astronaut_motion.png"


def test_shipped_files_belong_together():
    metadata = json.loads((DEFAULT_MODEL_DIR / "metadata.json").read_text())
    weights = (DEFAULT_MODEL_DIR / metadata["model"]["checkpoint"]).read_bytes()
    assert hashlib.sha256(weights).hexdigest() == metadata["model"]["checkpoint_sha256"]
    assert (DEFAULT_MODEL_DIR / "model.onnx").is_file() and (DEFAULT_MODEL_DIR / "model.fp16.onnx").is_file()
    assert max(metadata["validation"]["max_abs_error"]["onnx"].values()) <= 1e-4
    assert metadata["model"]["arch"] == "fourier-unet"


def test_default_runs_on_onnxruntime_and_matches_the_checkpoint():
    image = read_image(SAMPLE)[:256, :256]
    with Restorer("default") as r:  # auto: no TensorRT engine is shipped, so ONNX Runtime
        assert r.backend.name == "onnxruntime"
        out = r.restore(image.astype(np.float32) / 255)
    assert out.shape == (256, 256, 3)
    pytest.importorskip("torch")
    with Restorer(DEFAULT_MODEL_DIR / "model.safetensors", backend="torch") as r:
        ref = r.restore(image.astype(np.float32) / 255)
    assert np.abs(out - ref).max() <= 1e-4
