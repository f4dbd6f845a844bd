"""The one interface every inference backend implements (ONNX Runtime, torch, TensorRT).

Lifecycle as in Polygraphy: construct (cheap, no heavy import), ``activate()`` (load the model,
create sessions/contexts, fill in the geometry properties), ``infer()`` any number of times,
``deactivate()``; or use the backend as a context manager. Heavy modules (torch, tensorrt, cuda)
are imported inside ``activate_impl`` only.

Tensors crossing the interface are host NumPy arrays, NCHW, values in the model's normalised
range. ``infer`` takes a batch of ``dtype`` with ``H == W == tile`` when ``tile`` is set (a
multiple of ``size_multiple`` otherwise) and ``N <= max_batch``, and returns float32 or float16
``(N, out_channels, H*scale, W*scale)``.

``infer_stream`` is the hook for pipelined backends: the tiler hands it an iterator of batches and
consumes the outputs in the same order. The default runs them one by one; a GPU backend overrides
it to upload batch t+1 and download batch t-1 while batch t computes (it may read ahead a few
batches; the tiler produces them lazily, so memory stays bounded by that look-ahead).
"""
import glob
import os

import numpy as np

from ..errors import BackendError


def physical_cores():
    """Physical cores this process may run on (hyper-threads counted once): the thread count
    that keeps CPU inference fastest, as sibling threads compete for the same FMA units."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list") as f:
                cores.add(f.read().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def cpu_streams(cores):
    """Concurrent inference streams for a CPU backend on ``cores`` cores: one per tile of the
    tilers' usual batch of 4, at most one per core. Independent tiles side by side scale better
    than one tile spread over every core (measured in benchmarks/README.md)."""
    return max(1, min(cores, 4))


def gpu_present():
    """Cheap check for an NVIDIA GPU (device nodes), so ``auto`` need not import torch to learn
    that there is none."""
    return os.path.exists("/dev/nvidiactl") or bool(glob.glob("/dev/nvidia[0-9]*"))


class Backend:
    name = "base"

    def __init__(self, model, device=None, precision=None):
        """``model``: a ``ModelSource`` (runtime/artifact.py); ``device``: "cpu", "cuda" or
        "cuda:N" (None = the backend's best); ``precision``: "fp32", "fp16" or None (backend's
        best for the device)."""
        self.model = model
        self.device = device
        self.precision = precision
        self.is_active = False
        # Geometry, set by activate_impl from the model file (not from trainer code).
        self.tile = None  # fixed H == W the model accepts, or None for any multiple of size_multiple
        self.size_multiple = 1
        self.max_batch = None  # None = no limit
        self.dtype = np.dtype(np.float32)  # what infer() wants as input
        self.scale = 1
        self.in_channels = 3
        self.out_channels = 3
        self.description = self.name  # e.g. "onnxruntime (CPUExecutionProvider)", shown to users

    # --- what a backend implements -------------------------------------------------------------
    @classmethod
    def unavailable_reason(cls, model, device=None):
        """None if this backend can run ``model`` here, else a short reason (shown by ``auto``).
        Must be cheap: no session creation, at most an import."""
        raise NotImplementedError

    @classmethod
    def uses_gpu(cls, model, device=None):
        """Whether this backend would run on a GPU here (``auto`` prefers GPU backends)."""
        return False

    def activate_impl(self):
        raise NotImplementedError

    def infer_impl(self, batch):
        raise NotImplementedError

    def deactivate_impl(self):
        pass

    # --- the shared lifecycle --------------------------------------------------------------------
    def activate(self):
        if not self.is_active:
            self.activate_impl()
            self.is_active = True
        return self

    def deactivate(self):
        if self.is_active:
            self.is_active = False
            self.deactivate_impl()

    def infer(self, batch):
        if not self.is_active:
            raise BackendError(self.name, "infer() called before activate()", "use the backend as a context manager")
        return self.infer_impl(batch)

    def infer_stream(self, batches):
        for batch in batches:
            yield self.infer(batch)

    def __enter__(self):
        return self.activate()

    def __exit__(self, *exc):
        self.deactivate()

    def __del__(self):
        try:
            self.deactivate()
        except Exception:  # interpreter shutdown: modules may already be gone
            pass

    def __repr__(self):
        return f"<{type(self).__name__} {self.description} active={self.is_active}>"
