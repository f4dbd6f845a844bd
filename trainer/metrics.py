"""Image-quality metrics (PSNR, SSIM, MSE) in NumPy, so evaluation needs no torch.

SSIM follows Wang et al. 2004 as scikit-image computes it with ``gaussian_weights=True,
sigma=1.5, use_sample_covariance=False``: Gaussian window truncated at 3.5 sigma, reflected
borders, the mean taken over the map without a (window-1)/2 border, channels averaged.
"""
import numpy as np

_K1, _K2 = 0.01, 0.03
_SIGMA, _TRUNCATE = 1.5, 3.5
SSIM_MIN_SIZE = 2 * int(_TRUNCATE * _SIGMA + 0.5) + 1  # the Gaussian window's width


def mse(a, b):
    a, b = _pair(a, b)
    return float(np.mean((a - b) ** 2))


def psnr(a, b, data_range=None):
    """Peak signal-to-noise ratio in dB (inf for identical images)."""
    data_range = _data_range(a, data_range)
    err = mse(a, b)
    if err == 0:
        return float("inf")
    return float(10 * np.log10(data_range**2 / err))


def ssim(a, b, data_range=None):
    """Structural similarity of two HxW or HxWxC images (channels averaged)."""
    data_range = _data_range(a, data_range)
    x, y = _pair(a, b)
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    if x.ndim != 3:
        raise ValueError(f"ssim expects HxW or HxWxC images, got shape {np.shape(a)}")
    radius = SSIM_MIN_SIZE // 2
    if min(x.shape[:2]) < SSIM_MIN_SIZE:
        raise ValueError(f"ssim needs images of at least {SSIM_MIN_SIZE}x{SSIM_MIN_SIZE} pixels")
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / _SIGMA) ** 2)
    taps /= taps.sum()
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    scores = []
    for ch in range(x.shape[2]):
        xc, yc = x[..., ch], y[..., ch]
        mx, my = _gauss(xc, taps), _gauss(yc, taps)
        vx = _gauss(xc * xc, taps) - mx * mx
        vy = _gauss(yc * yc, taps) - my * my
        cxy = _gauss(xc * yc, taps) - mx * my
        smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        scores.append(smap[radius:-radius, radius:-radius].mean())
    return float(np.mean(scores))


def _gauss(plane, taps):
    """Separable Gaussian filter with half-sample symmetric borders (scipy's 'reflect')."""
    r = len(taps) // 2
    padded = np.pad(plane, r, mode="symmetric")
    h, w = plane.shape
    rows = sum(t * padded[i:i + h, :] for i, t in enumerate(taps))
    return sum(t * rows[:, i:i + w] for i, t in enumerate(taps))


def _pair(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return a.astype(np.float64), b.astype(np.float64)


def _data_range(img, data_range):
    if data_range is not None:
        return float(data_range)
    dtype = np.asarray(img).dtype
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return 1.0
