"""The C API: a sample C extension (runtime/capi_sample/restore_sample.c) is compiled here with the
system compiler against Python's headers and restore.h, then drives the ONNX Runtime CPU backend
from C; its output must equal the Python Restorer's."""
import ctypes
import importlib.util
import shlex
import shutil
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from restore.runtime import capi
from restore.runtime.api import Restorer
from restore.runtime.backends.base import gpu_present
from restore.runtime.testing import write_conv_artifact

SAMPLE = Path(capi.__file__).resolve().parent / "capi_sample" / "restore_sample.c"


def compile_extension(source, build_dir):
    """Build ``source`` as a CPython extension module with the compiler Python was built with."""
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").is_file():
        pytest.skip("Python headers are not installed")
    compiler = shlex.split(sysconfig.get_config_var("CC") or "cc")
    if not shutil.which(compiler[0]):
        compiler = ["cc"]
    if not shutil.which(compiler[0]):
        pytest.skip("no C compiler")
    target = build_dir / f"{source.stem}{sysconfig.get_config_var('EXT_SUFFIX')}"
    command = [*compiler, "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-Wno-unused-function",
               f"-I{include}", f"-I{capi.get_include()}", str(source), "-o", str(target)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    spec = importlib.util.spec_from_file_location(source.stem, target)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return compile_extension(SAMPLE, tmp_path_factory.mktemp("capi_build"))


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return write_conv_artifact(tmp_path_factory.mktemp("capi_model") / "tiny", tile=32, overlap=8, batch=2)


@pytest.fixture(scope="module")
def artifact_x4(tmp_path_factory):
    return write_conv_artifact(tmp_path_factory.mktemp("capi_model") / "tiny_x4", scale=4, tile=16, overlap=4, batch=2)


def frame(shape, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == np.float32:
        return rng.random(shape, dtype=np.float32)
    return (rng.random(shape) * np.iinfo(dtype).max).astype(dtype)


def from_c(result, dtype=np.uint8):
    data, height, width, channels = result
    return np.frombuffer(data, dtype).reshape(height, width, channels)


def test_capsule_is_the_table(sample):
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, (ctypes.py_object, ctypes.c_char_p)
    table = capi.RestoreCAPI.from_address(get_pointer(capi._C_API, capi.CAPSULE_NAME))
    assert table.abi_version == capi.ABI_VERSION and table.struct_size == ctypes.sizeof(capi.RestoreCAPI)
    assert ctypes.sizeof(capi.RestoreCAPI) == 8 + 8 * ctypes.sizeof(ctypes.c_void_p)  # the C layout
    assert sample.version() == ctypes.string_at(table.version()).decode()


def test_c_restore_equals_python_restorer(sample, artifact):
    image = frame((45, 70, 3))
    out = from_c(sample.restore(str(artifact), "onnxruntime", image))
    with Restorer(artifact, backend="onnxruntime") as restorer:
        expected = restorer.restore(image)
    assert out.shape == (45, 70, 3)
    np.testing.assert_array_equal(out, expected)


def test_c_video_equals_python_stream(sample, artifact):
    still = frame((45, 70, 3)) // 2 + 64
    frames = [still, still.copy(), frame((45, 70, 3), seed=4)]
    frames[1][10:13, 10:13] += 3  # the codec's noise: the correction is held where nothing moved
    out = [np.frombuffer(b, np.uint8).reshape(45, 70, 3) for b in sample.restore_video(str(artifact), "onnxruntime", frames, 45, 70, 3)]
    with Restorer(artifact, backend="onnxruntime") as restorer:
        expected = list(restorer.stream(frames))
        alone = restorer.restore(frames[1])
    assert all(np.array_equal(a, b) for a, b in zip(out, expected))
    assert not np.array_equal(out[1], alone)  # a video, not stills


def test_c_restore_strided_rows_alpha_and_16_bit(sample, artifact):
    big = frame((50, 90, 4), np.uint16, seed=1)
    view = big[5:45, 10:80]  # rows 90*4*2 bytes apart, not 70*4*2
    assert not view.flags.c_contiguous
    out = from_c(sample.restore(str(artifact), "onnxruntime", view, tile=32, overlap=8), np.uint16)
    with Restorer(artifact, backend="onnxruntime", tile=32, overlap=8) as restorer:
        expected = restorer.restore(np.ascontiguousarray(view))
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out[..., 3], view[..., 3])  # alpha passed through


def test_c_restore_x4_gray_float(sample, artifact_x4):
    image = frame((20, 30, 1), np.float32, seed=2)
    out = from_c(sample.restore(str(artifact_x4), "onnxruntime", image), np.float32)
    with Restorer(artifact_x4, backend="onnxruntime") as restorer:
        expected = restorer.restore(image)
    assert out.shape == (80, 120, 1)
    np.testing.assert_allclose(out, expected.reshape(out.shape), atol=1e-6)


def test_bad_model_path_gives_status_and_message(sample, tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(RuntimeError) as info:
        sample.restore(str(missing), "onnxruntime", frame((8, 8, 3)))
    status, message = info.value.args
    assert status == 7  # RESTORE_ERROR_CONFIG, the ConfigError exit code
    assert message.startswith(f"{missing}: no such model file or directory")


def test_unknown_backend_and_unusable_backend(sample, artifact):
    with pytest.raises(RuntimeError) as info:
        sample.restore(str(artifact), "vulkan", frame((8, 8, 3)))
    assert info.value.args == (7, "vulkan: unknown backend (choose auto or one of: tensorrt, onnxruntime, openvino, torch)")
    with pytest.raises(RuntimeError) as info:
        sample.restore(str(artifact), "tensorrt", frame((8, 8, 3)))
    assert info.value.args[0] == 6 and "no TensorRT engine" in info.value.args[1]


@pytest.mark.skipif(gpu_present(), reason="checks the no-GPU error")
def test_device_restore_without_gpu_is_a_backend_status(sample, artifact):
    with pytest.raises(RuntimeError) as info:
        sample.restore_device(str(artifact), "onnxruntime", 0x1000, 0x2000, 8, 8, 3, 0)
    status, message = info.value.args
    assert status == 6 and "no usable CUDA GPU" in message


def test_bad_calls_through_the_table_return_statuses(artifact):
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, (ctypes.py_object, ctypes.c_char_p)
    api = capi.RestoreCAPI.from_address(get_pointer(capi._C_API, capi.CAPSULE_NAME))
    handle = ctypes.c_void_p()
    assert api.create(str(artifact).encode(), b"onnxruntime", 0, -1, ctypes.byref(handle)) == 0
    scale = ctypes.c_int()
    assert api.scale(handle, ctypes.byref(scale)) == 0 and scale.value == 1
    src, dst = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)
    assert api.restore_host(handle, src.ctypes.data, 8, 8, 3, 0, 8 * 3, None, 24) == 3  # NULL output
    assert ctypes.string_at(api.last_error()) == b"output frame: NULL pointer"
    assert api.restore_host(handle, src.ctypes.data, 8, 8, 3, 0, 10, dst.ctypes.data, 24) == 3
    assert b"row stride 10" in ctypes.string_at(api.last_error())
    assert api.restore_host(handle, src.ctypes.data, 8, 8, 3, 9, 24, dst.ctypes.data, 24) == 7  # dtype
    assert api.restore_host(handle, src.ctypes.data, 8, 8, 3, 0, 24, dst.ctypes.data, 24) == 0
    assert ctypes.string_at(api.last_error()) == b""
    api.destroy(handle)
    api.destroy(handle)  # ignored
    assert api.scale(handle, ctypes.byref(scale)) == 7


def test_header_compiles_as_cplusplus(tmp_path):
    compiler = shutil.which("c++") or shutil.which("g++")
    if not compiler:
        pytest.skip("no C++ compiler")
    source = tmp_path / "use.cpp"
    source.write_text('#include "restore.h"\nint f() { return import_restore(); }\n')
    done = subprocess.run([compiler, "-fsyntax-only", "-Wall", "-Werror", f"-I{sysconfig.get_paths()['include']}",
                           f"-I{capi.get_include()}", str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.gpu
def test_device_restore_on_gpu(sample, artifact):
    from restore.runtime.cuda_mem import DeviceBuffer, PinnedBuffer, Stream, get_driver

    driver = get_driver("cuda-python")
    image = frame((40, 50, 3))
    src, dst = DeviceBuffer(image.nbytes, driver), DeviceBuffer(image.nbytes, driver)
    host_in, host_out = PinnedBuffer(image.nbytes, driver), PinnedBuffer(image.nbytes, driver)
    stream = Stream(driver)
    host_in.view(np.uint8, image.shape)[...] = image
    src.upload(host_in, image.nbytes, stream)
    sample.restore_device(str(artifact), "onnxruntime", src.ptr, dst.ptr, 40, 50, 3, stream.raw)
    dst.download(host_out, image.nbytes, stream)
    stream.synchronize()
    with Restorer(artifact, backend="onnxruntime") as restorer:
        np.testing.assert_array_equal(host_out.view(np.uint8, image.shape), restorer.restore(image))
