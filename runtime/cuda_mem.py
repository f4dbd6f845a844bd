"""CUDA memory and streams: owned resources over one small driver interface.

The runtime needs a dozen CUDA calls (pinned and device allocations, async copies, streams,
events). They sit behind ``CudaDriver`` so the same pipeline code runs on

- ``cuda-python`` (``cuda.bindings.runtime``) -- the default: a binary wheel that installs without
  a compiler, imports on machines without a GPU (calls then fail with a clear error), talks to the
  CUDA runtime's primary context that TensorRT and torch also use, and is what TensorRT's own
  Python samples switched to from pycuda;
- ``pycuda`` -- offered because the design card names it; it ships only as source, needs the CUDA
  driver library to build, and needs a context made current in every thread that calls it (its
  classic failure). Select it with ``RESTORE_CUDA=pycuda`` or ``get_driver("pycuda")``;
- ``host`` -- ``runtime/host_streams.py``: streams as host threads and "device" memory in RAM, so
  the pipeline's ordering is exercised for real on machines without a GPU.

The owned resources (``PinnedBuffer``, ``DeviceBuffer``, ``Stream``, ``Event``) each have an
explicit ``free()`` (idempotent) and free themselves in ``__del__`` as a fallback. Pointers and
stream handles are plain ints where a library (TensorRT, torch, a C caller) needs them.
"""
import ctypes
import os
import threading

import numpy as np

from .errors import BackendError

DRIVER_ENV = "RESTORE_CUDA"
DEFAULT_DRIVER = "cuda-python"
_NO_GPU_HINT = "no usable CUDA GPU or driver here; use --backend onnxruntime for the CPU"


# --- error handling -----------------------------------------------------------------------------
def cuda_call(result, what="CUDA"):
    """Check the ``(error, *values)`` tuple a ``cuda.bindings`` call returns.

    Returns None, the single value, or the tuple of values; raises ``BackendError`` naming the
    call and the CUDA error (name and text) otherwise. Works for runtime (``cudaError_t``) and
    driver (``CUresult``) API results alike.
    """
    err, *values = result
    if int(err) != 0:
        raise _cuda_error(err, what)
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _cuda_error(err, what):
    from cuda.bindings import driver, runtime

    if not isinstance(err, (driver.CUresult, runtime.cudaError_t)):  # e.g. nvrtcResult
        return BackendError(what, getattr(err, "name", str(err)))
    if isinstance(err, driver.CUresult):
        # The driver API's own lookups need libcuda, which a machine without a driver lacks.
        name, text = err.name, "CUDA driver API error"
        try:
            _, text = driver.cuGetErrorString(err)
        except Exception:
            pass
    else:
        _, name = runtime.cudaGetErrorName(err)
        _, text = runtime.cudaGetErrorString(err)
    name = name.decode() if isinstance(name, bytes) else str(name)
    text = text.decode() if isinstance(text, bytes) else str(text)
    no_gpu = name in ("cudaErrorNoDevice", "cudaErrorInsufficientDriver", "CUDA_ERROR_NO_DEVICE",
                      "CUDA_ERROR_NOT_INITIALIZED", "cudaErrorInitializationError")
    return BackendError(what, f"{name}: {text}", _NO_GPU_HINT if no_gpu else None)


# --- drivers ------------------------------------------------------------------------------------
class CudaDriver:
    """The few functions the runtime uses. Pointers are ints; stream and event handles are
    whatever the library uses (``stream_handle`` gives the raw ``cudaStream_t`` as an int)."""

    name = "abstract"

    def device_count(self): raise NotImplementedError
    def malloc_host(self, nbytes): raise NotImplementedError
    def free_host(self, ptr): raise NotImplementedError
    def malloc_device(self, nbytes): raise NotImplementedError
    def free_device(self, ptr): raise NotImplementedError
    def stream_create(self): raise NotImplementedError
    def stream_destroy(self, stream): raise NotImplementedError
    def stream_synchronize(self, stream): raise NotImplementedError
    def stream_handle(self, stream): raise NotImplementedError
    def event_create(self, timing=False): raise NotImplementedError
    def event_destroy(self, event): raise NotImplementedError
    def event_record(self, event, stream): raise NotImplementedError
    def stream_wait_event(self, stream, event): raise NotImplementedError
    def event_synchronize(self, event): raise NotImplementedError
    def event_query(self, event): raise NotImplementedError
    def event_elapsed_ms(self, start, end): raise NotImplementedError
    def memcpy_htod_async(self, dst, src, nbytes, stream): raise NotImplementedError
    def memcpy_dtoh_async(self, dst, src, nbytes, stream): raise NotImplementedError

    def host_view(self, ptr, nbytes):
        """A uint8 NumPy view of host memory at ``ptr`` (pinned buffers are plain host memory)."""
        if nbytes == 0:
            return np.empty(0, np.uint8)
        return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))


