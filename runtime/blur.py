"""Blur analysis without a network: where an image is blurred (GIR step 1) and how (step 2).

Everything here reads the power spectrum of windowed patches:

* **Sharpness** of a patch is, per direction, the ratio of high-frequency (0.2-0.45 cycles/px) to
  low-frequency (0.03-0.12) power, in log10, computed in 12 angular wedges. A sharp patch has
  detail in every direction; blur removes the high band, motion blur in one direction only, so
  a patch's sharpness is its *worst* direction.
* **Flat** patches (little power above the lowest frequencies: sky, walls, paper) carry no
  evidence either way and are never called blurred.
* **Motion** blur by a line of length L multiplies the spectrum by a sinc along the motion
  direction, whose zeros repeat every 1/L. In the cepstrum (inverse FFT of the log spectrum)
  that periodic comb becomes a sharp negative peak at distance L in the motion direction;
  Gaussian or defocus blur and natural image content are smooth, so they leave none. The log
  spectrum is whitened first by removing its mean over each radius (isotropic blur vanishes
  there). The peak's position gives the angle and the length.

Thresholds were set on crops of scikit-image's bundled images blurred with known kernels
(tests/runtime/test_blur.py measures the accuracy on a fresh seeded set).
"""
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .pixels import unit_float

# Sharpness (log10 HF/LF power ratio in the worst direction) at or below which an image is
# blurred (spectrum averaged over up to 64 windows of 128 px) ...
SHARP_THRESHOLD = -2.7
# ... and at or below which a single 64 px tile is: one window is noisier, so the bar is lower
# (measured: 98% of motion/Gaussian-blurred tiles and 15% of sharp ones, mostly intrinsically
# smooth content, fall below it; calling a sharp tile blurred only costs a restore pass).
TILE_SHARP_THRESHOLD = -3.2
# If the worst direction is blurred but the best one still has this much detail and there is no
# motion signature, the patch is taken as sharp with oriented content (bricks, text lines).
ORIENTED_DETAIL = -2.0
# ... as long as its worst direction is not as bare as a blurred one's (motion: mostly below).
ORIENTED_WORST = -3.5
# Patches whose RMS detail (above ~0.03 cycles/px, noise removed) is below this are flat (1.3/255).
FLAT_RMS = 0.005
# Robust z-score of the cepstral dip above which a motion blur is reported.
MOTION_Z = 13.5

_WEDGES = 12
_HIGH_BAND, _LOW_BAND = (0.2, 0.45), (0.03, 0.12)
_DETAIL_CUTOFF = 0.03
_MIN_MOTION_PX = 7  # shorter blurs are not told apart from general blur
_NOISE_MARGIN = 1.5
_EPS = 1e-12


@dataclass
class BlurMap:
    """Per-tile blur evidence. Arrays have one entry per tile (rows x cols); tile (i, j) covers
    rows ``ys[i]:ys[i]+tile`` and columns ``xs[j]:xs[j]+tile`` (edge tiles are shifted inwards)."""

    tile: int
    ys: np.ndarray
    xs: np.ndarray
    sharpness: np.ndarray  # worst-direction log10 HF/LF ratio; higher = sharper
    best_sharpness: np.ndarray  # best-direction ratio
    detail: np.ndarray  # RMS of the patch above the lowest frequencies
    flat: np.ndarray  # bool: too little texture to judge
    blurred: np.ndarray  # bool: not flat and not sharp
    threshold: float = TILE_SHARP_THRESHOLD
    noise_sigma: float = 0.0

    @property
    def shape(self):
        return self.flat.shape

    @property
    def blurred_fraction(self):
        """Fraction of the non-flat tiles that are blurred (0 when everything is flat)."""
        textured = ~self.flat
        return float(self.blurred[textured].mean()) if textured.any() else 0.0

    def to_dict(self):
        return {"tile": self.tile, "ys": self.ys.tolist(), "xs": self.xs.tolist(),
                "sharpness": np.round(self.sharpness, 3).tolist(), "flat": self.flat.tolist(),
                "blurred": self.blurred.tolist(), "threshold": self.threshold,
                "noise_sigma": round(self.noise_sigma, 5),
                "blurred_fraction": round(self.blurred_fraction, 4)}


