"""Blind deconvolution front end for ``fourier-unet`` (``deconv: true``): estimate the blur
kernel from the image, then undo it with a regularised Wiener filter; the U-Net refines the result.

- ``KernelEstimator``: the power spectrum of a blurred image's gradients is close to the blur's
  |K|^2 times a flat floor (natural images' gradient spectra are roughly flat), so the kernel is
  read from it: Welch's averaged spectrum (64 x 64 Hann windows, half overlap) of the grey image's
  x and y differences, as a log image, goes through a small CNN to logits over ``kernel_bank()`` (a
  fixed set of point-symmetric PSFs: linear motion, Gaussian, defocus); the estimate is the
  softmax-weighted mean of the bank. Trained with the true kernels of the training pairs
  (``loss.kernel``) and, through the filter, by the restoration loss.
- ``wiener``: x = K Y / (K^2 + lambda |D|^2) with D the image gradient (K is real: every bank
  kernel is point-symmetric), on the DFT of the image mirrored at its borders, which is how a blur
  with reflected borders sees it, so there is no edge ringing from a wrapped-around border.

Everything is matrix products against fixed matrices of the image size, so the same code traces
to plain ONNX ops (MatMul, Mul, Div, Softmax, Conv) for a fixed tile.
"""
import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..degradations import centred_kernel, defocus_kernel, gaussian_kernel, linear_motion_kernel

KERNEL_SIZE = 31  # the bank's and the training targets' support (a 27 px line fits)
WINDOW = 64  # Welch window of the spectrum estimate
SPECTRUM_FLOOR = 1e-10  # far below any textured window's gradient power (about 1e-2 .. 1e2)


@lru_cache(maxsize=1)
def kernel_bank():
    """(N, 31*31) float32: linear motion 3-27 px every 3 degrees, Gaussian sigma 0.5-3.5,
    defocus radius 1-4.5; every kernel point-symmetric about the centre."""
    kernels = [linear_motion_kernel(length, angle) for length in range(3, 28) for angle in range(0, 180, 3)]
    kernels += [gaussian_kernel(s) for s in np.arange(0.5, 3.51, 0.125)]
    kernels += [defocus_kernel(r) for r in np.arange(1.0, 4.51, 0.25)]
    return np.stack([centred_kernel(k, KERNEL_SIZE).ravel() for k in kernels])


@lru_cache(maxsize=1)
def _bank_half():
    """The bank as the model stores it: every kernel fits the inner 29 x 29 and is point-symmetric,
    so the first half of that square's pixels (421 of 841) holds all of it: a 2.2x smaller constant
    in the exported graph. Returns the half (N, 421) and the indices (841,) that rebuild the square."""
    inner = KERNEL_SIZE - 2
    square = kernel_bank().reshape(-1, KERNEL_SIZE, KERNEL_SIZE)
    core = square[:, 1:-1, 1:-1].reshape(len(square), -1)
    if square.sum((1, 2)).max() - core.sum(1).min() > 1e-6 or np.abs(core - core[:, ::-1]).max() > 1e-6:
        raise AssertionError("the kernel bank must fit 29 x 29 and be point-symmetric")
    n = inner * inner // 2 + 1
    return np.ascontiguousarray(core[:, :n]), np.concatenate([np.arange(n), np.arange(n - 2, -1, -1)])


@lru_cache(maxsize=16)
def _mirror_dft(n, half=False):
    """The DFT of a length-n signal mirrored at its end (length 2n: x, then x reversed) and its
    inverse cropped back to the first n samples, as real matrices.

    The mirrored signal's DFT is e^(i pi u / 2n) D[u] with D[u] = 2 sum_t x[t] cos(pi u (2t+1) / 2n)
    real, so one real matrix ``forward`` (bins, n) gives D; the inverse of e^(i pi u / 2n) P[u],
    cropped, is ``inv_cos`` @ P - (imaginary part) with ``inv_sin`` (n, bins). ``half``: the bins
    0..n of a real signal's half spectrum (rfft) instead of all 2n, the inverse counting each
    bin but DC and Nyquist twice for its mirrored twin. Also returns the bins' frequencies in
    cycles per pixel."""
    bins = np.arange(n + 1 if half else 2 * n)
    angle = np.pi * np.outer(bins, 2 * np.arange(n) + 1) / (2 * n)  # (bins, n)
    weight = np.ones(len(bins)) / (2 * n)
    if half:
        weight[1:-1] *= 2
    forward, inv_cos, inv_sin = 2 * np.cos(angle), (np.cos(angle) * weight[:, None]).T, (np.sin(angle) * weight[:, None]).T
    return [m.astype(np.float32) for m in (forward, inv_cos, inv_sin, bins / (2.0 * n))]


