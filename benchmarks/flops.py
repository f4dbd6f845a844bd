"""Count a model's FLOPs and the bytes its layers must move, from one forward pass.

torch's own ``FlopCounterMode`` counts convolutions and matmuls but not FFTs, and the Fourier
bottleneck and DeepRFT's blocks are FFTs; so this counter intercepts aten ops itself
(a ``TorchDispatchMode``), which also catches functional calls that module hooks would miss.

Conventions:
- a multiply-add is 2 FLOPs; biases, normalisations and elementwise ops are not counted (they are
  memory-bound and fuse into their neighbours on an inference engine);
- an FFT of n points costs 5 n log2 n for complex input and output, half that for a real-to-complex
  or complex-to-real transform (the usual convention of FFT benchmarks);
- bytes moved is a lower bound: for every counted op, its activations read and written plus its
  weights, once; elementwise work between them is assumed fused, so it moves nothing extra.

The pass runs on the ``meta`` device: shapes and dtypes only, no arithmetic, so counting a 4K
frame through a large model costs milliseconds.
"""
import copy
import math
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


def _bytes(t):
    return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0


def _conv(args, out):
    x, weight, transposed = args[0], args[1], args[6]
    taps = weight.shape[1] * math.prod(weight.shape[2:])  # (in or out channels per group) x kernel
    # Forward conv: each output element is a dot product of `taps` terms. Transposed conv: each
    # input element is scattered into `taps` outputs.
    macs = (x.numel() if transposed else out.numel()) * taps
    return 2 * macs, _bytes(x) + _bytes(weight) + _bytes(out)


def _mm(args, out):
    a, b = args[-2], args[-1]
    return 2 * out.numel() * a.shape[-1], _bytes(a) + _bytes(b) + _bytes(out)


def _fft(args, out, per_point):
    x, dims = args[0], args[1]
    signal = out if x.is_complex() and not out.is_complex() else x  # c2r: the real side has n points
    n = math.prod(signal.shape[d] for d in dims)
    if n <= 1:
        return 0, _bytes(x) + _bytes(out)
    batch = signal.numel() // n
    return int(per_point * batch * n * math.log2(n)), _bytes(x) + _bytes(out)


_COUNTERS = {
    aten.convolution.default: _conv,
    aten.mm.default: _mm,
    aten.addmm.default: _mm,
    aten.bmm.default: _mm,
    aten.baddbmm.default: _mm,
    aten._fft_r2c.default: lambda a, o: _fft(a, o, 2.5),
    aten._fft_c2r.default: lambda a, o: _fft(a, o, 2.5),
    aten._fft_c2c.default: lambda a, o: _fft(a, o, 5.0),
}


@dataclass
class Count:
    flops: int = 0
    bytes_moved: int = 0
    by_op: dict = field(default_factory=dict)  # op name -> FLOPs

    def add(self, name, flops, nbytes):
        self.flops += flops
        self.bytes_moved += nbytes
        self.by_op[name] = self.by_op.get(name, 0) + flops


class FlopCounter(TorchDispatchMode):
    """``with FlopCounter() as c: model(x)`` then ``c.count.flops``, ``c.count.bytes_moved``."""

    def __init__(self):
        super().__init__()
        self.count = Count()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        counter = _COUNTERS.get(func)
        if counter is not None:
            flops, nbytes = counter(args, out)
            self.count.add(func.overloadpacket.__name__, flops, nbytes)
        return out


def count_model(model, shape, dtype=torch.float32, device="meta"):
    """FLOPs and bytes of one forward pass of ``model`` on an input of ``shape`` (N, C, H, W).

    The model is copied to ``device`` (default: meta, no arithmetic) in ``dtype``; the original is
    left untouched.
    """
    probe = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    x = torch.zeros(shape, dtype=dtype, device=device)
    with torch.no_grad(), FlopCounter() as counter:
        probe(x)
    return counter.count
