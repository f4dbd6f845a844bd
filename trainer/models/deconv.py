"""Blind deconvolution front end for ``fourier-unet`` (``deconv: true``): estimate the blur
kernel from the image, then undo it with a regularised Wiener filter; the U-Net refines the result.

- ``KernelEstimator``: the power spectrum of a blurred image's gradients is close to the blur's
  |K|^2 times a flat floor (natural images' gradient spectra are roughly flat), so the kernel is
  read from it: Welch's averaged spectrum (64 x 64 Hann windows, half overlap) of the grey image's
  x and y differences, as a log image, goes through a small CNN to logits over ``kernel_bank()`` (a
  fixed set of point-symmetric PSFs: linear motion, Gaussian, defocus; bank 2 also the identity);
  the estimate is the softmax-weighted mean of the bank. The spectrum of several tiles of one
  picture is the mean of theirs, so the tiles can share one estimate (``DeconvFrontEnd.estimate``,
  exported as its own graph). Trained with the true kernels of the training pairs
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

KERNEL_SIZE = 31  # bank 1's and its training targets' support (a 27 px line fits)
WINDOW = 64  # Welch window of the spectrum estimate
SPECTRUM_FLOOR = 1e-10  # far below any textured window's gradient power (about 1e-2 .. 1e2)
BANKS = {1: 31, 2: 39}  # bank version -> kernel support (bank 2: a 35 px line fits)


def kernel_size(bank=1):
    return BANKS[bank]


@lru_cache(maxsize=2)
def kernel_bank(bank=1):
    """(N, size*size) float32, every kernel point-symmetric about the centre. Bank 1 (31 x 31):
    linear motion 3-27 px every 3 degrees, Gaussian sigma 0.5-3.5, defocus radius 1-4.5. Bank 2
    (39 x 39): bank 1's kernels in the same order (so a model trained on bank 1 grows into it:
    ``grow_classifier``), then motion 29-35 px, Gaussian sigma 3.75-5, defocus radius 4.75-8, and
    last the identity: "no blur", whose probability is how sure the estimator is that the picture
    is already sharp (``SHARP``)."""
    kernels = [linear_motion_kernel(length, angle) for length in range(3, 28) for angle in range(0, 180, 3)]
    kernels += [gaussian_kernel(s) for s in np.arange(0.5, 3.51, 0.125)]
    kernels += [defocus_kernel(r) for r in np.arange(1.0, 4.51, 0.25)]
    if bank == 2:
        kernels += [linear_motion_kernel(length, angle) for length in range(29, 36, 2) for angle in range(0, 180, 3)]
        kernels += [gaussian_kernel(s) for s in np.arange(3.75, 5.01, 0.25)]
        kernels += [defocus_kernel(r) for r in np.arange(4.75, 8.01, 0.25)]
        kernels += [np.ones((1, 1), np.float32)]
    return np.stack([centred_kernel(k, BANKS[bank]).ravel() for k in kernels])


SHARP = -1  # bank 2's last entry: the identity


def takes_posterior(model):
    """Whether ``model`` takes a picture's blur estimate beside each tile: ``forward(x, posterior)``
    with ``posterior`` from ``model.estimate`` (fourier-unet with its deconvolution front end)."""
    return getattr(model, "deconv", None) is not None and hasattr(model, "estimate")


def grow_classifier(state_dict, prefix, bank):
    """Weights of a bank-1 estimator (``prefix`` + "classify.3.weight"/".bias") grown to ``bank``'s
    rows: a new kernel starts as the old kernel nearest to it, 2 nats less likely, so the
    estimate barely moves at first; the identity starts 4 nats below its nearest (the model
    starts as it was, not backing off). Returns the state dict (changed in place)."""
    weight, bias = state_dict[prefix + "classify.3.weight"], state_dict[prefix + "classify.3.bias"]
    new = kernel_bank(bank)
    if len(weight) >= len(new):
        return state_dict
    old = torch.from_numpy(kernel_bank(1).reshape(-1, 31, 31))
    old = torch.from_numpy(np.stack([centred_kernel(k, BANKS[bank]) for k in old.numpy()])).flatten(1)
    if len(weight) != len(old):
        raise ValueError(f"{prefix}classify.3: {len(weight)} rows, neither bank 1's {len(old)} nor bank {bank}'s {len(new)}")
    added = torch.from_numpy(new[len(old):])
    nearest = torch.cdist(added, old).argmin(1)
    offset = torch.full((len(added),), -2.0)
    offset[SHARP] = -4.0
    state_dict[prefix + "classify.3.weight"] = torch.cat([weight, weight[nearest]])
    state_dict[prefix + "classify.3.bias"] = torch.cat([bias, bias[nearest] + offset.to(bias)])
    return state_dict


@torch.no_grad()
def seed_sharp_class(estimator, sharp):
    """Start the identity class of a grown bank where the estimator already is on sharp pictures:
    its classifier row becomes a copy of the row of the class it gives ``sharp`` (B, C, h, w, no
    blur) most probability, one nat less likely. From a row copied by kernel likeness (a Gaussian
    of sigma 0.5, which the bank-1 estimator gives sharp pictures e^-33) Adam's bounded steps
    would need far more steps than a stage has to find it. Returns that class's index."""
    layer = estimator.classify[-1]
    source = int(estimator(sharp).mean(0)[:SHARP].argmax())
    layer.weight[SHARP] = layer.weight[source]
    layer.bias[SHARP] = layer.bias[source] - 1.0
    return source