class CudaPythonDriver(CudaDriver):
    """``cuda.bindings.runtime``: every call returns ``(cudaError_t, *values)``.

    The CUDA runtime's current device is per thread (a new thread starts on device 0), so every
    call first makes this driver's device current in the calling thread: the pipeline's worker
    threads and a second GPU's driver in the same thread both land on the right device.
    ``runtime`` is the ``cuda.bindings.runtime`` module (another of the same API in tests)."""

    name = "cuda-python"

    def __init__(self, device=0, runtime=None):
        if runtime is None:
            try:
                from cuda.bindings import runtime
            except ImportError:
                raise BackendError("cuda-python", "not installed", "pip install 'restore[cuda]' (cuda-bindings)") from None
        self.rt = runtime
        self.device = device
        cuda_call(runtime.cudaSetDevice(device), "cudaSetDevice")

    def _call(self, what, fn, *args):
        if cuda_call(self.rt.cudaGetDevice(), "cudaGetDevice") != self.device:
            cuda_call(self.rt.cudaSetDevice(self.device), "cudaSetDevice")
        return cuda_call(fn(*args), what)

    def device_count(self):
        return cuda_call(self.rt.cudaGetDeviceCount(), "cudaGetDeviceCount")

    def malloc_host(self, nbytes):
        return int(self._call("cudaMallocHost", self.rt.cudaMallocHost, nbytes))

    def free_host(self, ptr):
        self._call("cudaFreeHost", self.rt.cudaFreeHost, ptr)

    def malloc_device(self, nbytes):
        return int(self._call("cudaMalloc", self.rt.cudaMalloc, nbytes))

    def free_device(self, ptr):
        self._call("cudaFree", self.rt.cudaFree, ptr)

    def stream_create(self):
        # Non-blocking: our streams must not serialise against the legacy default stream that
        # other libraries in the process may use.
        return self._call("cudaStreamCreateWithFlags", self.rt.cudaStreamCreateWithFlags, self.rt.cudaStreamNonBlocking)

    def stream_destroy(self, stream):
        self._call("cudaStreamDestroy", self.rt.cudaStreamDestroy, stream)

    def stream_synchronize(self, stream):
        self._call("cudaStreamSynchronize", self.rt.cudaStreamSynchronize, stream)

    def stream_handle(self, stream):
        return int(stream)

    def event_create(self, timing=False):
        flags = self.rt.cudaEventDefault if timing else self.rt.cudaEventDisableTiming
        return self._call("cudaEventCreateWithFlags", self.rt.cudaEventCreateWithFlags, flags)

    def event_destroy(self, event):
        self._call("cudaEventDestroy", self.rt.cudaEventDestroy, event)

    def event_record(self, event, stream):
        self._call("cudaEventRecord", self.rt.cudaEventRecord, event, stream)

    def stream_wait_event(self, stream, event):
        self._call("cudaStreamWaitEvent", self.rt.cudaStreamWaitEvent, stream, event, 0)

    def event_synchronize(self, event):
        self._call("cudaEventSynchronize", self.rt.cudaEventSynchronize, event)

    def event_query(self, event):
        not_ready = self.rt.cudaError_t.cudaErrorNotReady

        def query(e):
            err, = self.rt.cudaEventQuery(e)
            return (self.rt.cudaError_t.cudaSuccess, False) if err == not_ready else (err, True)

        return self._call("cudaEventQuery", query, event)

    def event_elapsed_ms(self, start, end):
        return self._call("cudaEventElapsedTime", self.rt.cudaEventElapsedTime, start, end)

    def memcpy_htod_async(self, dst, src, nbytes, stream):
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call("cudaMemcpyAsync(H2D)", self.rt.cudaMemcpyAsync, dst, src, nbytes, kind, stream)

    def memcpy_dtoh_async(self, dst, src, nbytes, stream):
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync(D2H)", self.rt.cudaMemcpyAsync, dst, src, nbytes, kind, stream)


