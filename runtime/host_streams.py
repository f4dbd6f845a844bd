"""CUDA stream semantics on the host: each stream is a worker thread, "device" memory is RAM.

This is the ``host`` driver of ``runtime/cuda_mem.py``. It exists so the GPU pipeline's schedule
runs for real -- concurrently, with the same waits and records -- on machines without a GPU, and
its tests check ordering, back-pressure and outputs rather than a mock. It follows the CUDA rules
that matter for correctness:

- work on one stream runs in the order it was queued; different streams run concurrently;
- ``event_record`` marks the point in the stream's queue reached when it was called;
  ``stream_wait_event`` and ``event_synchronize`` wait for the *latest record made before the
  call* (later records do not count), and an event never recorded is already complete;
- a failure inside queued work is reported by the next synchronisation (CUDA's sticky error).

``launch(stream, fn)`` queues a host function the way a kernel launch queues device work; a
backend's device-side execute uses it to run NumPy "kernels" in stream order.
"""
import ctypes
import queue
import threading
import time

import numpy as np

from .cuda_mem import CudaDriver
from .errors import BackendError


class _HostStream:
    def __init__(self, driver, index):
        self.driver = driver
        self.ops = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._work, name=f"host-stream-{index}", daemon=True)
        self.thread.start()

    def _work(self):
        while True:
            op = self.ops.get()
            if op is None:
                return
            try:
                op()
            except BaseException as e:  # kept for the next synchronisation, like a CUDA sticky error
                self.driver.fail(e)


class _HostEvent:
    def __init__(self):
        self.cond = threading.Condition()
        self.recorded = 0  # records queued so far
        self.completed = 0  # records the stream has reached
        self.time = None

    def complete(self, generation):
        with self.cond:
            self.completed = max(self.completed, generation)
            self.time = time.perf_counter()
            self.cond.notify_all()

    def wait_for(self, generation):
        with self.cond:
            self.cond.wait_for(lambda: self.completed >= generation)


class HostDriver(CudaDriver):
    name = "host"

    def __init__(self, copy_seconds_per_mb=0.0):
        """``copy_seconds_per_mb`` > 0 makes copies take time like a PCIe link would, so tests
        can see whether copies overlap compute."""
        self.copy_seconds_per_mb = copy_seconds_per_mb
        self._memory = {}  # ptr -> backing ndarray
        self._lock = threading.Lock()
        self._error = None
        self._streams = 0

    # errors ----------------------------------------------------------------------------------
    def fail(self, error):
        with self._lock:
            self._error = self._error or error

    def _check(self, what):
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            raise BackendError(what, f"work queued on a host stream failed: {error!r}")

    # memory ----------------------------------------------------------------------------------
    def device_count(self):
        return 1

    def _alloc(self, nbytes):
        array = np.zeros(nbytes, np.uint8)
        with self._lock:
            self._memory[array.ctypes.data] = array
        return array.ctypes.data

    def _free(self, ptr):
        with self._lock:
            del self._memory[ptr]

    malloc_host = malloc_device = _alloc
    free_host = free_device = _free

    def _copy(self, dst, src, nbytes, stream):
        delay = self.copy_seconds_per_mb * nbytes / 1e6

        def copy():
            if delay:
                time.sleep(delay)
            ctypes.memmove(dst, src, nbytes)

        stream.ops.put(copy)

    memcpy_htod_async = memcpy_dtoh_async = _copy

    # streams and events ----------------------------------------------------------------------
    def stream_create(self):
        self._streams += 1
        return _HostStream(self, self._streams)

    def stream_destroy(self, stream):
        stream.ops.put(None)
        stream.thread.join()

    def stream_synchronize(self, stream):
        done = threading.Event()
        stream.ops.put(done.set)
        done.wait()
        self._check("stream_synchronize")

    def stream_handle(self, stream):
        return id(stream)

    def launch(self, stream, fn):
        """Queue ``fn()`` on ``stream`` (a ``Stream`` or a raw handle of this driver), the host
        counterpart of a kernel launch."""
        getattr(stream, "handle", stream).ops.put(fn)

    def event_create(self, timing=False):
        return _HostEvent()

    def event_destroy(self, event):
        pass

    def event_record(self, event, stream):
        with event.cond:
            event.recorded += 1
            generation = event.recorded
        stream.ops.put(lambda: event.complete(generation))

    def stream_wait_event(self, stream, event):
        generation = event.recorded  # the latest record at the time of this call
        stream.ops.put(lambda: event.wait_for(generation))

    def event_synchronize(self, event):
        event.wait_for(event.recorded)
        self._check("event_synchronize")

    def event_query(self, event):
        with event.cond:
            return event.completed >= event.recorded

    def event_elapsed_ms(self, start, end):
        return (end.time - start.time) * 1000.0
