"""Bad input through the C API: the sample C extension (runtime/capi_sample/, compiled here the way
tests/runtime/test_capi.py does) gets a status code and a one-line message, never a crash."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from restore.runtime import capi

SAMPLE = Path(capi.__file__).resolve().parent / "capi_sample" / "restore_sample.c"
_spec = importlib.util.spec_from_file_location("runtime_test_capi", Path(__file__).parents[1] / "runtime" / "test_capi.py")
_test_capi = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_test_capi)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return _test_capi.compile_extension(SAMPLE, tmp_path_factory.mktemp("capi_build"))


def c_error(call):
    with pytest.raises(RuntimeError) as info:
        call()
    status, message = info.value.args
    assert "\n" not in message and "Traceback" not in message
    return status, message


def test_corrupt_onnx_is_status_4_naming_the_file(sample, tmp_path, tiny_model, kit):
    broken = tmp_path / "broken ü"
    broken.mkdir()
    (broken / "metadata.json").write_text((tiny_model / "metadata.json").read_text())
    (broken / "model.onnx").write_bytes(b"\x08\x07" + bytes(300))
    status, message = c_error(lambda: sample.restore(str(broken), "onnxruntime", kit.noise((8, 8, 3))))
    assert status == 4 and str(broken / "model.onnx") in message and "re-export" in message


def test_empty_artifact_directory_is_status_4(sample, tmp_path, kit):
    empty = tmp_path / "empty"
    empty.mkdir()
    status, message = c_error(lambda: sample.restore(str(empty), "onnxruntime", kit.noise((8, 8, 3))))
    assert status == 4 and "no model.onnx" in message


@pytest.mark.parametrize("shape", [(0, 8, 3), (8, 0, 3), (8, 8, 5), (8, 8, 0)])
def test_impossible_frames_are_status_3(sample, tiny_model, shape):
    frame = np.zeros(shape, np.uint8)
    status, message = c_error(lambda: sample.restore(str(tiny_model), "onnxruntime", frame))
    assert status == 3 and "expected H, W >= 1 and 1 to 4 channels" in message


@pytest.mark.parametrize("shape, dtype", [((1, 1, 3), np.uint8), ((1, 200, 1), np.uint16), ((3, 2, 4), np.float32)])
def test_tiny_frames_restore(sample, tiny_model, kit, shape, dtype):
    frame = kit.noise(shape, dtype)
    data, height, width, channels = sample.restore(str(tiny_model), "onnxruntime", frame)
    out = np.frombuffer(data, dtype).reshape(height, width, channels)
    assert out.shape == shape
    if shape[2] == 4:
        np.testing.assert_array_equal(out[..., 3], frame[..., 3])


def test_unsupported_pixel_type_is_refused_by_the_extension(sample, tiny_model):
    with pytest.raises(ValueError, match="uint8/uint16/float32"):
        sample.restore(str(tiny_model), "onnxruntime", np.zeros((8, 8, 3), np.int32))
