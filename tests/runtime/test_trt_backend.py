"""TensorRT backend: the error paths on this GPU-less machine with real engine files (a TensorRT-RTX
engine built here, a corrupt one), the auto choice, and (marked gpu) a run against ONNX Runtime."""
import json
import shutil

import numpy as np
import pytest

from restore.runtime.artifact import resolve_model
from restore.runtime.backends import choose_backend
from restore.runtime.backends.base import gpu_present
from restore.runtime.backends.tensorrt import (TensorRTBackend, TensorRTEngine, classify_load_failure,
                                               import_tensorrt, modules_for, register_plugins)
from restore.runtime.errors import BackendError, ModelError
from restore.runtime.testing import conv_model, write_conv_artifact

no_gpu_only = pytest.mark.skipif(gpu_present(), reason="checks the no-GPU errors; this machine has a GPU")


def build_engine(trt, model, path, tile, max_batch=4):
    """Build a real dynamic-batch engine from an ONNX ModelProto (TensorRT-RTX needs no GPU)."""
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(model.SerializeToString()), [parser.get_error(i).desc() for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    c = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    profile.set_shape("input", (1, c, tile, tile), (2, c, tile, tile), (max_batch, c, tile, tile))
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    assert engine is not None
    path.write_bytes(bytes(engine))
    return path


@pytest.fixture(scope="module")
def rtx_artifact(tmp_path_factory):
    trt = pytest.importorskip("tensorrt_rtx_bindings")
    directory = write_conv_artifact(tmp_path_factory.mktemp("rtx") / "artifact", tile=32, batch=2)
    build_engine(trt, conv_model(tile=32), directory / "model.fp16.engine", tile=32)
    metadata = json.loads((directory / "metadata.json").read_text())
    metadata["files"]["fp16_engine"] = "model.fp16.engine"
    (directory / "metadata.json").write_text(json.dumps(metadata))
    return directory


def test_not_installed_is_one_line():
    with pytest.raises(BackendError) as info:
        import_tensorrt(("no_such_tensorrt",))
    assert str(info.value).startswith("tensorrt: not installed (tried no_such_tensorrt)")
    assert info.value.exit_code == 6


def test_rtx_engines_are_loaded_with_tensorrt_rtx_first(rtx_artifact, tmp_path):
    assert modules_for(rtx_artifact / "model.fp16.engine")[0] == "tensorrt_rtx_bindings"
    other = tmp_path / "x.engine"
    other.write_bytes(b"ftrt....")
    assert modules_for(other)[0] == "tensorrt"


def test_corrupt_engine_is_a_model_error(tmp_path):
    trt = pytest.importorskip("tensorrt_rtx_bindings")
    bad = tmp_path / "model.engine"
    bad.write_bytes(b"this is not an engine" * 50)
    with pytest.raises(ModelError) as info:
        TensorRTEngine(bad, trt=trt)
    message = str(info.value)
    assert message.startswith(f"{bad}: not an engine of this TensorRT version")
    assert "rebuild the engine" in message and "\n" not in message
    empty = tmp_path / "empty.engine"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        TensorRTEngine(empty, trt=trt)


def test_truncated_rtx_engine_is_a_model_error(rtx_artifact, tmp_path):
    trt = pytest.importorskip("tensorrt_rtx_bindings")
    cut = tmp_path / "cut.engine"
    cut.write_bytes((rtx_artifact / "model.fp16.engine").read_bytes()[:1000])
    with pytest.raises((ModelError, BackendError)) as info:  # which check TensorRT trips first is its business
        TensorRTEngine(cut, trt=trt)
    assert "\n" not in str(info.value)


@no_gpu_only
def test_valid_engine_without_a_gpu_is_a_backend_error(rtx_artifact):
    trt = pytest.importorskip("tensorrt_rtx_bindings")
    with pytest.raises(BackendError) as info:
        TensorRTEngine(rtx_artifact / "model.fp16.engine", trt=trt)
    assert str(info.value) == ("tensorrt: no usable CUDA GPU or driver to load the engine on "
                               "(TensorRT runs only on an NVIDIA GPU; use --backend onnxruntime on this machine)")


def test_fourier_plugin_is_registered_before_loading():
    trt = pytest.importorskip("tensorrt_rtx_bindings")
    pytest.importorskip("restore.kernels.fourier_bottleneck.trt_plugin")
    assert register_plugins(trt, {"plugin": {"name": "FourierBottleneck", "version": "1", "namespace": "restore", "count": 2}})
    creator = trt.get_plugin_registry().get_creator("FourierBottleneck", "1", "restore")
    assert creator is not None


def test_failure_classification_of_logged_messages():
    assert isinstance(classify_load_failure("m.engine", ["The engine plan file is generated on an incompatible device, expecting compute 8.6 got compute 9.0"]), ModelError)
    assert "another GPU" in str(classify_load_failure("m.engine", ["... expecting compute 8.6 got compute 9.0"]))
    assert "no message" in str(classify_load_failure("m.engine", []))


@no_gpu_only
def test_auto_skips_tensorrt_without_a_gpu_and_says_why(rtx_artifact):
    source = resolve_model(rtx_artifact)
    assert TensorRTBackend.unavailable_reason(source) == "no CUDA GPU"
    backend, why = choose_backend("auto", source)
    assert backend.name == "onnxruntime"
    assert "tensorrt: no CUDA GPU" in why
    with pytest.raises(BackendError, match="tensorrt: cannot run .*no CUDA GPU"):
        choose_backend("tensorrt", source)


@no_gpu_only
def test_activating_without_a_gpu_fails_before_touching_the_engine(rtx_artifact):
    backend = TensorRTBackend(resolve_model(rtx_artifact))
    with pytest.raises(BackendError, match="cudaSetDevice: .*use --backend onnxruntime"):
        backend.activate()
    assert not backend.is_active


def test_artifact_without_engine_names_the_reason(tmp_path):
    source = resolve_model(write_conv_artifact(tmp_path / "a", tile=32))
    assert "no TensorRT engine" in TensorRTBackend.unavailable_reason(source)
    assert TensorRTBackend.unavailable_reason(source, device="cpu") is not None


@pytest.mark.gpu
def test_tensorrt_backend_matches_onnxruntime_on_gpu(tmp_path):
    from restore.runtime.api import Restorer

    try:
        trt = import_tensorrt()
    except BackendError:
        pytest.skip("no TensorRT module")
    directory = write_conv_artifact(tmp_path / "a", tile=32, batch=2)
    build_engine(trt, conv_model(tile=32), directory / "model.engine", tile=32)
    metadata = json.loads((directory / "metadata.json").read_text())
    metadata["files"]["engine"] = "model.engine"
    (directory / "metadata.json").write_text(json.dumps(metadata))
    image = (np.random.default_rng(0).random((100, 70, 3)) * 255).astype(np.uint8)
    try:
        gpu = Restorer(directory, backend="tensorrt", precision="fp32")
    except ModelError as e:  # e.g. only TensorRT-RTX installed on a Hopper GPU it does not support
        pytest.skip(str(e))
    with Restorer(directory, backend="onnxruntime") as cpu, gpu:
        assert gpu.backend.name == "tensorrt"
        expected, got = cpu.restore(image), gpu.restore(image)
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    shutil.rmtree(directory)
