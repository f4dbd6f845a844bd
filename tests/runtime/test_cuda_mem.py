"""CUDA memory and streams: error mapping on this GPU-less machine, resource ownership and the
stream/event rules of the host-thread driver, and (marked gpu) real device round trips."""
import gc
import threading
import time

import numpy as np
import pytest

from restore.runtime.cuda_mem import (CudaPythonDriver, DeviceBuffer, Event, PinnedBuffer, Stream,
                                      cuda_call, get_driver)
from restore.runtime.errors import BackendError
from restore.runtime.host_streams import HostDriver

rt = pytest.importorskip("cuda.bindings.runtime")
from cuda.bindings import driver as cu  # noqa: E402


def _has_gpu():
    err, count = rt.cudaGetDeviceCount()
    return int(err) == 0 and count > 0


no_gpu_only = pytest.mark.skipif(_has_gpu(), reason="checks the no-GPU error; this machine has a GPU")


def test_cuda_call_returns_values_of_successful_calls():
    assert cuda_call(rt.cudaGetErrorString(rt.cudaError_t.cudaErrorNoDevice)) == b"no CUDA-capable device is detected"
    assert cuda_call((rt.cudaError_t.cudaSuccess,)) is None
    assert cuda_call((rt.cudaError_t.cudaSuccess, 1, 2)) == (1, 2)


def test_cuda_call_names_the_call_and_the_error():
    with pytest.raises(BackendError) as info:
        cuda_call((rt.cudaError_t.cudaErrorMemoryAllocation, None), "cudaMalloc")
    message = str(info.value)
    assert message.startswith("cudaMalloc: cudaErrorMemoryAllocation: out of memory")
    assert "onnxruntime" not in message  # the no-GPU hint is only for no-GPU errors


def test_cuda_call_understands_driver_api_results():
    with pytest.raises(BackendError, match="CUDA_ERROR_NO_DEVICE.*--backend onnxruntime"):
        cuda_call((cu.CUresult.CUDA_ERROR_NO_DEVICE,), "cuInit")


@no_gpu_only
def test_without_a_gpu_cuda_python_gives_one_clear_line():
    with pytest.raises(BackendError) as info:
        CudaPythonDriver()
    message = str(info.value)
    assert message.startswith("cudaSetDevice: cudaError")
    assert "use --backend onnxruntime for the CPU" in message and "\n" not in message
    assert info.value.exit_code == 6


@no_gpu_only
def test_allocating_pinned_memory_without_a_gpu_raises_backend_error():
    with pytest.raises(BackendError, match="no usable CUDA GPU"):
        PinnedBuffer(1024, get_driver("cuda-python"))


def test_driver_choice_errors():
    with pytest.raises(BackendError, match="unknown CUDA driver"):
        get_driver("opencl")
    try:
        import pycuda  # noqa: F401
    except ImportError:
        with pytest.raises(BackendError, match="pycuda: not installed"):
            get_driver("pycuda")


def test_driver_from_environment(monkeypatch):
    monkeypatch.setenv("RESTORE_CUDA", "host")
    assert get_driver().name == "host"


def test_pinned_buffer_view_free_and_use_after_free():
    host = HostDriver()
    buffer = PinnedBuffer(64, host)
    view = buffer.view(np.float32, (4, 4))
    view[...] = np.arange(16).reshape(4, 4)
    assert buffer.view(np.float32)[5] == 5.0
    assert len(host._memory) == 1
    buffer.free()
    buffer.free()  # idempotent
    assert buffer.freed and not host._memory
    with pytest.raises(ValueError, match="PinnedBuffer used after free"):
        buffer.view()


def test_del_frees_what_was_not_freed():
    host = HostDriver()
    buffers = [PinnedBuffer(32, host), DeviceBuffer(32, host)]
    with Stream(host) as stream:
        assert not stream.freed
    assert stream.freed
    assert len(host._memory) == 2
    del buffers
    gc.collect()
    assert not host._memory