class PycudaDriver(CudaDriver):
    """pycuda behind the same functions. NOT RUN in this project yet: pycuda does not build on the
    CPU-only machines it was written on (no libcuda to link). It binds to the device's *primary*
    context -- the one the CUDA runtime, TensorRT and torch use -- and makes it current in any
    thread that calls in, which is the usual pycuda pitfall with worker threads."""

    name = "pycuda"

    def __init__(self, device=0):
        try:
            import pycuda.driver as cuda
        except ImportError:
            raise BackendError("pycuda", "not installed", "pip install pycuda on a machine with the CUDA toolkit, or use the default cuda-python") from None
        self.cuda = cuda
        try:
            cuda.init()
            self._context = cuda.Device(device).retain_primary_context()
        except cuda.Error as e:
            raise BackendError("pycuda", str(e), _NO_GPU_HINT) from None
        self._pinned = {}  # ptr -> pagelocked ndarray (pycuda frees it when the array goes)
        self._device = {}  # ptr -> DeviceAllocation
        self._local = threading.local()

    def _current(self):
        if not getattr(self._local, "pushed", False):
            self._context.push()
            self._local.pushed = True

    def _call(self, what, fn, *args):
        self._current()
        try:
            return fn(*args)
        except self.cuda.Error as e:
            raise BackendError(what, str(e)) from None

    def device_count(self):
        return self._call("pycuda.Device.count", self.cuda.Device.count)

    def malloc_host(self, nbytes):
        array = self._call("pagelocked_empty", self.cuda.pagelocked_empty, (nbytes,), np.uint8)
        ptr = array.ctypes.data
        self._pinned[ptr] = array
        return ptr

    def free_host(self, ptr):
        array = self._pinned.pop(ptr)
        array.base.free()

    def malloc_device(self, nbytes):
        allocation = self._call("mem_alloc", self.cuda.mem_alloc, nbytes)
        self._device[int(allocation)] = allocation
        return int(allocation)

    def free_device(self, ptr):
        self._device.pop(ptr).free()

    def stream_create(self):
        return self._call("Stream", self.cuda.Stream)

    def stream_destroy(self, stream):
        pass  # pycuda destroys the stream when the object is collected

    def stream_synchronize(self, stream):
        self._call("Stream.synchronize", stream.synchronize)

    def stream_handle(self, stream):
        return int(stream.handle)

    def event_create(self, timing=False):
        flags = 0 if timing else self.cuda.event_flags.DISABLE_TIMING
        return self._call("Event", self.cuda.Event, flags)

    def event_destroy(self, event):
        pass  # collected with the object

    def event_record(self, event, stream):
        self._call("Event.record", event.record, stream)

    def stream_wait_event(self, stream, event):
        self._call("Stream.wait_for_event", stream.wait_for_event, event)

    def event_synchronize(self, event):
        self._call("Event.synchronize", event.synchronize)

    def event_query(self, event):
        return self._call("Event.query", event.query)

    def event_elapsed_ms(self, start, end):
        return self._call("Event.time_since", end.time_since, start)

    def memcpy_htod_async(self, dst, src, nbytes, stream):
        self._call("memcpy_htod_async", self.cuda.memcpy_htod_async, dst, self.host_view(src, nbytes), stream)

    def memcpy_dtoh_async(self, dst, src, nbytes, stream):
        self._call("memcpy_dtoh_async", self.cuda.memcpy_dtoh_async, self.host_view(dst, nbytes), src, stream)


_drivers = {}
_drivers_lock = threading.Lock()


