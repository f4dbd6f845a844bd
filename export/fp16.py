"""fp16 export decisions, from measurement rather than from a fixed list.

``activation_peaks`` runs the fp32 model over calibration inputs and records, per leaf module, the
largest |output|. A module whose peak is within a factor ``HEADROOM`` of fp16's largest finite
value (65504) would overflow, or come close, on inputs a little brighter or sharper than those
seen: it is kept fp32 in the fp16 graph (an fp32 island between Casts). The Fourier bottleneck
is always an fp32 island (export/spectral.py: its stand-ins compute in fp32) because its sums
over a whole plane reach (H*W) times the input magnitude; the fp16 PSNR with and without that
island is in export/README.md.
"""
import torch
from torch import nn

FP16_MAX = 65504.0
HEADROOM = 8.0


def activation_peaks(model, batches):
    """{module name: max |output|} over ``batches`` for every leaf module of ``model``."""
    peaks = {}

    def record(name):
        def hook(module, args, output):
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