@lru_cache(maxsize=2)
def _bank_half(bank=1):
    """The bank as the model stores it: every kernel fits the inner (size - 2) square and is
    point-symmetric, so the first half of that square's pixels holds all of it (421 of 841 for
    bank 1): a 2.2x smaller constant in the exported graph. Returns the half (N, n) and the indices
    that rebuild the square."""
    size = BANKS[bank]
    inner = size - 2
    square = kernel_bank(bank).reshape(-1, size, size)
    core = square[:, 1:-1, 1:-1].reshape(len(square), -1)
    if square.sum((1, 2)).max() - core.sum(1).min() > 1e-6 or np.abs(core - core[:, ::-1]).max() > 1e-6:
        raise AssertionError(f"the kernel bank must fit {inner} x {inner} and be point-symmetric")
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


def kernel_response(kernel, freq_h, freq_w, phase=False):
    """Frequency response of kernels (B, k, k) at the given frequencies: its real part, which is
    all of it for point-symmetric kernels; ``phase``: (real, imaginary) for kernels of any shape."""
    offsets = torch.arange(kernel.shape[-1], device=kernel.device, dtype=kernel.dtype) - kernel.shape[-1] // 2
    ah, aw = 2 * math.pi * freq_h[:, None] * offsets, 2 * math.pi * freq_w[:, None] * offsets
    ch, sh, cw, sw = torch.cos(ah), torch.sin(ah), torch.cos(aw).T, torch.sin(aw).T
    real = ch @ kernel @ cw - sh @ kernel @ sw
    return (real, -(sh @ kernel @ cw + ch @ kernel @ sw)) if phase else real


def wiener(y, kernel, lams, phase=False):
    """Deblur ``y`` (B, C, H, W) with ``kernel`` (B, k, k) for each regulariser weight in ``lams``
    (L,): returns (B, L*C, H, W), one C-channel estimate per weight. The kernel is taken as
    point-symmetric (its response real) unless ``phase`` (any kernel: a curved shake path).

    The image is mirrored at its borders (as a blur with reflected borders sees it), so the DFT's
    circular convolution is the blur exactly for a point-symmetric kernel (near the borders only
    approximately for others); the mirroring, the phase it puts on the spectrum and the crop back
    are folded into the transform matrices (``_mirror_dft``): six real matrix products in all, ten
    with ``phase``."""
    fwd_h, cos_h, sin_h, fh = _tensors(_mirror_dft, y.shape[-2], False, like=y)
    fwd_w, cos_w, sin_w, fw = _tensors(_mirror_dft, y.shape[-1], True, like=y)
    real, imag = kernel_response(kernel, fh, fw, phase=True) if phase else (kernel_response(kernel, fh, fw), None)
    grad = (2 * torch.sin(math.pi * fh))[:, None] ** 2 + (2 * torch.sin(math.pi * fw))[None] ** 2
    power = real**2 if imag is None else real**2 + imag**2
    denominator = power[:, None] + lams[None, :, None, None] * grad  # (B, L, 2H, W+1)
    spectrum = (fwd_h @ y @ fwd_w.T)[:, None]  # (B, 1, C, 2H, W+1), real
    part = spectrum * (real[:, None] / denominator)[:, :, None]  # gain conj(K) / (|K|^2 + lambda |D|^2), per L
    out = cos_h @ part @ cos_w.T - sin_h @ part @ sin_w.T
    if imag is not None:
        part = spectrum * (-imag[:, None] / denominator)[:, :, None]
        out = out - sin_h @ part @ cos_w.T - cos_h @ part @ sin_w.T
    return out.flatten(1, 2)


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
    """Image -> posterior over ``kernel_bank(bank)`` (B, N), in two parts so that a picture's tiles
    can share one estimate: ``power`` (the Welch gradient spectrum of each image, a mean over its
    windows, so the mean over several tiles is the spectrum of them all) and ``posterior`` (that
    spectrum's log through the CNN, a softmax). ``kernel`` turns a posterior into its kernel."""

    def __init__(self, width=32, bank=1):
        super().__init__()
        widths = [1, width, width * 3 // 2, width * 2, width * 3, width * 4]
        layers = []
        for i, (a, b) in enumerate(zip(widths, widths[1:])):
            layers += [nn.Conv2d(a, b, 3, 1 if i == 0 else 2, 1), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)  # 64 -> 4 x 4
        self.bank = bank
        self.kernel_size = BANKS[bank]
        self.classify = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * 16, 256), nn.ReLU(inplace=True),
                                      nn.Linear(256, len(kernel_bank(bank))))
        self.logits = None  # the last training forward's logits, for ``loss.kernel``

    def power(self, y):
        """Welch power spectrum (B, 64, 64) of the grey image's x and y differences."""
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
        return power

    @staticmethod
    def spectrum(power):
        """The CNN's input (B, 1, 64, 64): the log power spectrum, less its mean.

        The floor is relative to the spectrum's own level, and absolute below that: a flat tile has
        no gradient power at all, and log(0) - mean(log(0)) would be NaN. A clamp, not "+ floor":
        the ONNX exporter's optimiser drops the addition of a constant that small. One bin is taken
        off before the mean (the same function): a flat tile's spectrum is then exactly 0 in every
        engine, where ONNX Runtime's mean of 4,096 copies of log(floor) left up to 1.2e-4 of
        rounding, which the CNN amplified into posteriors 1.2e-4 off torch's."""
        log = torch.log((power + 1e-3 * power.mean((-2, -1), keepdim=True)).clamp_min(SPECTRUM_FLOOR))
        log = log - log[..., :1, :1]
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

    def posterior(self, power):
        logits = self.classify(self.features(self.spectrum(power)))
        if self.training:
            self.logits = logits
        return logits.softmax(1)

    def kernel(self, posterior):
        """The posterior's mean kernel (B, size, size)."""
        half, mirror = _tensors(_bank_half, self.bank, like=posterior)
        inner = self.kernel_size - 2
        k = (posterior @ half)[:, mirror]
        return F.pad(k.reshape(-1, inner, inner), (1, 1, 1, 1))

    def forward(self, y):
        return self.posterior(self.power(y))

    def loss(self, kernels):
        """Cross-entropy of the last training forward's logits against the bank entry nearest to
        each true kernel (B, size, size); consumes the logits (the graph is not kept past the step)."""
        logits, self.logits = self.logits, None
        if logits is None:
            raise RuntimeError("KernelEstimator.loss needs a training-mode forward first")
        (bank,) = _tensors(kernel_bank, self.bank, like=logits)
        target = torch.cdist(kernels.flatten(1).to(bank), bank).argmin(1)
        return F.cross_entropy(logits, target)


