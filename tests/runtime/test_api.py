"""Restorer (the Python API), model resolution, backend choice, and the no-torch import rule."""
import json
import subprocess
import sys

import numpy as np
import pytest

from restore.runtime import Restorer
from restore.runtime.artifact import resolve_model
from restore.runtime.backends import choose_backend
from restore.runtime.errors import BackendError, ConfigError, InputError, ModelError
from restore.runtime.testing import write_conv_artifact


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return write_conv_artifact(tmp_path_factory.mktemp("m") / "conv", layers=2, tile=32, overlap=8)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small fourier-unet checkpoint, as restore train would write it."""
    torch = pytest.importorskip("torch")
    from restore.trainer.checkpoint import save_checkpoint
    from restore.trainer.models import build_model

    torch.manual_seed(0)
    model = build_model({"type": "fourier-unet", "widths": [8, 16], "blocks": 1, "fourier": 1, "grid": 4})
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", model)


def test_restorer_runs_a_real_onnx_session_and_closes(artifact):
    image = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    with Restorer(artifact, backend="onnxruntime") as r:
        assert r.backend.tile == 32 and "CPUExecutionProvider" in r.description
        out = r.restore(image)
        frames = list(r.stream([image, image[:20, :30]]))
    assert not r.backend.is_active
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, image)  # the conv model changed something
    assert [f.shape for f in frames] == [(50, 70, 3), (20, 30, 3)]
    np.testing.assert_array_equal(frames[0], out)


def test_auto_says_what_it_picked(artifact):
    backend, why = choose_backend("auto", resolve_model(artifact))
    assert backend.name == "onnxruntime" and why.startswith("auto picked onnxruntime")


def test_torch_backend_runs_a_checkpoint_and_auto_falls_back_to_it(checkpoint):
    image = (np.random.default_rng(1).random((30, 45, 3)) * 65535).astype(np.uint16)
    with Restorer(checkpoint, backend="auto", tile=16, overlap=4) as r:
        assert r.backend.name == "torch" and r.backend.tile is None and r.tiler.tile == 16
        out = r.restore(image)
    assert out.shape == image.shape and out.dtype == np.uint16


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter is enough for one conv
def test_onnx_backend_matches_torch_on_the_same_conv_weights(tmp_path):
    """Two backends, one model: ONNX Runtime on an exported conv net vs torch running it."""
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1))
    x = torch.rand(2, 3, 32, 32)
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["output"], dynamo=False,
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    from restore.runtime.backends.onnxruntime import OnnxRuntimeBackend

    with OnnxRuntimeBackend(resolve_model(path)) as backend:
        assert backend.tile == 32 and backend.max_batch is None
        y = backend.infer(x.numpy())
    np.testing.assert_allclose(y, model(x).detach().numpy(), atol=1e-5)


def test_model_and_backend_errors_are_user_errors(artifact, tmp_path):
    with pytest.raises(ConfigError):
        Restorer(tmp_path / "missing.onnx")
    with pytest.raises(BackendError):
        Restorer(artifact, backend="torch")  # no checkpoint in this artifact
    with pytest.raises(ConfigError):
        Restorer(artifact, backend="nope")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelError):
        Restorer(bad, backend="onnxruntime")
    (bad / "metadata.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelError):
        Restorer(bad)
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match="empty.onnx: the file is empty"):
        Restorer(tmp_path / "empty.onnx")
    with pytest.raises(ConfigError, match="device='gpu': not a device"):
        Restorer(artifact, device="gpu")  # was taken for a GPU request and failed later, naming the backends


def test_what_numpy_reads_as_pixels_is_restored(artifact):
    """A PIL image, float lists and big-endian samples (a FITS file's) are pictures too; what is not
    one is an InputError naming it, never a NumPy or AttributeError."""
    from PIL import Image

    rng = np.random.default_rng(0)
    image = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
    deep = image.astype(np.uint16) * 257
    with Restorer(artifact) as r:
        expected, expected_deep = r.restore(image), r.restore(deep)
        assert np.array_equal(r.restore(Image.fromarray(image)), expected)
        assert np.array_equal(r.restore(deep.astype(">u2")), expected_deep)
        assert np.allclose(r.restore((image / 255.0).tolist()), expected / 255.0, atol=1 / 255)
        for bad, why in ((image.tolist(), "dtype int64"), ([[1, 2], [3]], "not an array of pixels"), (None, "expected an H x W"),
                         (Image.new("I", (5, 5)), "dtype int32")):
            with pytest.raises(InputError, match=why):
                r.restore(bad)


def test_runtime_imports_without_torch():
    code = (
        "import sys; import restore.runtime.api, restore.runtime.tiler, restore.runtime.streams, "
        "restore.runtime.run_cli, restore.runtime.backends.onnxruntime, restore.runtime.backends.torch; "
        "from restore.runtime import Restorer; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorrt')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.gpu
def test_torch_backend_on_cuda_fp16_with_a_cuda_graph_matches_cpu(checkpoint):
    image = np.random.default_rng(2).random((90, 120, 3)).astype(np.float32)
    with Restorer(checkpoint, backend="torch", device="cpu", tile=64, overlap=16) as cpu:
        reference = cpu.restore(image)
    with Restorer(checkpoint, backend="torch", device="cuda", tile=64, overlap=16) as gpu:
        assert gpu.backend.dtype == np.float16
        first = gpu.restore(image)
        again = gpu.restore(image)  # replays the captured graph
        assert gpu.backend.graph_fallback is None
    np.testing.assert_allclose(first, reference, atol=2e-2)
    np.testing.assert_array_equal(first, again)


@pytest.mark.gpu
def test_onnxruntime_cuda_with_io_binding_matches_cpu(artifact):
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu not installed")
    image = (np.random.default_rng(3).random((70, 90, 3)) * 255).astype(np.uint8)
    with Restorer(artifact, backend="onnxruntime", device="cpu") as cpu:
        reference = cpu.restore(image)
    with Restorer(artifact, backend="onnxruntime", device="cuda") as gpu:
        assert "CUDAExecutionProvider" in gpu.description
        out = gpu.restore(image)
    assert np.abs(out.astype(int) - reference).max() <= 1


def test_auto_falls_back_when_the_fastest_backend_fails_to_start(artifact, monkeypatch):
    """An installed backend that cannot start (a TensorRT engine built for another GPU, say) is
    skipped by auto with its reason; a backend asked for by name still fails with that error."""
    from restore.runtime import backends
    from restore.runtime.backends.onnxruntime import OnnxRuntimeBackend

    class EngineForAnotherGpu(OnnxRuntimeBackend):
        name = "tensorrt"

        @classmethod
        def unavailable_reason(cls, model, device):
            return None

        def activate(self):
            raise ModelError("model.engine", "engine was built for another GPU")

    real = backends.backend_class
    monkeypatch.setattr(backends, "backend_class", lambda n: EngineForAnotherGpu if n == "tensorrt" else real(n))
    image = (np.random.default_rng(2).random((40, 50, 3)) * 255).astype(np.uint8)
    with Restorer(artifact, backend="auto") as r:
        assert r.backend.name == "onnxruntime"
        assert "tensorrt: model.engine: engine was built for another GPU" in r.backend_choice
        assert r.restore(image).shape == image.shape
    with pytest.raises(ModelError, match="another GPU"):
        Restorer(artifact, backend="tensorrt")
