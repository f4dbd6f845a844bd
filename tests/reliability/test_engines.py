"""TensorRT engine files that cannot be used: corrupt, built by another TensorRT version, built for
another GPU. A real engine is built here with TensorRT-RTX (it builds without a GPU); loading one
needs a GPU, so the cases that reach the GPU are marked and run only where there is one."""
import json
import shutil

import cv2
import pytest

from restore.runtime.errors import BackendError, ModelError

pytest.importorskip("tensorrt_rtx_bindings")


@pytest.fixture(scope="module")
def engine_artifact(tiny_model, tmp_path_factory):
    """tiny_model plus a real model.engine built from its model.onnx (tile 32, batch 1..4)."""
    from restore.export.trt_build import build_engine

    directory = tmp_path_factory.mktemp("engine") / "with engine"
    shutil.copytree(tiny_model, directory)
    build_engine(directory / "model.onnx", directory / "model.engine", batch=(1, 2, 4), tile=(32, 32, 32), progress=False)
    metadata = json.loads((directory / "metadata.json").read_text())
    metadata["files"]["engine"] = "model.engine"
    (directory / "metadata.json").write_text(json.dumps(metadata))
    return directory


def variant(engine_artifact, tmp_path, change):
    directory = tmp_path / "variant"
    shutil.copytree(engine_artifact, directory)
    engine = directory / "model.engine"
    engine.write_bytes(change(bytearray(engine.read_bytes())))
    return directory, engine


def load(directory):
    from restore.runtime.backends.tensorrt import TensorRTEngine

    return TensorRTEngine(directory / "model.engine", metadata=json.loads((directory / "metadata.json").read_text()))


@pytest.mark.parametrize("change", [lambda d: bytes(d[: len(d) // 3]), lambda d: bytes(d[:16] + bytes(len(d) - 16))],
                         ids=["truncated", "zeroed after the header"])
def test_corrupt_engine_is_a_model_error_even_without_a_gpu(engine_artifact, tmp_path, change):
    directory, engine = variant(engine_artifact, tmp_path, change)
    with pytest.raises(ModelError) as info:
        load(directory)
    assert str(engine) in str(info.value) and "rebuild the engine" in str(info.value)


def test_empty_engine_is_a_model_error(engine_artifact, tmp_path):
    directory, engine = variant(engine_artifact, tmp_path, lambda d: b"")
    with pytest.raises(ModelError, match="engine file is empty"):
        load(directory)


def test_cli_names_the_missing_gpu_and_auto_falls_back(engine_artifact, tmp_path, kit):
    from restore.runtime.backends.base import gpu_present

    if gpu_present():
        pytest.skip("checks the no-GPU path")
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), kit.noise((40, 40, 3)))
    forced = kit.run_cli("restore", "run", image, "-o", tmp_path / "a.png", "--model", engine_artifact, "--backend", "tensorrt")
    kit.assert_user_error(forced, "restore", BackendError.exit_code, "tensorrt")
    assert not (tmp_path / "a.png").exists()
    auto = kit.run_cli("restore", "run", image, "-o", tmp_path / "b.png", "--model", engine_artifact)  # not -q: it hides the header
    assert auto.code == 0 and "auto picked onnxruntime" in auto.stderr
    assert cv2.imread(str(tmp_path / "b.png")).shape == (40, 40, 3)


# --- on a GPU -----------------------------------------------------------------------------------
@pytest.mark.gpu
def test_engine_of_another_tensorrt_version_is_a_model_error(engine_artifact, tmp_path):
    def older_version(data):
        at = data.find(b"\x01\x07\x01", 16, 64)  # the builder's version (TensorRT-RTX 1.7.1) in the plan header
        assert at > 0, "version not found in the plan header"
        data[at + 1] = 0x05
        return bytes(data)

    directory, engine = variant(engine_artifact, tmp_path, older_version)
    with pytest.raises(ModelError, match="another TensorRT|cannot deserialize"):
        load(directory)


@pytest.mark.gpu
def test_engine_for_another_gpu_is_a_model_error(engine_artifact):
    """TensorRT-RTX builds for compute capabilities 8.0/8.6/8.9/12.0 by default; elsewhere (e.g.
    Hopper, 9.0) the engine is one built for another GPU."""
    from cuda.bindings import runtime

    err, props = runtime.cudaGetDeviceProperties(0)
    if (props.major, props.minor) in {(8, 0), (8, 6), (8, 9), (12, 0)}:
        pytest.skip("this GPU is one the engine was built for")
    with pytest.raises(ModelError, match="another GPU|cannot deserialize"):
        load(engine_artifact)
