"""fp16 export decisions, from measurement rather than from a fixed list.

``activation_peaks`` runs the fp32 model over calibration inputs and records, per leaf module, the
largest |output|. A module whose peak is within a factor ``HEADROOM`` of fp16's largest finite
value (65504) would overflow, or come close, on inputs a little brighter or sharper than those
seen: it is kept fp32 in the fp16 graph (an fp32 island between Casts).

The Fourier bottleneck is judged by its spectrum, not its output: in the portable graph the DFT
matmuls hold sums over a whole plane (the DC bin is H*W times the plane's mean), so a
SpectralFilter's peak is the largest |Re| or |Im| of rfft2(x) and of G * rfft2(x). (The plugin
node computes in fp32 inside whatever its I/O type; only its planes are fp16.)
"""
import torch
from torch import nn

from restore.kernels.fourier_bottleneck.torch_op import sample_response
from restore.trainer.models import SpectralFilter

FP16_MAX = 65504.0
HEADROOM = 8.0


def activation_peaks(model, batches):
    """{module name: max |output|} over ``batches`` for every leaf module of ``model``."""
    peaks = {}

    def record(name):
        def hook(module, args, output):
            if isinstance(module, SpectralFilter):
                output = _spectral_intermediates(module, args[0])
            if torch.is_tensor(output):
                peak = float(output.detach().abs().max())
                peaks[name] = max(peaks.get(name, 0.0), peak)

        return hook

    leaves = [(n, m) for n, m in model.named_modules() if n and not any(True for _ in m.children())]
    hooks = [m.register_forward_hook(record(n)) for n, m in leaves]
    try:
        with torch.no_grad():
            for x in batches:
                model(torch.as_tensor(x))
    finally:
        for h in hooks:
            h.remove()
    return peaks


def _spectral_intermediates(spectral_filter, x):
    if spectral_filter.mode != "spectral":
        return x  # the portable graph computes abs(x): no transform
    spectrum = torch.fft.rfft2(x.float())
    filtered = spectrum * sample_response(spectral_filter.weight, *x.shape[-2:])
    return torch.cat([torch.view_as_real(spectrum).flatten(), torch.view_as_real(filtered).flatten()])


def overflowing_modules(peaks, headroom=HEADROOM):
    return sorted(name for name, peak in peaks.items() if peak * headroom > FP16_MAX)


class Fp32Island(nn.Module):
    """Runs the wrapped module in fp32 inside an fp16 network."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.float()).to(x.dtype)


def wrap_fp32_islands(net, names):
    """Wrap the named submodules of ``net`` in Fp32Island (in place)."""
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = net.get_submodule(parent_name)
        setattr(parent, child, Fp32Island(getattr(parent, child)))
