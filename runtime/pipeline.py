"""The double-buffered GPU pipeline: upload batch t+1 and download batch t-1 while batch t computes.

Resources: ``slots`` (default 2) sets of {pinned input, device input, device output, pinned
output}, three streams (upload, compute, download -- an H100 has separate copy engines for each
direction) and per slot three events: ``uploaded``, ``computed``, ``downloaded``.

What happens, and in which order, is decided by ``DoubleBufferSchedule`` -- a pure object that
lists the steps (host fill, upload, compute, download, host collect) with the events each step
waits for and records. ``GpuPipeline`` only carries the steps out on a CUDA driver
(``runtime/cuda_mem.py``: cuda-python, pycuda, or the host-thread driver used in tests). So the
ordering is tested on CPU twice: as a happens-before proof over the schedule, and by running it
on real threads with NumPy "kernels".

Why these waits and no others (slot s = t % slots, batch t):
  upload t    records uploaded[s]
  compute t   waits uploaded[s]   (its own input), records computed[s]
  download t  waits computed[s]   (its own output), records downloaded[s]
  collect t-(slots-1)   the host waits downloaded[...] and copies the result out
Reuse of a slot needs no wait of its own: before batch t touches slot s, the host has already
collected batch t-slots from it, which happened after that batch's download, compute and upload.
The tests prove this over the schedule. The host collects one batch behind per extra slot, so
with 2 slots it fills t+1 and collects t-1 while t computes, and the compute stream always has
the next batch queued.
"""
import time
from dataclasses import dataclass

import numpy as np

from .cuda_mem import DeviceBuffer, Event, PinnedBuffer, Stream, get_driver
from .errors import ConfigError

UPLOAD, COMPUTE, DOWNLOAD = "upload", "compute", "download"
STREAMS = (UPLOAD, COMPUTE, DOWNLOAD)
UPLOADED, COMPUTED, DOWNLOADED = "uploaded", "computed", "downloaded"


@dataclass(frozen=True)
class Step:
    """One thing to do for one batch. ``waits`` are (event, slot) pairs: a stream step makes its
    stream wait for them, a host step (fill, collect) blocks the host on them. A stream step
    records ``record`` on its stream when it is done."""

    kind: str  # fill | upload | compute | download | collect
    batch: int
    slot: int
    waits: tuple = ()
    record: tuple = None

    @property
    def stream(self):
        return self.kind if self.kind in STREAMS else None


class DoubleBufferSchedule:
    def __init__(self, slots=2):
        if slots < 1:
            raise ConfigError(f"slots={slots}", "the pipeline needs at least one buffer slot")
        self.slots = slots

    def issue(self, t):
        """The steps the host performs when batch ``t`` arrives, in order."""
        s = t % self.slots
        steps = [
            Step("fill", t, s),
            Step(UPLOAD, t, s, (), (UPLOADED, s)),
            Step(COMPUTE, t, s, ((UPLOADED, s),), (COMPUTED, s)),
            Step(DOWNLOAD, t, s, ((COMPUTED, s),), (DOWNLOADED, s)),
        ]
        done = t - (self.slots - 1)
        if done >= 0:
            steps.append(self._collect(done))
        return steps

    def drain(self, count):
        """The collects still owed after ``count`` batches were issued."""
        return [self._collect(c) for c in range(max(0, count - (self.slots - 1)), count)]

    def _collect(self, t):
        s = t % self.slots
        return Step("collect", t, s, ((DOWNLOADED, s),))


def schedule(count, slots=2):
    """All steps for ``count`` batches."""
    plan = DoubleBufferSchedule(slots)
    return [step for t in range(count) for step in plan.issue(t)] + plan.drain(count)


