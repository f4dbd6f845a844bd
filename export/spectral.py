"""Export-only stand-ins for ``SpectralFilter`` (the Fourier bottleneck op).

The exporter swaps every ``SpectralFilter`` of a model for one of these before tracing:

- ``MatmulSpectralFilter``: the op with real matrix products against DFT matrices of the fixed
  plane size and the response sampled onto that plane's frequency grid. Standard ONNX ops only
  (MatMul, Slice, Mul, Add, Sub, Concat), so ONNX Runtime and TensorRT-RTX (whose parser rejects
  ONNX DFT) both take it. Chosen over ONNX DFT by measurement (export/README.md).
- ``DftSpectralFilter``: the same with torch.fft, exported as ONNX DFT; kept for that measurement.
- ``PluginSpectralFilter``: one ``restore::FourierBottleneck`` node (export/plugin_op.py).

Each returns its input's dtype. In an fp16 export the MatMul stand-in runs in fp16 unless the
measured spectrum peak puts it in an fp32 island (export/fp16.py); the plugin node takes fp16
planes with its fp32 weight and computes in fp32 inside.
"""
import numpy as np
import torch
from torch import nn

from restore.kernels.fourier_bottleneck.reference import interp_matrices, sample_response
from restore.trainer.models import SpectralFilter

from .plugin_op import fourier_bottleneck_node


