"""Blind deconvolution front end for ``fourier-unet`` (``deconv: true``): estimate the blur
kernel from the image, then undo it with a regularised Wiener filter; the U-Net refines the result.

- ``KernelEstimator``: the power spectrum of a blurred image's gradients is close to the blur's
  |K|^2 times a flat floor (natural images' gradient spectra are roughly flat), so the kernel is
  read from it: Welch's averaged spectrum (64 x 64 Hann windows, half overlap) of the grey image's
  x and y differences, as a log image, goes through a small CNN to logits over ``KernelBank`` (a
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


@lru_cache(maxsize=1)
def kernel_bank():
    """(N, 31*31) float32: linear motion 3-27 px every 3 degrees, Gaussian sigma 0.5-3.5,
    defocus radius 1-4.5; every kernel point-symmetric about the centre."""
    kernels = [linear_motion_kernel(length, angle) for length in range(3, 28) for angle in range(0, 180, 3)]
    kernels += [gaussian_kernel(s) for s in np.arange(0.5, 3.51, 0.125)]
    kernels += [defocus_kernel(r) for r in np.arange(1.0, 4.51, 0.25)]
    return np.stack([centred_kernel(k, KERNEL_SIZE).ravel() for k in kernels])


@lru_cache(maxsize=16)
def _mirror_dft(n, half=False):
    """The DFT of a length-n signal mirrored at its end (length 2n: x, then x reversed), as real
    matrices (bins, n) for the real and imaginary parts, its inverse cropped back to the first n
    samples, (n, bins) each, and the bins' frequencies in cycles per pixel. ``half``: the bins of
    a real signal's half spectrum (0..n, for rfft) instead of all 2n; the inverse counts each bin
    but DC and Nyquist twice for its mirrored twin."""
    bins = np.arange(n + 1 if half else 2 * n)
    t = np.arange(n)
    angle = 2 * np.pi * np.outer(bins, t) / (2 * n)
    mirrored = 2 * np.pi * np.outer(bins, 2 * n - 1 - t) / (2 * n)
    fwd_re, fwd_im = np.cos(angle) + np.cos(mirrored), -np.sin(angle) - np.sin(mirrored)
    weight = np.ones(len(bins)) / (2 * n)
    if half:
        weight[1:-1] *= 2
    inv_re, inv_im = (np.cos(angle) * weight[:, None]).T, (np.sin(angle) * weight[:, None]).T
    return [m.astype(np.float32) for m in (fwd_re, fwd_im, inv_re, inv_im, bins / (2.0 * n))]


@lru_cache(maxsize=1)
def _window_dft():
    """Real and imaginary parts' matrices of the 64-point DFT with the zero frequency in the
    middle row (frequencies -32..31), and the 2-D Hann taper."""
    n = np.arange(WINDOW)
    angle = 2 * np.pi * np.outer(n - WINDOW // 2, n) / WINDOW
    taper = np.hanning(WINDOW)
    return [m.astype(np.float32) for m in (np.cos(angle), np.sin(angle), np.outer(taper, taper))]


def _tensors(arrays, like):
    """Constant arrays as tensors of ``like``'s device and dtype (made per call, never buffers:
    an fp16 export's fp32 island keeps them exact, and the checkpoint stays small)."""
    return [torch.from_numpy(a).to(like.device, like.dtype) for a in arrays]


def kernel_response(kernel, freq_h, freq_w):
    """Real frequency response of point-symmetric kernels (B, k, k) at the given frequencies."""
    offsets = torch.arange(kernel.shape[-1], device=kernel.device, dtype=kernel.dtype) - kernel.shape[-1] // 2
    ah, aw = 2 * math.pi * freq_h[:, None] * offsets, 2 * math.pi * freq_w[:, None] * offsets
    return torch.cos(ah) @ kernel @ torch.cos(aw).T - torch.sin(ah) @ kernel @ torch.sin(aw).T


def wiener(y, kernel, lams):
    """Deblur ``y`` (B, C, H, W) with point-symmetric ``kernel`` (B, k, k) for each regulariser
    weight in ``lams`` (L,): returns (B, L*C, H, W), one C-channel estimate per weight.

    The image is mirrored at its borders (as a blur with reflected borders sees it), so the DFT's
    circular convolution is the blur exactly; the mirroring and the crop back are folded into the
    DFT matrices, which makes the whole filter matrix products."""
    h_re, h_im, hi_re, hi_im, fh = _tensors(_mirror_dft(y.shape[-2]), y)
    w_re, w_im, wi_re, wi_im, fw = _tensors(_mirror_dft(y.shape[-1], half=True), y)
    k = kernel_response(kernel, fh, fw)  # (B, 2H, W+1), real
    grad = (2 * torch.sin(math.pi * fh))[:, None] ** 2 + (2 * torch.sin(math.pi * fw))[None] ** 2
    gain = (k[:, None] / (k[:, None] ** 2 + lams[None, :, None, None] * grad))[:, :, None]  # (B, L, 1, 2H, W+1)
    a, b = h_re @ y, h_im @ y  # along H: (B, C, 2H, W) each
    z_re = (a @ w_re.T - b @ w_im.T)[:, None] * gain
    z_im = (a @ w_im.T + b @ w_re.T)[:, None] * gain
    # back along W (real part of the half-spectrum inverse), then along H, cropped to H x W
    r = z_re @ wi_re.T - z_im @ wi_im.T
    i = z_re @ wi_im.T + z_im @ wi_re.T
    return (hi_re @ r - hi_im @ i).flatten(1, 2)


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
        c, s, taper = _tensors(_window_dft(), y)
        for d in (dx, dy):
            w = self._windows(d)
            w = (w - w.mean((-2, -1), keepdim=True)) * taper
            re = c @ w @ c.T - s @ w @ s.T
            im = s @ w @ c.T + c @ w @ s.T
            power = power + (re**2 + im**2).mean(1)
        log = torch.log(power + 1e-3 * power.mean((-2, -1), keepdim=True))
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
        bank = _tensors([kernel_bank()], logits)[0]
        return (logits.softmax(1) @ bank).reshape(-1, KERNEL_SIZE, KERNEL_SIZE)

    def loss(self, kernels):
        """Cross-entropy of the last training forward's logits against the bank entry nearest to
        each true kernel (B, 31, 31)."""
        bank = _tensors([kernel_bank()], self.logits)[0]
        target = torch.cdist(kernels.flatten(1).to(bank), bank).argmin(1)
        return F.cross_entropy(self.logits, target)


class DeconvFrontEnd(nn.Module):
    """Kernel estimate + Wiener filter at ``len(lams)`` regulariser weights (learned, in log space):
    (B, 3, H, W) -> (B, 3 * len(lams), H, W)."""

    keep_fp32 = True  # the filter divides by K^2 + lambda |D|^2, which fp16 cannot resolve

    def __init__(self, lams=(0.01, 0.1)):
        super().__init__()
        self.estimator = KernelEstimator()
        self.log_lams = nn.Parameter(torch.log(torch.tensor(lams, dtype=torch.float32)))

    def forward(self, y):
        if torch.is_autocast_enabled(y.device.type):  # mixed-precision training: this part stays fp32
            with torch.autocast(y.device.type, enabled=False):
                return self(y.float())
        return wiener(y, self.estimator(y), self.log_lams.exp())
