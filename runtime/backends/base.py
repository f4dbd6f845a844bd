"""The one interface every inference backend implements (ONNX Runtime, torch, TensorRT).

Lifecycle as in Polygraphy: construct (cheap, no heavy import), ``activate()`` (load the model,
create sessions/contexts, fill in the geometry properties), ``infer()`` any number of times,
``deactivate()``; or use the backend as a context manager. Heavy modules (torch, tensorrt, cuda)
are imported inside ``activate_impl`` only.

Tensors crossing the interface are host NumPy arrays, NCHW, values in the model's normalised
range. ``infer`` takes a batch of ``dtype`` with ``H == W == tile`` when ``tile`` is set (a
multiple of ``size_multiple`` otherwise) and ``N <= max_batch``, and returns float32 or float16
``(N, out_channels, H*scale, W*scale)``.

A model with a blur estimate of the whole picture (metadata "estimate": fourier-unet's front end)
takes it as a second input, "posterior" (1, K) float32, the same for every tile of one picture:
``takes_posterior`` says so, ``estimate(tiles)`` makes it from some of the picture's tiles (the
estimator graph, once per picture; on ONNX Runtime's CPU unless a backend runs it itself), and
``infer``/``infer_stream`` take it with the batches.

``infer_stream`` is the hook for pipelined backends: the tiler hands it an iterator of batches and
consumes the outputs in the same order. The default runs them one by one; a GPU backend overrides
it to upload batch t+1 and download batch t-1 while batch t computes (it may read ahead a few
batches; the tiler produces them lazily, so memory stays bounded by that look-ahead).
"""
import glob
import os

import numpy as np

from ..errors import BackendError, ModelError


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
    precisions = ("fp32", "fp16")  # what ``precision`` may ask of it (checked by backends._probe)

    def __init__(self, model, device=None, precision=None):
        """``model``: a ``ModelSource`` (runtime/artifact.py); ``device``: "cpu", "cuda" or
        "cuda:N" (None = the backend's best); ``precision``: one of ``precisions`` or None
        (the backend's best for the device; once active, ``precision`` is what it runs)."""
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
        self.takes_posterior = False  # the graph's second input: the picture's blur estimate
        self.description = self.name  # e.g. "onnxruntime (CPUExecutionProvider)", shown to users
        self._estimator = None

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

    def infer_impl(self, batch, posterior):
        raise NotImplementedError

    def estimate_impl(self, tiles):
        """The estimator graph on ONNX Runtime's CPU provider (a few tiles once per picture)."""
        return self._estimator_session().run(None, {"tiles": np.ascontiguousarray(tiles, np.float32)})[0]

    def _estimator_session(self):
        if self._estimator is None:
            import onnxruntime as ort

            if self.model.estimator is None:
                raise ModelError(self.model.name, "takes a blur estimate but has no estimator graph (files.estimator_onnx)",
                                 "re-export it with restore-export, keeping estimator.onnx beside model.onnx")
            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.intra_op_num_threads = physical_cores()
            try:
                self._estimator = ort.InferenceSession(str(self.model.estimator), options, providers=["CPUExecutionProvider"])
            except Exception as e:
                first = str(e).strip().splitlines()[0][:200]
                raise ModelError(self.model.estimator, f"ONNX Runtime cannot load this estimator graph ({first})", "re-export it with restore-export") from None
        return self._estimator

    def deactivate_impl(self):
        pass

    # --- the shared lifecycle --------------------------------------------------------------------
    def activate(self):
        if not self.is_active:
            self.activate_impl()
            if self.takes_posterior and type(self).estimate_impl is Backend.estimate_impl:
                try:  # a missing or broken estimator graph is found on open, not at the first picture
                    self._estimator_session()
                except BaseException:
                    self.deactivate_impl()
                    raise
            self.is_active = True
        return self

    def deactivate(self):
        if self.is_active:
            self.is_active = False
            self._estimator = None
            self.deactivate_impl()

    def infer(self, batch, posterior=None):
        """Outputs for ``batch``; ``posterior``: the picture's estimate, for a model that takes one."""
        if not self.is_active:
            raise BackendError(self.name, "infer() called before activate()", "use the backend as a context manager")
        return self.infer_impl(batch, self._given(posterior))

    def _given(self, posterior):
        """``posterior`` for a model that takes one (refused when missing), else None."""
        if not self.takes_posterior:
            return None
        if posterior is None:
            raise BackendError(self.name, "this model needs the picture's blur estimate", "pass posterior=backend.estimate(tiles), or use a Tiler")
        return posterior

    def infer_stream(self, batches, posterior=None):
        for batch in batches:
            yield self.infer(batch, posterior)

    def estimate(self, tiles):
        """The blur estimate (1, K) float32 of the picture ``tiles`` (T, C, tile, tile) come from."""
        if not self.is_active:
            raise BackendError(self.name, "estimate() called before activate()", "use the backend as a context manager")
        return np.asarray(self.estimate_impl(tiles), np.float32).reshape(1, -1)

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
