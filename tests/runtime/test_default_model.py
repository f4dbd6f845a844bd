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
    with Restorer("default") as r:  # auto: no TensorRT engine is shipped, so a CPU engine without torch
        # which of the two is timed on this machine (cpu_choice.py): on a loaded one OpenVINO can win
        assert r.backend.name in ("onnxruntime", "openvino")
        bf16 = ", bf16," in r.description  # OpenVINO's default on a CPU with AVX512-BF16 / AMX
        out = r.restore(image.astype(np.float32) / 255)
    assert out.shape == (256, 256, 3)
    pytest.importorskip("torch")
    with Restorer(DEFAULT_MODEL_DIR / "model.safetensors", backend="torch") as r:
        ref = r.restore(image.astype(np.float32) / 255)
    if bf16:  # the bar for equal output from a lower precision
        assert 10 * np.log10(1 / np.mean((out.astype(np.float64) - ref) ** 2)) >= 45
    else:
        assert np.abs(out - ref).max() <= 1e-4


def _flat_pictures():
    """Uniform pictures at every kind of extreme, and near-uniform ones with tiny noise."""
    rng = np.random.default_rng(0)
    for dtype, top in ((np.uint8, 255), (np.uint16, 65535)):
        for level in (0, 1, top // 2, top - 1, top):
            yield f"{dtype.__name__} {level}", np.full((96, 130, 3), level, dtype)
    for sigma in (1e-4, 1e-3, 1 / 255):
        noisy = np.clip(0.5 + sigma * rng.standard_normal((96, 130, 3)), 0, 1).astype(np.float32)
        yield f"0.5 + noise {sigma:.0e}", noisy


@pytest.mark.parametrize("graph", ["model.onnx", "model.fp16.onnx", "model.safetensors"])
def test_a_flat_picture_comes_back_unchanged(graph):
    """A blur keeps a flat region flat: a grey card, a clipped sky or a fade to black must round-trip
    (within one level) through the torch model and both exported graphs, never as NaN."""
    if graph.endswith(".safetensors"):
        pytest.importorskip("torch")
    with Restorer(DEFAULT_MODEL_DIR / graph) as r:
        for name, image in _flat_pictures():
            out = r.restore(image)
            assert out.dtype == image.dtype, name
            if image.dtype == np.float32:
                assert np.isfinite(out).all(), name
                level = 1 / 255
            else:
                level = 1
            assert np.abs(out.astype(np.float64) - image).max() <= level, name


def test_the_front_end_is_finite_on_a_constant_tile():
    torch = pytest.importorskip("torch")
    from restore.trainer.models.deconv import DeconvFrontEnd

    front = DeconvFrontEnd().eval()
    with torch.no_grad():
        for level in (0.0, 0.5, 1.0):
            out, _ = front(torch.full((1, 3, 128, 128), level))
            assert torch.isfinite(out).all()
            assert (out - level).abs().max() < 1e-4  # a constant's Wiener estimate is the constant


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_restorer_leaves_the_callers_floating_point_state_alone(backend):
    """An embedding app's NumPy must keep subnormal numbers: a backend must not switch the
    process to flush-to-zero (ONNX Runtime's set_denormal_as_zero does)."""
    if backend == "openvino":
        pytest.importorskip("openvino")
    with Restorer("default", backend=backend) as r:
        r.restore(read_image(SAMPLE)[:64, :64])
    assert np.array([1e-310])[0] * 1.0 > 0
