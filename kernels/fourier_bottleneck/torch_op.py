"""torch binding of the Fourier bottleneck op (see reference.py for the contract).

``fourier_bottleneck`` is differentiable (torch.fft); the fused CUDA kernel, when built, serves
inference on CUDA tensors.
"""
import torch

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


def fourier_bottleneck(x, weight=None, mode="spectral"):
    """y = irfft2(G * rfft2(x)) (mode "spectral") or abs(ifft2(fft2(x))) (mode "gir"), computed in
    fp32 and returned in x's dtype."""
    if mode not in MODES:
        raise ValueError(f"unknown Fourier bottleneck mode {mode!r}; expected one of {MODES}")
    xf = x.float()
    if mode == "gir":
        return torch.fft.ifft2(torch.fft.fft2(xf)).abs().to(x.dtype)
    h, w = x.shape[-2:]
    g = sample_response(weight, h, w)
    return torch.fft.irfft2(torch.fft.rfft2(xf) * g, s=(h, w)).to(x.dtype)
