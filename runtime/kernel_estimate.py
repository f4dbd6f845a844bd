"""Blind estimate of a blur kernel of any shape, its phase included (curved camera shake).

The shipped model reads the blur off the picture's power spectrum, which holds |K| and not the
phase: it can only pick point-symmetric kernels, and a curved shake path is not one
(benchmarks/shake_kernels.py: the best point-symmetric kernel undoes 2.4 dB of a shake the true
kernel undoes 7.0 dB of). This estimate works in the picture itself, coarse to fine in the manner
of Cho & Lee ("Fast motion deblurring", SIGGRAPH Asia 2009); at each scale it alternates

1. *edges*: the current sharp estimate, smoothed and shock-filtered, and only its strongest
   gradients kept (fewer with every round), so the kernel is fitted where the picture says most;
2. *kernel*: the least-squares kernel that blurs those gradients into the picture's own (one
   division in the Fourier domain, Tikhonov-damped), cut to its support, its non-negative part
   connected to the peak, normalised and centred on its mass;
3. *picture*: the blurred picture deconvolved with it (``deconvolve``).

Two numbers say how much to trust it. ``concentration``, the kernel's mass in its brightest 5% of
pixels: on pictures with few strong edges (smooth, low-contrast) the estimate comes out as diffuse
noise. ``agreement``, how alike (``similarity``) the kernels of the picture's top and bottom halves
are, and of its left and right halves (the worse pair): a camera shake blurs the whole picture
alike, so two estimates from different content should agree; an estimate that fell into a wrong
answer (a point, noise) depends on the content.

Not yet used by ``restore run``: the measurement of what it would bring is
``python -m restore.benchmarks.shake_kernels`` (issue 16).
"""
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .blur import to_gray

SIZE = 39  # kernel support: a 35 px path fits, as in the model's kernel bank 2
LEVELS = 4  # scales, a factor of 2 apart
ROUNDS = 7  # edge / kernel / picture rounds per scale
KEEP = (0.10, 0.85, 0.02)  # fraction of the strongest gradients kept: first, decay per round, least
DAMPING = 5e-3  # Tikhonov weight of the kernel step, relative to the mean edge power
BALANCE = 2e-3  # gradient weight of the picture step
CUT = 1 / 20  # kernel values below this fraction of the peak are dropped
TOP = 0.05  # ``concentration``: the kernel mass in this fraction of its pixels
# ``trusted`` from this concentration and agreement up: where the model given the kernel gained on
# each of the training pictures' shake crops (python -m restore.benchmarks.shake_kernels --pictures train)
TRUST = (0.5, 0.6)


@dataclass
class KernelEstimate:
    kernel: np.ndarray  # (SIZE, SIZE) float64, non-negative, sums to 1; convolve to blur
    concentration: float  # mass in the brightest TOP of its pixels: near 1 compact, low when diffuse
    agreement: float | None = None  # the halves' kernels' ``similarity`` (the worse pair), 0..1

    @property
    def trusted(self):
        """The kernel is likely right: not that the picture is blurred (a sharp picture's kernel is
        a trusted point), which the model's backoff decides."""
        return self.agreement is not None and self.concentration >= TRUST[0] and self.agreement >= TRUST[1]