class GpuPipeline:
    """Runs batches through ``execute`` with the double-buffered schedule.

    ``execute(count, d_in, d_out, stream)`` queues the model on ``stream`` (a ``Stream``; TensorRT
    takes ``stream.raw``) reading ``count`` items from device pointer ``d_in`` and writing to
    ``d_out``; it must not synchronise. Items are ``in_shape``/``out_shape`` arrays (C, H, W).
    """

    def __init__(self, execute, in_shape, out_shape, max_batch, in_dtype=np.float32, out_dtype=np.float32, slots=2, driver=None):
        self.driver = driver or get_driver()
        self.execute = execute
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.in_dtype, self.out_dtype = np.dtype(in_dtype), np.dtype(out_dtype)
        self.max_batch = int(max_batch)
        self.plan = DoubleBufferSchedule(slots)
        self.in_item = int(np.prod(self.in_shape)) * self.in_dtype.itemsize
        self.out_item = int(np.prod(self.out_shape)) * self.out_dtype.itemsize
        self._owned = []
        try:
            own = self._own
            self.pinned_in = [own(PinnedBuffer(self.in_item * self.max_batch, self.driver)) for _ in range(slots)]
            self.pinned_out = [own(PinnedBuffer(self.out_item * self.max_batch, self.driver)) for _ in range(slots)]
            self.device_in = [own(DeviceBuffer(self.in_item * self.max_batch, self.driver)) for _ in range(slots)]
            self.device_out = [own(DeviceBuffer(self.out_item * self.max_batch, self.driver)) for _ in range(slots)]
            self.streams = {name: own(Stream(self.driver)) for name in STREAMS}
            self.events = {(name, s): own(Event(self.driver)) for name in (UPLOADED, COMPUTED, DOWNLOADED) for s in range(slots)}
        except BaseException:
            self.close()
            raise

    def _own(self, resource):
        self._owned.append(resource)
        return resource

    @property
    def slots(self):
        return self.plan.slots

    def run(self, batches):
        """Yield the output of every batch, in order, as host arrays (copies; safe to keep)."""
        counts = {}
        issued = 0
        try:
            for t, batch in enumerate(batches):
                counts[t] = self._check_batch(batch)
                for step in self.plan.issue(t):
                    output = self._do(step, batch, counts)
                    if output is not None:
                        yield output
                issued = t + 1
            for step in self.plan.drain(issued):
                yield self._do(step, None, counts)
        finally:
            # Whatever stopped us (end, error, consumer gone), no queued copy may outlive the
            # buffers it writes into.
            for stream in self.streams.values():
                stream.synchronize()

    def _check_batch(self, batch):
        if batch.ndim != len(self.in_shape) + 1 or batch.shape[1:] != self.in_shape or not 1 <= len(batch) <= self.max_batch:
            raise ConfigError(f"batch {batch.shape}", f"expected (1..{self.max_batch}, {', '.join(map(str, self.in_shape))})")
        return len(batch)

    def _do(self, step, batch, counts):
        s, n = step.slot, counts[step.batch]
        stream = self.streams[step.stream] if step.stream else None
        for wait in step.waits:
            if stream is not None:
                stream.wait(self.events[wait])
            else:
                self.events[wait].synchronize()
        output = None
        if step.kind == "fill":
            self.pinned_in[s].view(self.in_dtype, (n,) + self.in_shape)[...] = batch
        elif step.kind == UPLOAD:
            self.device_in[s].upload(self.pinned_in[s], n * self.in_item, stream)
        elif step.kind == COMPUTE:
            self.execute(n, self.device_in[s].ptr, self.device_out[s].ptr, stream)
        elif step.kind == DOWNLOAD:
            self.device_out[s].download(self.pinned_out[s], n * self.out_item, stream)
        elif step.kind == "collect":
            output = self.pinned_out[s].view(self.out_dtype, (n,) + self.out_shape).copy()
            del counts[step.batch]
        if step.record is not None:
            self.events[step.record].record(stream)
        return output

    def close(self):
        for stream in (getattr(self, "streams", None) or {}).values():
            if not stream.freed:
                stream.synchronize()
        for resource in reversed(self._owned):
            resource.free()
        self._owned.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def measure_overlap(pipeline, batches, repeats=3):
    """Time ``batches`` three ways on ``pipeline``'s resources and report overlap efficiency.

    - compute_only_s: the model alone, input already on the device, outputs left there;
    - pipelined_s:    host arrays in, host arrays out, through the double-buffered schedule;
    - serial_s:       the same copies and compute one after another on one stream (no overlap).
    ``efficiency = pipelined_s / compute_only_s``: 1.0 means the copies (and host staging) are
    completely hidden behind compute; ``serial_s / compute_only_s`` is what no overlap costs.
    Wall-clock times, best of ``repeats`` after one warm-up pass.
    """
    batches = [np.ascontiguousarray(b, dtype=pipeline.in_dtype) for b in batches]
    compute = pipeline.streams[COMPUTE]
    d_in, d_out = pipeline.device_in[0], pipeline.device_out[0]
    p_in, p_out = pipeline.pinned_in[0], pipeline.pinned_out[0]

    def pipelined():
        for _ in pipeline.run(batches):
            pass

    def compute_only():
        for b in batches:
            pipeline.execute(len(b), d_in.ptr, d_out.ptr, compute)
        compute.synchronize()

    def serial():
        for b in batches:
            n = len(b)
            p_in.view(pipeline.in_dtype, b.shape)[...] = b
            d_in.upload(p_in, n * pipeline.in_item, compute)
            pipeline.execute(n, d_in.ptr, d_out.ptr, compute)
            d_out.download(p_out, n * pipeline.out_item, compute)
            compute.synchronize()
            p_out.view(pipeline.out_dtype, (n,) + pipeline.out_shape).copy()

    def best(fn):
        fn()  # warm-up: allocator, autotuning, lazy module loading
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    result = {
        "batches": len(batches),
        "items": sum(len(b) for b in batches),
        "slots": pipeline.slots,
        "driver": pipeline.driver.name,
        "compute_only_s": best(compute_only),
        "pipelined_s": best(pipelined),
        "serial_s": best(serial),
        "bytes_up": sum(len(b) for b in batches) * pipeline.in_item,
        "bytes_down": sum(len(b) for b in batches) * pipeline.out_item,
    }
    result["efficiency"] = result["pipelined_s"] / result["compute_only_s"]
    result["serial_over_compute"] = result["serial_s"] / result["compute_only_s"]
    return result


class _CudaArray:
    """A device pointer dressed as ``__cuda_array_interface__`` so torch can wrap it without a copy."""

    def __init__(self, ptr, shape, dtype):
        self.__cuda_array_interface__ = {"data": (int(ptr), False), "shape": tuple(shape), "typestr": np.dtype(dtype).str, "version": 3}


def torch_executor(module, in_shape, out_shape, dtype=np.float32):
    """An ``execute`` for ``GpuPipeline`` that runs a CUDA torch module on the pipeline's compute
    stream (``torch.cuda.ExternalStream``), reading and writing the pipeline's device buffers."""
    import torch

    def execute(count, d_in, d_out, stream):
        with torch.cuda.stream(torch.cuda.ExternalStream(stream.raw)), torch.inference_mode():
            x = torch.as_tensor(_CudaArray(d_in, (count,) + tuple(in_shape), dtype), device="cuda")
            y = torch.as_tensor(_CudaArray(d_out, (count,) + tuple(out_shape), dtype), device="cuda")
            y.copy_(module(x))

    return execute
