"""torch binding of the Fourier bottleneck op (see reference.py for the contract).

``fourier_bottleneck`` is differentiable (torch.fft); the fused CUDA kernel, when built, serves
inference on CUDA tensors through the custom op ``torch.ops.restore.fourier_bottleneck``, whose
CPU implementation and autograd formula are the torch.fft path.
"""
import contextlib
from typing import Optional

import torch

from . import library
from .reference import MODES


def _interp_matrix(coords, k):
    pos = coords * (k - 1)
    lo = pos.floor().clamp(0, k - 2)
    frac = pos - lo
    lo = lo.long()
    m = torch.zeros(len(coords), k, dtype=coords.dtype, device=coords.device)
    idx = torch.arange(len(coords), device=coords.device)
    m[idx, lo] = 1.0 - frac
    m[idx, lo + 1] = frac
    return m


def sample_response(weight, height, width):
    """Complex (C, H, W//2+1) response from the (C, K, K, 2) control grid (differentiable)."""
    dev = weight.device
    fy = torch.fft.fftfreq(height, device=dev, dtype=torch.float32) + 0.5
    fx = torch.arange(width // 2 + 1, device=dev, dtype=torch.float32) / width * 2.0
    my = _interp_matrix(fy, weight.shape[1])
    mx = _interp_matrix(fx, weight.shape[2])
    w = weight.float()
    re = torch.einsum("hk,ckl,wl->chw", my, w[..., 0], mx)
    im = torch.einsum("hk,ckl,wl->chw", my, w[..., 1], mx)
    return torch.complex(re, im)


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"unknown Fourier bottleneck mode {mode!r}; expected one of {MODES}")


def _no_autocast(device_type):
    """AMP off (it would make the response's einsums fp16/bf16); nothing to do on devices that have
    no autocast (meta tensors, used for FLOP counting)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def fourier_bottleneck_fft(x, weight=None, mode="spectral"):
    """The torch.fft implementation: differentiable, any device, fp32 inside, x's dtype out."""
    _check_mode(mode)
    xf = x.float()
    with _no_autocast(x.device.type):
        if mode == "gir":
            return torch.fft.ifft2(torch.fft.fft2(xf)).abs().to(x.dtype)
        h, w = x.shape[-2:]
        g = sample_response(weight, h, w)
        return torch.fft.irfft2(torch.fft.rfft2(xf) * g, s=(h, w)).to(x.dtype)


def _needs_grad(x, weight):
    return torch.is_grad_enabled() and (x.requires_grad or (weight is not None and weight.requires_grad))


def fused_kernel_available():
    return library.is_built() and torch.cuda.is_available()


def fourier_bottleneck(x, weight=None, mode="spectral"):
    """y = irfft2(G * rfft2(x)) (mode "spectral") or abs(ifft2(fft2(x))) (mode "gir"), computed in
    fp32 and returned in x's dtype: the fused CUDA kernel for CUDA inputs when it is built and no
    gradient is needed, torch.fft otherwise."""
    _check_mode(mode)
    if x.is_cuda and x.dtype in _KERNEL_DTYPES and not _needs_grad(x, weight) and library.is_built():
        return torch.ops.restore.fourier_bottleneck(x, weight if mode == "spectral" else None, mode)
    return fourier_bottleneck_fft(x, weight, mode)


_KERNEL_DTYPES = {torch.float32: "float32", torch.float16: "float16"}


@torch.library.custom_op("restore::fourier_bottleneck", mutates_args=())
def fourier_bottleneck_op(x: torch.Tensor, weight: Optional[torch.Tensor], mode: str) -> torch.Tensor:
    """The op as registered with torch; this body (CPU and other devices) is the torch.fft path."""
    return fourier_bottleneck_fft(x, weight, mode)


@fourier_bottleneck_op.register_kernel("cuda")
def _fourier_bottleneck_cuda(x, weight, mode):
    _check_mode(mode)
    if x.dtype not in _KERNEL_DTYPES or not library.is_built():
        return fourier_bottleneck_fft(x, weight, mode)
    if x.dim() != 4:
        raise ValueError(f"Fourier bottleneck input must be (N, C, H, W), got shape {tuple(x.shape)}")
    x = x.contiguous()
    if x.data_ptr() % 16:  # a view into its storage; the kernel moves 16 bytes at a time
        x = x.clone()
    grid = None
    if mode == "spectral":
        if weight is None or weight.dim() != 4 or weight.shape[0] != x.shape[1] or weight.shape[3] != 2:
            raise ValueError(f"Fourier bottleneck weight must be (C={x.shape[1]}, K, K, 2), got "
                             f"{None if weight is None else tuple(weight.shape)}")
        weight = weight.to(device=x.device, dtype=torch.float32).contiguous()
        grid = tuple(weight.shape[1:3])
    plan = library.launch_plan(tuple(x.shape), grid, mode, _KERNEL_DTYPES[x.dtype])
    y = torch.empty_like(x)
    workspace = torch.empty(max(plan.workspace_bytes, 1), dtype=torch.uint8, device=x.device)
    with torch.cuda.device(x.device):
        stream = torch.cuda.current_stream(x.device).cuda_stream
        library.launch(plan, x.data_ptr(), weight.data_ptr() if grid else 0, y.data_ptr(), workspace.data_ptr(),
                       stream)
    return y


@fourier_bottleneck_op.register_fake
def _fourier_bottleneck_fake(x, weight, mode):
    return torch.empty_like(x)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(inputs[0], inputs[1])
    ctx.mode = inputs[2]


def _backward(ctx, grad):
    # The op is linear in x (spectral) or elementwise-after-linear (gir); torch.fft's own autograd
    # gives the exact vector-Jacobian product.
    x, weight = ctx.saved_tensors
    primals = (x, weight) if weight is not None else (x,)

    def forward(*args):
        return fourier_bottleneck_fft(args[0], args[1] if len(args) > 1 else None, ctx.mode)

    _, vjp = torch.func.vjp(forward, *primals)
    grads = vjp(grad)
    return grads[0], (grads[1] if weight is not None else None), None


fourier_bottleneck_op.register_autograd(_backward, setup_context=_setup_context)