def get_driver(name=None, device=0):
    """The process-wide driver ``name`` ("cuda-python", "pycuda", "host"; default from
    $RESTORE_CUDA, else cuda-python), created on first use."""
    name = name or os.environ.get(DRIVER_ENV) or DEFAULT_DRIVER
    factories = {"cuda-python": CudaPythonDriver, "pycuda": PycudaDriver}
    if name == "host":
        from .host_streams import HostDriver

        factories["host"] = HostDriver
    if name not in factories:
        raise BackendError(f"{DRIVER_ENV}={name}", "unknown CUDA driver", "use cuda-python, pycuda or host")
    with _drivers_lock:
        key = (name, device)
        if key not in _drivers:
            _drivers[key] = factories[name]() if name == "host" else factories[name](device)
        return _drivers[key]


# --- owned resources ----------------------------------------------------------------------------
class _Owned:
    """A CUDA resource this object owns: ``free()`` releases it once; ``__del__`` is the fallback."""

    def __init__(self, driver, handle):
        self.driver = driver
        self._handle = handle

    @property
    def handle(self):
        if self._handle is None:
            raise ValueError(f"{type(self).__name__} used after free()")
        return self._handle

    @property
    def freed(self):
        return self._handle is None

    def free(self):
        handle, self._handle = self._handle, None
        if handle is not None:
            self._release(handle)

    def _release(self, handle):
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()

    def __del__(self):
        try:
            self.free()
        except Exception:  # interpreter shutdown or a dead context: nothing left to release into
            pass


class PinnedBuffer(_Owned):
    """Page-locked host memory (the only kind of host memory async copies really overlap with)."""

    def __init__(self, nbytes, driver=None):
        driver = driver or get_driver()
        self.nbytes = int(nbytes)
        super().__init__(driver, driver.malloc_host(max(self.nbytes, 1)))

    @property
    def ptr(self):
        return self.handle

    def view(self, dtype=np.uint8, shape=None):
        """A NumPy array on this memory (valid until ``free()``)."""
        dtype = np.dtype(dtype)
        array = self.driver.host_view(self.ptr, self.nbytes)
        count = self.nbytes // dtype.itemsize
        array = array[: count * dtype.itemsize].view(dtype)
        return array if shape is None else array[: int(np.prod(shape))].reshape(shape)

    def _release(self, handle):
        self.driver.free_host(handle)


class DeviceBuffer(_Owned):
    def __init__(self, nbytes, driver=None):
        driver = driver or get_driver()
        self.nbytes = int(nbytes)
        super().__init__(driver, driver.malloc_device(max(self.nbytes, 1)))

    @property
    def ptr(self):
        return self.handle

    def upload(self, pinned, nbytes, stream):
        """Async copy of ``nbytes`` from a ``PinnedBuffer`` into this buffer on ``stream``."""
        self.driver.memcpy_htod_async(self.ptr, pinned.ptr, nbytes, stream.handle)

    def download(self, pinned, nbytes, stream):
        """Async copy of ``nbytes`` from this buffer into a ``PinnedBuffer`` on ``stream``."""
        self.driver.memcpy_dtoh_async(pinned.ptr, self.ptr, nbytes, stream.handle)

    def _release(self, handle):
        self.driver.free_device(handle)


class Stream(_Owned):
    def __init__(self, driver=None):
        driver = driver or get_driver()
        super().__init__(driver, driver.stream_create())

    @property
    def raw(self):
        """The ``cudaStream_t`` as an int, for TensorRT's ``execute_async_v3`` or torch."""
        return self.driver.stream_handle(self.handle)

    def wait(self, event):
        """Work queued on this stream after this call waits for ``event``'s latest record."""
        self.driver.stream_wait_event(self.handle, event.handle)

    def synchronize(self):
        self.driver.stream_synchronize(self.handle)

    def _release(self, handle):
        self.driver.stream_destroy(handle)


class Event(_Owned):
    def __init__(self, driver=None, timing=False):
        driver = driver or get_driver()
        super().__init__(driver, driver.event_create(timing))

    def record(self, stream):
        self.driver.event_record(self.handle, stream.handle)

    def synchronize(self):
        self.driver.event_synchronize(self.handle)

    def query(self):
        return self.driver.event_query(self.handle)

    def elapsed_ms(self, end):
        """Milliseconds from this event to ``end`` (both created with ``timing=True``)."""
        return self.driver.event_elapsed_ms(self.handle, end.handle)

    def _release(self, handle):
        self.driver.event_destroy(handle)
