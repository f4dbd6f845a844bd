"""torch backend: runs a checkpoint (.pt / .safetensors) directly, CPU or CUDA.

torch and the trainer's model code are imported in ``activate_impl`` only. Any tile size that is a
multiple of the model's ``size_multiple`` works (``tile`` is None), unless the model has a
``fixed_size``. On CUDA it runs fp16 by default and replays a CUDA graph captured for the
(batch, tile) shape it sees first; smaller batches are padded up to that shape so the graph is
reused. (CUDA paths are written to the torch API but have not run on a GPU here.)
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
        net = model_from_checkpoint(self.model.checkpoint)
        self.net = net.to(self._device, dtype=torch.float16 if fp16 else torch.float32).eval()
        self.dtype = np.dtype(np.float16 if fp16 else np.float32)
        self.in_channels, self.out_channels = net.in_channels, net.out_channels
        self.scale, self.size_multiple = net.scale, net.size_multiple
        self.tile = getattr(net, "fixed_size", None)
        self.max_batch = None
        self._graph = None
        self._use_graphs = on_gpu
        self.description = f"torch ({self._device}, {'fp16' if fp16 else 'fp32'}, {self.model.checkpoint.name})"

    def infer_impl(self, batch):
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=self.dtype))
            if not self._use_graphs:
                return self.net(x.to(self._device)).float().cpu().numpy()
            return self._infer_graph(x)

    def _infer_graph(self, x):
        """Replay one captured CUDA graph; capture on the first batch (its shape is kept)."""
        torch = self._torch
        n = x.shape[0]
        if self._graph is None or x.shape[1:] != self._static_in.shape[1:] or n > self._static_in.shape[0]:
            self._capture(x.shape)
        self._static_in[:n].copy_(x, non_blocking=False)
        self._graph.replay()
        return self._static_out[:n].float().cpu().numpy()

    def _capture(self, shape):
        torch = self._torch
        self._static_in = torch.zeros(shape, dtype=self.net_dtype, device=self._device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up runs outside the graph, as torch requires
            for _ in range(2):
                self.net(self._static_in)
        torch.cuda.current_stream().wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._static_out = self.net(self._static_in)

    @property
    def net_dtype(self):
        return self._torch.float16 if self.dtype == np.float16 else self._torch.float32

    def deactivate_impl(self):
        self.net = None
        self._graph = None