def kernel_response(kernel, freq_h, freq_w):
    """Real frequency response of point-symmetric kernels (B, k, k) at the given frequencies."""
    offsets = torch.arange(kernel.shape[-1], device=kernel.device, dtype=kernel.dtype) - kernel.shape[-1] // 2
    ah, aw = 2 * math.pi * freq_h[:, None] * offsets, 2 * math.pi * freq_w[:, None] * offsets
    return torch.cos(ah) @ kernel @ torch.cos(aw).T - torch.sin(ah) @ kernel @ torch.sin(aw).T


def wiener(y, kernel, lams):
    """Deblur ``y`` (B, C, H, W) with point-symmetric ``kernel`` (B, k, k) for each regulariser
    weight in ``lams`` (L,): returns (B, L*C, H, W), one C-channel estimate per weight.

    The image is mirrored at its borders (as a blur with reflected borders sees it), so the DFT's
    circular convolution is the blur exactly; the mirroring, the phase it puts on the spectrum and
    the crop back are folded into the transform matrices (``_mirror_dft``): six real matrix
    products in all."""
    fwd_h, cos_h, sin_h, fh = _tensors(_mirror_dft, y.shape[-2], False, like=y)
    fwd_w, cos_w, sin_w, fw = _tensors(_mirror_dft, y.shape[-1], True, like=y)
    k = kernel_response(kernel, fh, fw)  # (B, 2H, W+1), real
    grad = (2 * torch.sin(math.pi * fh))[:, None] ** 2 + (2 * torch.sin(math.pi * fw))[None] ** 2
    gain = k[:, None] / (k[:, None] ** 2 + lams[None, :, None, None] * grad)  # (B, L, 2H, W+1)
    spectrum = (fwd_h @ y @ fwd_w.T)[:, None] * gain[:, :, None]  # (B, L, C, 2H, W+1)
    return (cos_h @ spectrum @ cos_w.T - sin_h @ spectrum @ sin_w.T).flatten(1, 2)