@dataclass
class BlurReport:
    """Whole-image verdict: ``kind`` is "sharp", "motion" or "defocus" (any isotropic blur)."""

    kind: str
    angle_deg: float | None  # motion direction, degrees counter-clockwise from +x, in [0, 180)
    confidence: float  # 0.5 = on the decision boundary, towards 1 = clear-cut
    length_px: float | None = None  # motion length estimate
    scores: dict = field(default_factory=dict)

    def to_dict(self):
        return {"kind": self.kind, "angle_deg": self.angle_deg, "confidence": round(self.confidence, 4),
                "length_px": self.length_px, "scores": {k: int(v) if isinstance(v, (int, np.integer)) else round(float(v), 4)
                           for k, v in self.scores.items()}}


# ---------------------------------------------------------------------------------------------


def blur_map(image, tile=64, noise_sigma=None):
    """Sharp / blurred / flat evidence for every ``tile`` x ``tile`` region of ``image``.

    ``noise_sigma`` (in [0, 1] units) defaults to an estimate from the image itself; its power is
    taken off every spectrum so that sensor noise is not mistaken for detail."""
    gray = to_gray(image)
    noise_sigma = estimate_noise(gray) if noise_sigma is None else float(noise_sigma)
    tile = int(min(tile, *gray.shape))
    if tile < 16:
        raise ValueError(f"image {gray.shape[1]}x{gray.shape[0]} is too small for blur analysis (16 px minimum)")
    ys, xs = _starts(gray.shape[0], tile, tile), _starts(gray.shape[1], tile, tile)
    patches = np.stack([gray[y:y + tile, x:x + tile] for y in ys for x in xs])
    power = _denoised(_power(patches), noise_sigma)
    geometry = _Geometry.get(tile)
    worst, best = geometry.directional_sharpness(power)
    detail = geometry.detail_rms(power)
    shape = (len(ys), len(xs))
    flat = (detail < FLAT_RMS).reshape(shape)
    sharp = (worst > TILE_SHARP_THRESHOLD).reshape(shape)
    return BlurMap(tile=tile, ys=ys, xs=xs, sharpness=worst.reshape(shape), best_sharpness=best.reshape(shape),
                   detail=detail.reshape(shape), flat=flat, blurred=~flat & ~sharp, noise_sigma=noise_sigma)


