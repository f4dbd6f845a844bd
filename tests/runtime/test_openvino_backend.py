"""The OpenVINO backend against ONNX Runtime on the shipped model, its streams, and how ``auto``
chooses between the CPU backends (measured once, cached)."""
import numpy as np
import pytest

pytest.importorskip("openvino")

from restore.runtime import Restorer  # noqa: E402
from restore.runtime.artifact import resolve_model  # noqa: E402
from restore.runtime.backends import backend_class, choose_backend  # noqa: E402
from restore.runtime.errors import BackendError  # noqa: E402
from restore.runtime.testing import write_conv_artifact  # noqa: E402


def psnr(a, b):
    return 10 * np.log10(1.0 / max(float(np.mean((np.asarray(a, np.float64) - b) ** 2)), 1e-20))


def test_openvino_matches_onnxruntime_on_the_shipped_model():
    image = np.random.default_rng(0).random((200, 300, 3), dtype=np.float32)  # two tiles: both streams
    with Restorer("default", backend="openvino") as ov, Restorer("default", backend="onnxruntime") as ort:
        assert ov.backend.tile == ort.backend.tile == 256 and ov.scale == 1
        assert "openvino (CPU" in ov.description and "f32" in ov.description
        ours, reference = ov.restore(image), ort.restore(image)
    assert ours.shape == image.shape and ours.dtype == np.float32
    assert psnr(ours, reference) >= 60.0  # fp32 on both: equal up to summation order


def test_a_batch_split_over_streams_equals_tile_by_tile(tmp_path):
    source = resolve_model(write_conv_artifact(tmp_path / "conv", layers=2, tile=32, overlap=8))
    batch = np.random.default_rng(1).random((3, 3, 32, 32), dtype=np.float32)
    with backend_class("openvino")(source, device="cpu") as backend:
        together = backend.infer(batch)
        one_by_one = np.concatenate([backend.infer(batch[i : i + 1]) for i in range(3)])
    assert together.shape == (3, 3, 32, 32)
    np.testing.assert_allclose(together, one_by_one, atol=1e-6)


def test_openvino_refuses_a_gpu_and_an_unsupported_precision(tmp_path):
    import openvino

    source = resolve_model(write_conv_artifact(tmp_path / "conv", layers=1, tile=16, overlap=4))
    assert backend_class("openvino").unavailable_reason(source, "cuda") == "runs on the CPU only"
    if "FP16" not in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        with pytest.raises(BackendError, match="fp16"):
            backend_class("openvino")(source, device="cpu", precision="fp16").activate()


def test_auto_measures_the_cpu_backends_once_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source = resolve_model(write_conv_artifact(tmp_path / "conv", layers=2, tile=32, overlap=8))
    first, why = choose_backend("auto", source, device="cpu")
    assert first.name in ("onnxruntime", "openvino") and "measured now on" in why
    assert "onnxruntime" in why and "openvino" in why and " ms" in why
    assert (tmp_path / "cache" / "restore" / "cpu-backends.json").is_file()
    again, why_again = choose_backend("auto", source, device="cpu")
    assert again.name == first.name and "cached measurement" in why_again