def _dft_matrices(height, width):
    """Real matrices of the separable rfft2 / irfft2 of an (height, width) plane.

    forward_w (W, 2F): x @ forward_w = [Re | Im] of the rfft along W (F = W//2 + 1 bins).
    forward_h (2H, H): [cos; -sin] of the full DFT along H, applied to Re and Im (see _complex_left).
    inverse_h (2H, H): [cos; sin] / H, the inverse DFT along H.
    inverse_w (2F, W): [Re; Im] rows of the inverse rfft along W (each bin but DC and Nyquist
    counts twice for its mirrored twin; the imaginary parts of DC and Nyquist drop out as sin=0).
    """
    n_h, n_w = np.arange(height), np.arange(width)
    bins = np.arange(width // 2 + 1)
    ang_w = 2 * np.pi * np.outer(n_w, bins) / width  # (W, F)
    ang_h = 2 * np.pi * np.outer(n_h, n_h) / height  # (H, H)
    twice = np.full(len(bins), 2.0)
    twice[0] = 1.0
    if width % 2 == 0:
        twice[-1] = 1.0
    inv_w = twice[:, None] / width
    return {
        "forward_w": np.concatenate([np.cos(ang_w), -np.sin(ang_w)], axis=1),
        "forward_h": np.concatenate([np.cos(ang_h), -np.sin(ang_h)], axis=0),
        "inverse_h": np.concatenate([np.cos(ang_h), np.sin(ang_h)], axis=0) / height,
        "inverse_w": np.concatenate([inv_w * np.cos(ang_w.T), -inv_w * np.sin(ang_w.T)], axis=0),
    }


def _complex_left(stacked, z, height, bins):
    """(A + iB) @ Z for Z = [Re | Im] along the last axis and stacked = [A; B]: one MatMul, then
    the four quarter blocks combine into the real and imaginary parts."""
    p = torch.matmul(stacked, z)
    a_re, a_im = p[..., :height, :bins], p[..., :height, bins:]
    b_re, b_im = p[..., height:, :bins], p[..., height:, bins:]
    return a_re - b_im, a_im + b_re


class MatmulSpectralFilter(nn.Module):
    def __init__(self, spectral_filter, height, width):
        super().__init__()
        self.mode, self.height, self.bins = spectral_filter.mode, height, width // 2 + 1
        if self.mode == "spectral":
            for name, m in _dft_matrices(height, width).items():
                self.register_buffer(name, torch.from_numpy(m).float())
            # The response is sampled from the (C, K, K) control grid in the graph (two small
            # MatMuls), not stored per bin: (C, H, W//2+1) values would be most of the file.
            weight = spectral_filter.weight.detach().cpu().float()
            my, mx = interp_matrices(weight.shape[1], weight.shape[2], height, width)
            self.register_buffer("interp_h", torch.from_numpy(my).float())
            self.register_buffer("interp_w", torch.from_numpy(mx.T).float().contiguous())
            self.register_buffer("grid", weight.permute(3, 0, 1, 2).contiguous())  # (2, C, K, K)

    def forward(self, x):
        if self.mode == "gir":
            # abs(ifft2(fft2(x))) is abs(x): the DFT round trip is the identity, so the exact
            # value needs no transform (the torch op differs from it by FFT rounding only).
            return x.abs()
        xf = x.to(self.forward_w.dtype)
        re, im = _complex_left(self.forward_h, torch.matmul(xf, self.forward_w), self.height, self.bins)
        g_re, g_im = torch.matmul(torch.matmul(self.interp_h, self.grid), self.interp_w).unbind(0)
        z = torch.cat([g_re * re - g_im * im, g_re * im + g_im * re], dim=-1)
        re, im = _complex_left(self.inverse_h, z, self.height, self.bins)
        return torch.matmul(torch.cat([re, im], dim=-1), self.inverse_w).to(x.dtype)


class DftSpectralFilter(nn.Module):
    def __init__(self, spectral_filter, height, width):
        super().__init__()
        self.mode, self.size = spectral_filter.mode, (height, width)
        if self.mode == "spectral":
            g = sample_response(spectral_filter.weight.detach().cpu().numpy(), height, width)
            self.register_buffer("response_re", torch.from_numpy(g.real).float())
            self.register_buffer("response_im", torch.from_numpy(g.imag).float())

    def forward(self, x):
        xf = x.float()  # torch.fft has no fp16 on CPU
        if self.mode == "gir":
            return torch.fft.ifft2(torch.fft.fft2(xf)).abs().to(x.dtype)
        g = torch.complex(self.response_re, self.response_im)
        return torch.fft.irfft2(torch.fft.rfft2(xf) * g, s=self.size).to(x.dtype)


class PluginSpectralFilter(nn.Module):
    def __init__(self, spectral_filter, height=None, width=None):
        super().__init__()
        self.mode = spectral_filter.mode
        weight = spectral_filter.weight
        if weight is None:
            # mode "gir" ignores the weight; the node keeps its (C, K, K, 2) input all the same.
            channels = spectral_filter.probed_shape[1]
            weight = torch.zeros(channels, spectral_filter.grid, spectral_filter.grid, 2)
        self.register_buffer("weight", weight.detach().float().clone())

    def forward(self, x):
        # x goes in as it is: the plugin takes fp32 or fp16 planes (and computes in fp32), so an
        # fp16 engine reads and writes each plane once, in fp16. Only the weight stays fp32.
        return fourier_bottleneck_node(x, self.weight, self.mode)


FP32_MODULES = (DftSpectralFilter, PluginSpectralFilter)  # their buffers stay fp32 in fp16 exports
VARIANTS = {"matmul": MatmulSpectralFilter, "dft": DftSpectralFilter, "plugin": PluginSpectralFilter}


def probe_plane_shapes(model, tile, in_channels):
    """Run the model once at the tile size and record each SpectralFilter's input shape."""
    filters = [m for m in model.modules() if isinstance(m, SpectralFilter)]
    hooks = [f.register_forward_pre_hook(_record_shape) for f in filters]
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, tile, tile))
    finally:
        for h in hooks:
            h.remove()
    return len(filters)


def _record_shape(module, args):
    module.probed_shape = tuple(args[0].shape)


def swap_spectral_filters(model, variant):
    """Replace, in place, every probed SpectralFilter by the export stand-in ``variant``; returns
    how many were replaced."""
    cls = VARIANTS[variant]
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, SpectralFilter):
                _, _, height, width = child.probed_shape
                setattr(parent, name, cls(child, height, width))
                count += 1
    return count