def classify_blur(image, window=128, max_windows=64, noise_sigma=None):
    """Blur type of the whole image from the averaged spectrum of its most detailed patches."""
    gray = to_gray(image)
    noise_sigma = estimate_noise(gray) if noise_sigma is None else float(noise_sigma)
    window = int(min(window, _pow2_floor(min(gray.shape))))
    if window < 32:
        raise ValueError(f"image {gray.shape[1]}x{gray.shape[0]} is too small to classify blur (32 px minimum)")
    # Half-overlapping windows, spread out on large images so that about 256 are read at most.
    step = max(window // 2, math.ceil(math.sqrt(gray.size / 256)))
    ys, xs = _starts(gray.shape[0], window, step), _starts(gray.shape[1], window, step)
    patches = np.stack([gray[y:y + window, x:x + window] for y in ys for x in xs])
    power = _power(patches)
    clean = _denoised(power, noise_sigma)
    geometry = _Geometry.get(window)
    detail = geometry.detail_rms(clean)
    textured = detail >= FLAT_RMS
    if not textured.any():
        return BlurReport("sharp", None, 0.5, scores={"flat": 1.0, "detail_rms": float(detail.max()),
                                                      "noise_sigma": noise_sigma})
    # The most detailed windows carry the clearest blur evidence; nearly flat ones only add noise.
    strong = textured & (detail >= 0.3 * detail.max())
    keep = np.argsort(-np.where(strong, detail, -1))[:min(max_windows, int(strong.sum()))]
    # Sharpness reads the noise-free estimate; the cepstrum needs the raw spectrum, whose zeros
    # of a motion blur sit on the noise floor instead of being clipped away.
    worst, best = (v[0] for v in geometry.directional_sharpness(clean[keep].mean(axis=0)[None]))
    z, angle, length = geometry.cepstral_motion(power[keep].mean(axis=0))
    scores = {"sharpness": worst, "best_sharpness": best, "motion_z": z, "windows": len(keep),
              "noise_sigma": noise_sigma}

    blurred_somewhere = worst <= SHARP_THRESHOLD
    if blurred_somewhere and z >= MOTION_Z:
        confidence = min(_sigmoid((z - MOTION_Z) / 3), _sigmoid((SHARP_THRESHOLD - worst) / 0.3))
        return BlurReport("motion", round(angle, 1), confidence, round(length, 1), scores)
    if not blurred_somewhere:
        return BlurReport("sharp", None, _sigmoid((worst - SHARP_THRESHOLD) / 0.3), scores=scores)
    if best > ORIENTED_DETAIL and worst > ORIENTED_WORST:
        return BlurReport("sharp", None, _sigmoid((best - ORIENTED_DETAIL) / 0.3), scores=scores)
    confidence = min(_sigmoid((MOTION_Z - z) / 3), _sigmoid((SHARP_THRESHOLD - worst) / 0.3))
    return BlurReport("defocus", None, confidence, scores=scores)


def sharp_tile_mask(image, tile, stride=None, boxes=None, analysis_tile=64):
    """True for each processing tile that is sharp or flat and can be copied through untouched.

    Tiles are ``tile`` x ``tile`` squares every ``stride`` pixels (edge tiles shifted inwards, the
    runtime's tiling), or the given ``boxes`` as (y, x, h, w). A tile passes only if every analysis
    patch overlapping it is sharp or flat: one blurred corner is enough to restore it.
    """
    bmap = blur_map(image, tile=analysis_tile)
    h, w = np.asarray(image).shape[:2]
    if boxes is None:
        stride = stride or tile
        ys, xs = _starts(h, tile, stride), _starts(w, tile, stride)
        grid = [[_box_passes(bmap, y, x, min(tile, h), min(tile, w)) for x in xs] for y in ys]
        return np.array(grid, dtype=bool)
    return np.array([_box_passes(bmap, *box) for box in boxes], dtype=bool)


def _box_passes(bmap, y, x, h, w):
    rows = (bmap.ys < y + h) & (bmap.ys + bmap.tile > y)
    cols = (bmap.xs < x + w) & (bmap.xs + bmap.tile > x)
    return not bmap.blurred[np.ix_(rows, cols)].any()


# ---------------------------------------------------------------------------------------------


def to_gray(image):
    """Float32 luma in [0, 1] from HxW / HxWxC (C 1-4, RGB order) uint8, uint16 or float images."""
    image = unit_float(image)
    if image.ndim == 3:
        image = image[..., 0] if image.shape[2] < 3 else image[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    if image.ndim != 2:
        raise ValueError(f"expected an HxW or HxWxC image, got shape {image.shape}")
    return image


class _Geometry:
    """Frequency-plane masks for one window size (cached: built once per size).

    Spectra are real-input FFTs (``rfft2``: fx >= 0 only). The power spectrum of a real patch is
    symmetric, so the half plane holds every direction; ``weight`` counts the columns that stand
    for themselves and their mirror twice, so sums equal full-plane sums."""

    _cache = {}

    @classmethod
    def get(cls, n):
        if n not in cls._cache:
            cls._cache[n] = cls(n)
        return cls._cache[n]

    def __init__(self, n):
        self.n = n
        fy, fx = np.meshgrid(np.fft.fftfreq(n), np.fft.rfftfreq(n), indexing="ij")
        self.radius = np.hypot(fy, fx)
        self.weight = np.full(fx.shape, 2.0)
        self.weight[:, 0] = 1.0
        if n % 2 == 0:
            self.weight[:, -1] = 1.0
        # Screen angle of each frequency (rows grow down), folded to [0, 180).
        angle = np.degrees(np.arctan2(-fy, fx)) % 180
        centres = np.arange(_WEDGES) * 180 / _WEDGES
        in_wedge = [np.abs((angle - c + 90) % 180 - 90) < 90 / _WEDGES for c in centres]
        high = (self.radius > _HIGH_BAND[0]) & (self.radius < _HIGH_BAND[1])
        low = (self.radius > _LOW_BAND[0]) & (self.radius < _LOW_BAND[1])
        self.high = np.stack([((w & high) * self.weight).ravel() for w in in_wedge])
        self.low = np.stack([((w & low) * self.weight).ravel() for w in in_wedge])
        self.high /= self.high.sum(axis=1, keepdims=True)
        self.low /= self.low.sum(axis=1, keepdims=True)
        self.detail_weight = ((self.radius > _DETAIL_CUTOFF) * self.weight).ravel()
        self.ring = np.rint(self.radius * n).astype(int).ravel()
        self.ring_weight = np.bincount(self.ring, self.weight.ravel())
        lags = np.fft.fftfreq(n, 1 / n)
        self.lag = np.hypot(*np.meshgrid(lags, lags, indexing="ij"))
        self.lag_ok = (self.lag >= _MIN_MOTION_PX) & (self.lag <= n // 2 - 4)

    def directional_sharpness(self, power):
        """(worst, best) over the wedges of log10 high/low band power, for (K, n, n//2+1) spectra."""
        flat = power.reshape(len(power), -1).astype(np.float64)
        ratio = np.log10((flat @ self.high.T + _EPS) / (flat @ self.low.T + _EPS))
        return ratio.min(axis=1), ratio.max(axis=1)

    def detail_rms(self, power):
        """RMS amplitude of the (Hann-windowed) patches above the lowest frequencies."""
        flat = power.reshape(len(power), -1).astype(np.float64)
        # Parseval; 64/9 restores the energy the Hann window (mean w^2 = 9/64) took away.
        return np.sqrt(flat @ self.detail_weight / self.n**4 * (64 / 9))

    def cepstral_motion(self, power):
        """(robust z of the deepest cepstral dip, its angle in degrees, its distance in px)."""
        log = np.log(power.astype(np.float64) + _EPS)
        # Whitening: subtracting each radius' mean leaves only the anisotropic part of the spectrum.
        ring_mean = np.bincount(self.ring, (log * self.weight).ravel()) / np.maximum(self.ring_weight, 1e-9)
        white = log - ring_mean[self.ring].reshape(log.shape)
        white[self.radius > 0.5] = 0.0  # the corners are only partly covered by rings
        cep = np.fft.irfft2(white, s=(self.n, self.n))
        values = cep[self.lag_ok]
        centre = np.median(values)
        spread = 1.4826 * np.median(np.abs(values - centre)) + _EPS
        masked = np.where(self.lag_ok, cep, np.inf)
        iy, ix = np.unravel_index(np.argmin(masked), masked.shape)
        dy, dx = np.fft.fftfreq(self.n, 1 / self.n)[[iy, ix]]
        angle = math.degrees(math.atan2(-dy, dx)) % 180
        return float((centre - cep[iy, ix]) / spread), float(angle), float(math.hypot(dy, dx))


def _power(patches):
    """Power spectra (rfft2 half plane) of mean-removed, Hann-windowed patches, float32."""
    n = patches.shape[-1]
    hann = np.hanning(n).astype(np.float32)
    window = np.outer(hann, hann)
    centred = patches.astype(np.float32) - patches.mean(axis=(1, 2), keepdims=True, dtype=np.float32)
    spectrum = np.fft.rfft2(centred * window)
    return spectrum.real**2 + spectrum.imag**2


def _denoised(power, noise_sigma):
    """``power`` less the expected power of white noise of ``noise_sigma`` per frequency, floored
    at a thousandth of it (the floor keeps the log ratios finite where only noise is left).

    The noise is over-subtracted by ``_NOISE_MARGIN``: a wedge's noise power fluctuates by ~10-20%
    around its mean, and in a smooth patch that leftover would pass for fine detail."""
    n = power.shape[0] if power.ndim == 2 else power.shape[1]
    noise = noise_sigma**2 * (np.sum(np.hanning(n) ** 2) ** 2)
    return np.maximum(power - _NOISE_MARGIN * noise, 1e-3 * noise + _EPS)


def estimate_noise(gray):
    """Standard deviation of white noise in a grey image: the median absolute value of its finest
    diagonal Haar detail (Donoho's estimator). Blurred regions have almost no genuine detail at
    that scale, so there it measures the noise alone; on very fine textures it overestimates."""
    h, w = (gray.shape[0] // 2) * 2, (gray.shape[1] // 2) * 2
    g = gray[:h, :w].astype(np.float64)
    blocks = [g[0::2, 0::2], g[0::2, 1::2], g[1::2, 0::2], g[1::2, 1::2]]
    diagonal = (blocks[0] - blocks[1] - blocks[2] + blocks[3]) / 2
    # Blocks touching black or white are clipped: their noise is cut off and would bias it low.
    unclipped = np.all([(b > 1 / 255) & (b < 254 / 255) for b in blocks], axis=0)
    values = np.abs(diagonal[unclipped]) if unclipped.sum() > 64 else np.abs(diagonal)
    return float(np.median(values) / 0.6745)


def _starts(length, size, step):
    """Tile start offsets covering [0, length), the last one shifted to end at the edge."""
    if length <= size:
        return np.array([0])
    starts = list(range(0, length - size + 1, step))
    if starts[-1] != length - size:
        starts.append(length - size)
    return np.array(starts)


def _pow2_floor(n):
    return 1 << (int(n).bit_length() - 1)


def _sigmoid(x):
    return float(1 / (1 + math.exp(-max(-50.0, min(50.0, x)))))


def blur_overlay(image, bmap, alpha=0.45):
    """RGB uint8 picture of the map over the image: red = blurred (stronger = blurrier),
    green = sharp, grey hatching = flat (no evidence)."""
    base = np.asarray(image)
    gray = to_gray(base)
    rgb = np.repeat((gray * 255).astype(np.uint8)[..., None], 3, axis=2) if base.ndim == 2 or base.shape[2] < 3 \
        else _to_uint8(base[..., :3])
    overlay = rgb.astype(np.float32).copy()
    t = bmap.tile
    # How far below the threshold a blurred tile is, scaled to [0, 1] over two decades.
    depth = np.clip((bmap.threshold - bmap.sharpness) / 2.0, 0, 1)
    for i, y in enumerate(bmap.ys):
        for j, x in enumerate(bmap.xs):
            region = overlay[y:y + t, x:x + t]
            if bmap.flat[i, j]:
                hatch = ((np.add.outer(np.arange(region.shape[0]), np.arange(region.shape[1])) // 4) % 2) == 0
                region[hatch] = region[hatch] * 0.5 + 80
            elif bmap.blurred[i, j]:
                colour = np.array([255, 40, 40]) * (0.5 + 0.5 * depth[i, j])
                region[:] = region * (1 - alpha) + colour * alpha
            else:
                region[:] = region * (1 - alpha) + np.array([40, 200, 60]) * alpha
    out = np.clip(overlay, 0, 255).astype(np.uint8)
    for y in bmap.ys:  # tile grid lines
        cv2.line(out, (0, int(y)), (out.shape[1] - 1, int(y)), (255, 255, 255), 1)
    for x in bmap.xs:
        cv2.line(out, (int(x), 0), (int(x), out.shape[0] - 1), (255, 255, 255), 1)
    return out


def _to_uint8(rgb):
    if rgb.dtype == np.uint8:
        return rgb
    if rgb.dtype == np.uint16:
        return (rgb // 257).astype(np.uint8)
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)
