"""fp16 export decisions, from measurement rather than from a fixed list.

``activation_peaks`` runs the fp32 model over calibration inputs and records every module's
largest |output|. A value within a factor ``HEADROOM`` of fp16's largest finite value (65504)
would overflow, or come close, on inputs a little brighter or sharper than those seen. Keeping
only the module that produces it in fp32 is not enough (its output is cast back to fp16 and
overflows there), so ``fp32_islands`` keeps the smallest enclosing module whose *output* is back
in range: e.g. a whole FourierBottleneck (proj_in -> filter -> relu -> proj_out + input) when
the values inside it are large. Islands run in fp32 between two Casts
(``trainer/models/precision.py``, the conversion every fp16 torch path uses).

The Fourier bottleneck is judged by its spectrum too: in the portable graph the DFT matmuls hold
sums over a whole plane (the DC bin is H*W times the plane's mean), so a SpectralFilter also
records the largest |Re| or |Im| of rfft2(x) and G * rfft2(x), under "<name>:spectrum". (The
plugin node computes in fp32 inside whatever its I/O type; only its planes are fp16.)
"""
import torch

from restore.kernels.fourier_bottleneck.torch_op import sample_response
from restore.runtime.errors import ConfigError
from restore.trainer.models import SpectralFilter

FP16_MAX = 65504.0
HEADROOM = 8.0


def activation_peaks(model, batches):
    """{module name: max |output|} over ``batches`` for every module of ``model`` ("" is the
    model itself), plus "<name>:spectrum" for each SpectralFilter."""
    peaks = {}

    def keep(key, value):
        for v in value if isinstance(value, tuple) else (value,):
            if torch.is_tensor(v):
                peaks[key] = max(peaks.get(key, 0.0), float(v.detach().abs().max()))

    def record(name):
        def hook(module, args, output):
            keep(name, output)
            if isinstance(module, SpectralFilter):
                keep(f"{name}:spectrum", _spectral_intermediates(module, args[0]))

        return hook

    hooks = [m.register_forward_hook(record(n)) for n, m in model.named_modules()]
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


def fp32_islands(peaks, headroom=HEADROOM, declared=()):
    """Names of the modules to keep fp32: the ``declared`` ones and, for each value over the limit,
    the nearest module (itself or an ancestor) whose output is within it. Raises ConfigError when
    only the whole model would do (its output cannot be fp16)."""
    limit = FP16_MAX / headroom
    islands = set(declared)
    for key, peak in peaks.items():
        if peak <= limit:
            continue
        name = key.split(":")[0]
        while peaks.get(name, 0.0) > limit and name:
            name = name.rpartition(".")[0]
        if not name:
            raise ConfigError("--fp16", f"the model's values reach {peak:.3g} at {key or 'its output'}, too close to fp16's 65504",
                              "export without --fp16")
        islands.add(name)
    return sorted(n for n in islands if not any(n.startswith(other + ".") for other in islands))