class DeconvFrontEnd(nn.Module):
    """Kernel estimate + Wiener filter at ``len(lams)`` regulariser weights (learned, in log space):
    (B, 3, H, W) -> (B, 3 * len(lams), H, W), and the posterior over the bank it used (B, N).
    ``posterior``: one estimate given for every image (e.g. the whole frame's, shared by its tiles)
    instead of each image's own. ``kernel`` (1 or B, k, k): a kernel of any shape given instead of
    the posterior's mean (``runtime.kernel_estimate``); the posterior is still returned, for the
    backoff."""

    keep_fp32 = True  # the filter divides by K^2 + lambda |D|^2, which fp16 cannot resolve

    def __init__(self, lams=(0.01, 0.1), bank=1):
        super().__init__()
        self.estimator = KernelEstimator(bank=bank)
        self.log_lams = nn.Parameter(torch.log(torch.tensor(lams, dtype=torch.float32)))

    def estimate(self, tiles):
        """The posterior (1, N) of the picture ``tiles`` (T, C, h, w) come from: the CNN on their
        mean spectrum (each tile's is a mean over its windows, so this is the Welch spectrum of
        them all). In fp32, whatever the tiles' dtype, as the rest of this module."""
        if torch.amp.is_autocast_available(tiles.device.type) and torch.is_autocast_enabled(tiles.device.type):
            with torch.autocast(tiles.device.type, enabled=False):
                return self.estimate(tiles)
        return self.estimator.posterior(self.estimator.power(tiles.float()).mean(0, keepdim=True))

    def forward(self, y, posterior=None, kernel=None):
        # Mixed-precision training: this part stays fp32 (meta tensors, used to count FLOPs, have no autocast).
        if torch.amp.is_autocast_available(y.device.type) and torch.is_autocast_enabled(y.device.type):
            with torch.autocast(y.device.type, enabled=False):
                return self(y.float(), *(None if t is None else t.float() for t in (posterior, kernel)))
        if posterior is None:
            posterior = self.estimator(y)
        if kernel is not None:
            return wiener(y, kernel.to(y), self.log_lams.exp(), phase=True), posterior
        # a shared (1, N) posterior gives one kernel, broadcast over the batch by the filter
        return wiener(y, self.estimator.kernel(posterior), self.log_lams.exp()), posterior