@lru_cache(maxsize=1)
def _window_dft():
    """Real and imaginary parts' matrices of the 64-point DFT with the zero frequency in the
    middle row (frequencies -32..31), and the 2-D Hann taper."""
    n = np.arange(WINDOW)
    angle = 2 * np.pi * np.outer(n - WINDOW // 2, n) / WINDOW
    taper = np.hanning(WINDOW)
    return [m.astype(np.float32) for m in (np.cos(angle), np.sin(angle), np.outer(taper, taper))]


def _tensors(make, *args, like):
    """The arrays ``make(*args)`` returns (one of the constant makers above) as tensors on
    ``like``'s device, floats in its dtype, made once per device and dtype: re-uploading them every
    forward cost 150-290 MB of host-to-device copies per 4K frame, and a copy inside a CUDA graph
    capture is not allowed (the graph's warm-up forwards fill this cache first). Never buffers:
    their sizes follow the image, an fp16 model's fp32 island keeps them exact, and the checkpoint
    stays small. A traced forward (export's fake tensors) makes them per call, as constants of the
    graph, so nothing traced lands in the cache."""
    if type(like) is not torch.Tensor:
        return _as_tensors(make(*args), like.device, like.dtype)
    return _device_constants(make, args, like.device, like.dtype)


@lru_cache(maxsize=32)
def _device_constants(make, args, device, dtype):
    # Made outside inference_mode even when the first forward runs under it: an inference tensor
    # could not take part in a later training step or export.
    with torch.inference_mode(False), torch.no_grad():
        return _as_tensors(make(*args), device, dtype)


def _as_tensors(arrays, device, dtype):
    arrays = [arrays] if isinstance(arrays, np.ndarray) else arrays
    return [torch.from_numpy(a).to(device, dtype if a.dtype.kind == "f" else None) for a in arrays]


class KernelEstimator(nn.Module):
    def __init__(self, width=32):
        super().__init__()
        widths = [1, width, width * 3 // 2, width * 2, width * 3, width * 4]
        layers = []
        for i, (a, b) in enumerate(zip(widths, widths[1:])):
            layers += [nn.Conv2d(a, b, 3, 1 if i == 0 else 2, 1), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)  # 64 -> 4 x 4
        self.classify = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * 16, 256), nn.ReLU(inplace=True),
                                      nn.Linear(256, len(kernel_bank())))
        self.logits = None  # the last training forward's logits, for ``loss.kernel``

    def spectrum(self, y):
        """Log Welch power spectrum (B, 1, 64, 64) of the grey image's x and y differences."""
        g = y.mean(1, keepdim=True)
        if min(g.shape[-2:]) < WINDOW:
            g = F.pad(g, (0, max(0, WINDOW - g.shape[-1]), 0, max(0, WINDOW - g.shape[-2])), mode="replicate")
        dx = F.pad(g[..., :, 1:] - g[..., :, :-1], (0, 1))
        dy = F.pad(g[..., 1:, :] - g[..., :-1, :], (0, 0, 0, 1))
        power = 0
        c, s, taper = _tensors(_window_dft, like=y)
        for d in (dx, dy):
            w = self._windows(d)
            w = (w - w.mean((-2, -1), keepdim=True)) * taper
            re = c @ w @ c.T - s @ w @ s.T
            im = s @ w @ c.T + c @ w @ s.T
            power = power + (re**2 + im**2).mean(1)
        # The floor is relative to the spectrum's own level, and absolute below that: a flat tile has
        # no gradient power at all, and log(0) - mean(log(0)) would be NaN. A clamp, not "+ floor":
        # the ONNX exporter's optimiser drops the addition of a constant that small.
        log = torch.log((power + 1e-3 * power.mean((-2, -1), keepdim=True)).clamp_min(SPECTRUM_FLOOR))
        return (log - log.mean((-2, -1), keepdim=True))[:, None]

    @staticmethod
    def _windows(d):
        """All 64 x 64 windows at a step of 32, as (B, N, 64, 64): four grids of whole windows."""
        b, _, h, w = d.shape
        grids = []
        for oy in (0, WINDOW // 2):
            for ox in (0, WINDOW // 2):
                ny, nx = (h - oy) // WINDOW, (w - ox) // WINDOW
                if ny and nx:
                    t = d[:, 0, oy:oy + ny * WINDOW, ox:ox + nx * WINDOW]
                    grids.append(t.reshape(b, ny, WINDOW, nx, WINDOW).transpose(2, 3).reshape(b, ny * nx, WINDOW, WINDOW))
        return torch.cat(grids, 1)

    def forward(self, y):
        logits = self.classify(self.features(self.spectrum(y)))
        if self.training:
            self.logits = logits
        half, mirror = _tensors(_bank_half, like=logits)
        inner = KERNEL_SIZE - 2
        k = (logits.softmax(1) @ half)[:, mirror]
        return F.pad(k.reshape(-1, inner, inner), (1, 1, 1, 1))

    def loss(self, kernels):
        """Cross-entropy of the last training forward's logits against the bank entry nearest to
        each true kernel (B, 31, 31); consumes the logits (the graph is not kept past the step)."""
        logits, self.logits = self.logits, None
        if logits is None:
            raise RuntimeError("KernelEstimator.loss needs a training-mode forward first")
        (bank,) = _tensors(kernel_bank, like=logits)
        target = torch.cdist(kernels.flatten(1).to(bank), bank).argmin(1)
        return F.cross_entropy(logits, target)


class DeconvFrontEnd(nn.Module):
    """Kernel estimate + Wiener filter at ``len(lams)`` regulariser weights (learned, in log space):
    (B, 3, H, W) -> (B, 3 * len(lams), H, W)."""

    keep_fp32 = True  # the filter divides by K^2 + lambda |D|^2, which fp16 cannot resolve

    def __init__(self, lams=(0.01, 0.1)):
        super().__init__()
        self.estimator = KernelEstimator()
        self.log_lams = nn.Parameter(torch.log(torch.tensor(lams, dtype=torch.float32)))

    def forward(self, y):
        # Mixed-precision training: this part stays fp32 (meta tensors, used to count FLOPs, have no autocast).
        if torch.amp.is_autocast_available(y.device.type) and torch.is_autocast_enabled(y.device.type):
            with torch.autocast(y.device.type, enabled=False):
                return self(y.float())
        return wiener(y, self.estimator(y), self.log_lams.exp())
