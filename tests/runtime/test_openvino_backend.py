"""The OpenVINO backend against ONNX Runtime on the shipped model, its streams, and how ``auto``
chooses between the CPU backends (measured once, cached)."""
import numpy as np
import pytest

pytest.importorskip("openvino")

from restore.runtime import Restorer  # noqa: E402
from restore.runtime.artifact import resolve_model  # noqa: E402
from restore.runtime.backends import backend_class, choose_backend  # noqa: E402
from restore.runtime.backends.openvino import cpu_capabilities  # noqa: E402
from restore.runtime.errors import BackendError, ModelError  # noqa: E402
from restore.runtime.testing import write_conv_artifact  # noqa: E402


def psnr(a, b):
    return 10 * np.log10(1.0 / max(float(np.mean((np.asarray(a, np.float64) - b) ** 2)), 1e-20))


def test_openvino_matches_onnxruntime_on_the_shipped_model():
    image = np.random.default_rng(0).random((200, 300, 3), dtype=np.float32)  # two tiles: both streams
    with Restorer("default", backend="openvino", precision="fp32") as ov, Restorer("default", backend="onnxruntime") as ort:
        assert ov.backend.tile == ort.backend.tile == 256 and ov.scale == 1
        assert "openvino (CPU" in ov.description and ", fp32," in ov.description
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


def test_openvino_refuses_a_gpu_and_fp16(tmp_path):
    source = resolve_model(write_conv_artifact(tmp_path / "conv", layers=1, tile=16, overlap=4))
    assert backend_class("openvino").unavailable_reason(source, "cuda") == "runs on the CPU only"
    with pytest.raises(BackendError, match="runs fp32, bf16, not fp16"):
        Restorer(str(source.onnx), backend="openvino", precision="fp16")


def test_a_corrupt_onnx_is_one_model_error_and_nothing_on_stderr(tmp_path, capfd):
    """Read with the ONNX frontend only: core.read_model also tried TensorFlow's, whose parser printed
    four lines of its own; the reason is the error's last line, not where in OpenVINO it was thrown."""
    (tmp_path / "model.onnx").write_text("garbage\n")
    capfd.readouterr()
    with pytest.raises(ModelError, match=r"OpenVINO cannot load this model \(Model can't be parsed\)"):
        Restorer(tmp_path, backend="openvino")
    assert capfd.readouterr().err == ""


def test_the_default_precision_is_bf16_where_the_cpu_has_it(tmp_path):
    source = resolve_model(write_conv_artifact(tmp_path / "conv", layers=1, tile=16, overlap=4))
    with backend_class("openvino")(source, device="cpu") as backend:
        assert backend.precision == ("bf16" if "BF16" in cpu_capabilities() else "fp32")
        assert f", {backend.precision}," in backend.description


def test_bf16_keeps_the_shipped_models_gain_or_is_refused():
    from restore.trainer.holdout import field_crops, uniform_pictures
    from restore.trainer.metrics import psnr as psnr_vs

    if not "BF16" in cpu_capabilities():  # e.g. AMD EPYC with AVX2 only
        with pytest.raises(BackendError, match="no native bf16"):
            Restorer("default", backend="openvino", precision="bf16")
        return
    crop = next(c for c in field_crops() if c.blur["kind"] == "defocus")
    with Restorer("default", backend="openvino", precision="bf16") as bf16, Restorer("default", backend="openvino", precision="fp32") as fp32:
        assert "bf16" in bf16.description
        ours, reference = bf16.restore(crop.lq), fp32.restore(crop.lq)
        name, flat = uniform_pictures()[2]
        assert np.abs(bf16.restore(flat) - flat).max() * 255 <= 1, name
    gain, reference_gain = psnr_vs(crop.gt, ours) - psnr_vs(crop.gt, crop.lq), psnr_vs(crop.gt, reference) - psnr_vs(crop.gt, crop.lq)
    assert reference_gain > 1.0 and abs(gain - reference_gain) <= 0.05
    assert psnr(ours, reference) >= 45.0


def test_a_precision_a_backend_cannot_run_is_refused_and_auto_skips_it():
    with pytest.raises(BackendError, match="runs fp32, fp16, not bf16"):
        Restorer("default", backend="onnxruntime", precision="bf16")
    if "BF16" in cpu_capabilities():
        with Restorer("default", backend="auto", precision="bf16") as r:
            assert r.backend.name == "openvino" and "onnxruntime: runs fp32, fp16, not bf16" in r.description


def test_auto_measures_the_cpu_backends_once_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source = resolve_model(write_conv_artifact(tmp_path / "conv", layers=2, tile=32, overlap=8))
    first, why = choose_backend("auto", source, device="cpu")
    assert first.name in ("onnxruntime", "openvino") and "measured now on" in why
    assert "onnxruntime" in why and "openvino" in why and " ms" in why
    assert (tmp_path / "cache" / "restore" / "cpu-backends.json").is_file()
    again, why_again = choose_backend("auto", source, device="cpu")
    assert again.name == first.name and "cached measurement" in why_again
