"""torch backend: runs a checkpoint (.pt / .safetensors) directly, CPU or CUDA.

torch and the trainer's model code are imported in ``activate_impl`` only. Any tile size that is a
multiple of the model's ``size_multiple`` works (``tile`` is None), unless the model has a
``fixed_size``. On CUDA it runs fp16 by default (with the model's declared fp32 islands,
``trainer/models/precision.py``) and replays a CUDA graph captured for the (batch, tile) shape it
sees first (``CudaGraphModule``); smaller batches are padded up to that shape so the graph is
reused. A model that cannot be captured runs eagerly, with the reason in ``graph_fallback``.
(CUDA paths are written to the torch API but have not run on a GPU here.)
"""
import importlib.util

import numpy as np

from ..errors import BackendError
from .base import Backend, gpu_present


class TorchBackend(Backend):
    name = "torch"

    @classmethod
    def unavailable_reason(cls, model, device=None):
        if importlib.util.find_spec("torch") is None:
            return "torch is not installed (pip install 'restore[train]')"
        if model.checkpoint is None:
            return "the model has no checkpoint (.pt/.safetensors)"
        if device is not None and str(device).startswith("cuda") and not gpu_present():
            return "no CUDA GPU"
        return None

    @classmethod
    def uses_gpu(cls, model, device=None):
        if device is not None and str(device).startswith("cpu") or not gpu_present():
            return False
        import torch

        return torch.cuda.is_available()

    def activate_impl(self):
        import torch

        from restore.trainer.checkpoint import model_from_checkpoint
        from restore.trainer.models.deconv import takes_posterior
        from restore.trainer.models.precision import half_precision

        self._torch = torch
        want_cuda = self.device is None or str(self.device).startswith("cuda")
        if want_cuda and torch.cuda.is_available():
            self._device = torch.device(self.device or "cuda")
        elif self.device is not None and str(self.device).startswith("cuda"):
            raise BackendError("torch", f"device {self.device} requested but torch sees no CUDA GPU", "use --device cpu")
        else:
            self._device = torch.device("cpu")
        on_gpu = self._device.type == "cuda"
        fp16 = self.precision == "fp16" or (self.precision is None and on_gpu)
        if fp16 and not on_gpu:
            raise BackendError("torch", "fp16 on CPU is not supported", "use --precision fp32 or a GPU")
        self.precision = "fp16" if fp16 else "fp32"
        net = model_from_checkpoint(self.model.checkpoint)
        self.net = (half_precision(net) if fp16 else net).to(self._device).eval()
        self.dtype = np.dtype(np.float16 if fp16 else np.float32)
        self.in_channels, self.out_channels = net.in_channels, net.out_channels
        self.scale, self.size_multiple = net.scale, net.size_multiple
        self.tile = getattr(net, "fixed_size", None)
        self.max_batch = None
        self.takes_posterior = takes_posterior(net)
        # the picture's blur estimate: one buffer, which a captured CUDA graph reads on every replay
        self._posterior = torch.zeros(1, net.deconv.estimator.classify[-1].out_features, device=self._device) if self.takes_posterior else None
        self.graph = CudaGraphModule(torch, self.forward) if on_gpu else None
        self.description = f"torch ({self._device}, {'fp16' if fp16 else 'fp32'}, {self.model.checkpoint.name})"

    def infer_impl(self, batch, posterior):
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=self.dtype)).to(self._device)
            if posterior is not None:  # into the buffer the CUDA graph reads, or given to the model
                self._posterior.copy_(torch.from_numpy(np.ascontiguousarray(posterior, np.float32)))
            return (self.graph or self.forward)(x).float().cpu().numpy()

    def forward(self, x):
        """The model on a device batch (with the picture's estimate, for a model that takes one)."""
        return self.net(x, self._posterior) if self.takes_posterior else self.net(x)

    def estimate_impl(self, tiles):
        torch = self._torch
        with torch.inference_mode():
            return self.net.estimate(torch.from_numpy(np.ascontiguousarray(tiles, np.float32)).to(self._device)).float().cpu().numpy()

    @property
    def graph_fallback(self):
        """Why the model runs eagerly on CUDA (its graph capture failed), or None."""
        return self.graph.fallback if self.graph is not None else None

    def deactivate_impl(self):
        self.net = None
        self.graph = None


class CudaGraphModule:
    """``net`` replayed from one CUDA graph: captured on the first input's shape, reused for that
    shape and for smaller batches (padded up to it), captured again for any other shape. When a
    capture fails (an op of the model is not allowed while capturing), ``fallback`` says why and
    ``net`` runs eagerly from then on; a graph whose capture did not finish is never replayed.
    ``capture`` is ``capture_cuda_graph`` (another function of the same contract in tests)."""

    def __init__(self, torch, net, capture=None):
        self.torch, self.net = torch, net
        self.capture = capture or capture_cuda_graph
        self.fallback = None
        self._replay = None

    def __call__(self, x):
        """``net(x)`` for ``x`` on the device; a replayed result is a view of the graph's static
        output, valid until the next call."""
        if self.fallback is not None:
            return self.net(x)
        n = x.shape[0]
        if self._replay is None or x.shape[1:] != self._static_in.shape[1:] or n > self._static_in.shape[0]:
            self._replay = None
            static_in = self.torch.zeros_like(x)
            try:
                replay, static_out = self.capture(self.torch, self.net, static_in)
            except Exception as e:  # e.g. a host-to-device copy inside the model: not capturable
                self.fallback = f"CUDA graph capture failed, running eagerly: {type(e).__name__}: {e}"
                return self.net(x)
            self._replay, self._static_in, self._static_out = replay, static_in, static_out
        self._static_in[:n].copy_(x)
        self._replay()
        return self._static_out[:n]


def capture_cuda_graph(torch, net, static_in):
    """Capture ``net(static_in)`` as a CUDA graph; returns (replay, static output). The warm-up
    forwards run first on a side stream, as torch requires; they also make every constant the
    model caches (the deconvolution front end's matrices), so the capture itself copies nothing
    from the host."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            net(static_in)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = net(static_in)
    return graph.replay, static_out