def test_copies_follow_stream_order_and_events_order_streams():
    host = HostDriver(copy_seconds_per_mb=2.0)  # 1 MB takes 2 s: far slower than the reader
    src, dst = PinnedBuffer(4096, host), DeviceBuffer(4096, host)
    back = PinnedBuffer(4096, host)
    src.view(np.uint8)[...] = 7
    up, down, ready = Stream(host), Stream(host), Event(host)
    dst.upload(src, 4096, up)  # ~8 ms on the upload stream
    ready.record(up)
    down.wait(ready)
    dst.download(back, 4096, down)
    down.synchronize()
    assert (back.view(np.uint8) == 7).all()
    assert ready.query()


def test_wait_uses_the_record_made_before_it():
    host = HostDriver()
    a, b, event = Stream(host), Stream(host), Event(host)
    gate = threading.Event()
    seen = []
    host.launch(a, gate.wait)  # stream a is stuck until the test opens the gate
    event.record(a)
    b.wait(event)
    host.launch(b, lambda: seen.append("b ran"))
    time.sleep(0.05)
    assert seen == [] and not event.query()  # b waits for a's record
    gate.set()
    b.synchronize()
    assert seen == ["b ran"]
    # A wait on a never-recorded event is already satisfied, as in CUDA.
    c, fresh = Stream(host), Event(host)
    c.wait(fresh)
    c.synchronize()


def test_failure_in_queued_work_surfaces_at_synchronize():
    host = HostDriver()
    stream = Stream(host)
    host.launch(stream, lambda: 1 / 0)
    with pytest.raises(BackendError, match="ZeroDivisionError"):
        stream.synchronize()
    stream.synchronize()  # reported once


class PerThreadDevice:
    """The CUDA runtime's per-thread current device (a new thread starts on device 0), without a
    GPU: every allocation records the device it landed on."""

    cudaError_t = rt.cudaError_t

    def __init__(self):
        self._local = threading.local()
        self.allocations = []

    def cudaSetDevice(self, device):
        self._local.device = device
        return (rt.cudaError_t.cudaSuccess,)

    def cudaGetDevice(self):
        return rt.cudaError_t.cudaSuccess, getattr(self._local, "device", 0)

    def cudaMalloc(self, nbytes):
        self.allocations.append((threading.current_thread().name, self.cudaGetDevice()[1]))
        return rt.cudaError_t.cudaSuccess, 4096


def test_cuda_python_driver_makes_its_device_current_in_every_thread():
    runtime = PerThreadDevice()
    second, first = CudaPythonDriver(1, runtime=runtime), CudaPythonDriver(0, runtime=runtime)
    second.malloc_device(8)  # this thread was last set to device 0 by ``first``
    first.malloc_device(8)
    worker = threading.Thread(target=second.malloc_device, args=(8,), name="worker")
    worker.start()
    worker.join()
    assert runtime.allocations == [("MainThread", 1), ("MainThread", 0), ("worker", 1)]


@pytest.mark.gpu
def test_gpu_buffers_and_streams_work_from_a_worker_thread():
    driver = get_driver("cuda-python")
    results = []

    def round_trip():
        with PinnedBuffer(1024, driver) as src, PinnedBuffer(1024, driver) as back, \
                DeviceBuffer(1024, driver) as device, Stream(driver) as stream:
            src.view(np.uint8)[...] = 5
            device.upload(src, 1024, stream)
            device.download(back, 1024, stream)
            stream.synchronize()
            results.append((cuda_call(rt.cudaGetDevice()), bool((back.view(np.uint8) == 5).all())))

    worker = threading.Thread(target=round_trip)
    worker.start()
    worker.join()
    assert results == [(driver.device, True)]


@pytest.mark.gpu
def test_gpu_round_trip_and_timing_events():
    driver = get_driver("cuda-python")
    n = 1 << 20
    src, back = PinnedBuffer(n * 4, driver), PinnedBuffer(n * 4, driver)
    device = DeviceBuffer(n * 4, driver)
    stream = Stream(driver)
    start, end = Event(driver, timing=True), Event(driver, timing=True)
    src.view(np.float32)[...] = np.arange(n, dtype=np.float32)
    start.record(stream)
    device.upload(src, n * 4, stream)
    device.download(back, n * 4, stream)
    end.record(stream)
    end.synchronize()
    np.testing.assert_array_equal(back.view(np.float32), src.view(np.float32))
    assert start.elapsed_ms(end) > 0
    assert isinstance(stream.raw, int) and stream.raw != 0
    for resource in (src, back, device, stream, start, end):
        resource.free()
