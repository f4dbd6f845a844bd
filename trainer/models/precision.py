"""Half-precision inference with fp32 islands: the one conversion every fp16 (or bf16) torch path
uses (the runtime's torch backend, the benchmarks' runner, the fp16 ONNX export).

A module declares that it needs fp32 with ``keep_fp32 = True`` (e.g. the deconvolution front end:
its DFT's DC bin is about 4 x the sum of a tile, past fp16's 65504 from 256 x 256 up, and its Wiener
filter divides by K^2 + lambda |D|^2, which fp16 cannot resolve). ``half_precision`` keeps such a module,
and any other named one, in fp32 between two casts: parameters and input fp32, output cast back.
"""
import copy

import torch
from torch import nn


def declared_fp32(model):
    """Names of the modules that say they need fp32 (``keep_fp32 = True``)."""
    return [name for name, m in model.named_modules() if name and getattr(m, "keep_fp32", False)]


class Fp32Island(nn.Module):
    """Runs the wrapped module in fp32 inside an fp16 network: float tensor inputs cast to fp32, tensor
    outputs (one, or a tuple) cast back to the first input's dtype."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x, *rest):
        rest = [r.float() if torch.is_tensor(r) and r.is_floating_point() else r for r in rest]
        out = self.inner(x.float(), *rest)
        return tuple(o.to(x.dtype) for o in out) if isinstance(out, tuple) else out.to(x.dtype)


def half_precision(model, islands=(), dtype=torch.float16):
    """A ``dtype`` (fp16 or bf16) copy of ``model`` (the original is left as it is) in which the
    declared fp32 modules and ``islands`` (module names) run in fp32. A name inside another island
    adds nothing."""
    net = copy.deepcopy(model)
    names = sorted(set(islands) | set(declared_fp32(net)))
    outermost = [n for n in names if not any(n.startswith(other + ".") for other in names)]
    for name in outermost:
        parent_name, _, child = name.rpartition(".")
        parent = net.get_submodule(parent_name)
        setattr(parent, child, Fp32Island(getattr(parent, child)))
    net.to(dtype)
    for module in net.modules():
        if isinstance(module, Fp32Island):
            module.float()
    return net