def estimate_kernel(image, size=SIZE, agreement=True):
    """The blur kernel of ``image`` (HxW[xC], any dtype ``to_gray`` takes), ``size`` x ``size``
    (odd); a picture at least 2 * size on a side (``agreement``: 4 * size, as each half is
    estimated too; a smaller one gets ``agreement`` None)."""
    grey = to_gray(image).astype(np.float64)
    if size % 2 == 0 or min(grey.shape) < 2 * size:
        raise ValueError(f"a {size} px kernel needs an odd size and a picture of at least {2 * size} px a side")
    kernel = _estimate(grey, size)
    top = np.sort(kernel.ravel())[::-1][:max(1, round(TOP * kernel.size))]
    estimate = KernelEstimate(kernel, float(top.sum()))
    if agreement and min(grey.shape) >= 4 * size:
        h, w = (n // 2 for n in grey.shape)
        pairs = ((grey[:h], grey[h:]), (grey[:, :w], grey[:, w:]))
        estimate.agreement = min(similarity(_estimate(a, size), _estimate(b, size)) for a, b in pairs)
    return estimate


def similarity(a, b):
    """How alike two kernels (same size) are: their largest normalised correlation over all
    shifts (where a blur sits is not observable), 1 for the same shape."""
    shape = (2 * a.shape[0],) * 2
    spectrum = np.fft.rfft2(a, shape) * np.conj(np.fft.rfft2(b, shape))
    return float(np.fft.irfft2(spectrum, shape).max() / np.linalg.norm(a) / np.linalg.norm(b))


def sparsity(image, kernel, balance=0.01):
    """How sparse the gradients of ``image`` deconvolved by ``kernel`` are: their normalised
    L1/L2 ratio (Krishnan, Tay & Fergus, CVPR 2011), lower for a sharper, more natural picture. A
    wrong kernel leaves ringing and doubled edges, which spread the gradients and raise it. 0 for
    a flat picture (no gradient above round-off)."""
    x = deconvolve(to_gray(image).astype(np.float64), kernel, balance)
    g = np.concatenate([np.diff(x, axis=0).ravel(), np.diff(x, axis=1).ravel()])
    rms = np.sqrt((g**2).mean())
    return float(np.abs(g).mean() / rms) if rms > 1e-9 else 0.0


def _estimate(grey, size):
    sharp = None  # the sharp estimate, carried from each scale to the next
    for level in range(LEVELS - 1, -1, -1):
        scale = 0.5**level
        side = max(5, round(size * scale) | 1)
        blurred = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if level else grey
        # the first edges are the blurred picture's own
        sharp = blurred if sharp is None else cv2.resize(sharp, blurred.shape[::-1], interpolation=cv2.INTER_LINEAR)
        fit = _KernelFit(blurred, side)
        for done in range((LEVELS - 1 - level) * ROUNDS, (LEVELS - level) * ROUNDS):
            first, decay, least = KEEP
            kernel = fit(_edges(sharp), max(least, first * decay**done))
            sharp = deconvolve(blurred, kernel, BALANCE)
    return kernel


def deconvolve(image, kernel, balance):
    """``image`` (HxW[xC]) deconvolved by ``kernel`` (any shape, odd square): x = K* Y / (|K|^2 +
    ``balance`` |D|^2) with D the gradient, on the picture reflected at its borders by a kernel's
    width (so its own border does not ring). Float64, the input's shape."""
    pad = kernel.shape[0]
    padded = cv2.copyMakeBorder(np.asarray(image, np.float64), pad, pad, pad, pad, cv2.BORDER_REFLECT)
    shape = padded.shape[:2]
    k = _otf(kernel, shape)
    gain = np.conj(k) / (np.abs(k) ** 2 + balance * _gradient_power(shape))
    planes = padded.reshape(*shape, -1)
    out = np.stack([np.fft.irfft2(np.fft.rfft2(planes[..., c]) * gain, shape) for c in range(planes.shape[2])], -1)
    return out[pad:-pad, pad:-pad].reshape(np.shape(image))


class _KernelFit:
    """The kernel step at one scale: the blurred picture's gradients, tapered at the borders (the
    Fourier domain wraps around), are fixed; each call fits a kernel to new edges."""

    def __init__(self, blurred, side):
        self.side, self.shape = side, blurred.shape
        self.taper = np.outer(*(_taper(n, max(4, side)) for n in blurred.shape))
        self.derivatives = _derivatives(self.shape)
        self.targets = [np.fft.rfft2(self.taper * np.fft.irfft2(d * np.fft.rfft2(blurred), self.shape))
                        for d in self.derivatives]

    def __call__(self, sharp, keep):
        gradients = [np.fft.irfft2(d * np.fft.rfft2(sharp), self.shape) for d in self.derivatives]
        magnitude = np.hypot(*gradients)
        strong = magnitude >= np.quantile(magnitude, 1 - keep)
        edges = [np.fft.rfft2(self.taper * g * strong) for g in gradients]
        power = sum(np.abs(e) ** 2 for e in edges)
        if not power.any():  # a flat picture: nothing says it is blurred
            return _identity(self.side)
        fitted = sum(np.conj(e) * t for e, t in zip(edges, self.targets)) / (power + DAMPING * power.mean())
        kernel = np.roll(np.fft.irfft2(fitted, self.shape), (self.side // 2,) * 2, (0, 1))[:self.side, :self.side]
        return _clean(kernel)


def _clean(kernel):
    """Non-negative, only the part connected to the strongest piece, normalised, centred on its
    mass; the identity where nothing positive is left."""
    kernel = np.maximum(kernel, 0)
    if not kernel.max() > 0:
        return _identity(kernel.shape[0])
    kernel[kernel < CUT * kernel.max()] = 0
    count, labels = cv2.connectedComponents((kernel > 0).astype(np.uint8), connectivity=8)
    if count > 2:
        masses = np.bincount(labels.ravel(), kernel.ravel())
        masses[0] = 0
        kernel[labels != masses.argmax()] = 0
    kernel /= kernel.sum()
    side = kernel.shape[0]
    centre = [(kernel.sum(axis) * np.arange(side)).sum() for axis in (1, 0)]
    return np.roll(kernel, [round(side // 2 - c) for c in centre], (0, 1))


def _identity(side):
    kernel = np.zeros((side, side))
    kernel[side // 2, side // 2] = 1
    return kernel


def _edges(sharp, steps=3, dt=0.5):
    """Smoothed (Gaussian, sigma 1 px), then shock-filtered (Osher & Rudin): edges steepened, flat parts left flat."""
    x = cv2.GaussianBlur(sharp, (0, 0), 1.0)
    for _ in range(steps):
        gy, gx = np.gradient(x)
        x = x - dt * np.sign(cv2.Laplacian(x, cv2.CV_64F)) * np.hypot(gx, gy)
    return x


def _otf(kernel, shape):
    """The kernel's transfer function on ``shape`` (rfft2 half plane), its centre at the origin."""
    padded = np.zeros(shape)
    padded[:kernel.shape[0], :kernel.shape[1]] = kernel
    return np.fft.rfft2(np.roll(padded, (-(kernel.shape[0] // 2), -(kernel.shape[1] // 2)), (0, 1)))


def _derivatives(shape):
    """Transfer functions of the forward differences in x and y."""
    return [_otf(np.array(d, np.float64), shape) for d in ([[0, 0, 0], [0, -1, 1], [0, 0, 0]],
                                                          [[0, 0, 0], [0, -1, 0], [0, 1, 0]])]


@lru_cache(maxsize=8)
def _gradient_power(shape):
    """|D|^2 on ``shape``: the same for every round of a scale, so made once (read-only)."""
    return sum(np.abs(d) ** 2 for d in _derivatives(shape))


def _taper(n, margin):
    """1 in the middle, falling to 0 at both ends over ``margin`` samples (sin^2)."""
    ramp = np.sin(np.linspace(0, np.pi / 2, margin)) ** 2
    weights = np.ones(n)
    weights[:margin], weights[-margin:] = ramp, ramp[::-1]
    return weights
