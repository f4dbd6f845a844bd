"""Synthetic degradations for training pairs: blur kernels, noise, JPEG, downscaling, document damage.

Images are float32 HxWxC (or HxW) in [0, 1]. Every function returns ``(image, params)`` where
``params`` is a dict with ``"kind"`` and the parameters used; blurs also carry ``"kernel"`` (2-D
float32, sums to 1, a true convolution kernel) so a non-blind baseline can use it. Random functions
take an ``np.random.Generator`` and draw from nothing else, so a seed reproduces a degradation.

Angles are in degrees, counter-clockwise from the +x axis as seen on screen (image rows grow
downwards), and a motion blur's direction is an axis: 0 and 180 are the same blur.
"""
import math

import cv2
import numpy as np

from restore.runtime.errors import ConfigError
from restore.runtime.pixels import unit_float

# Samples per pixel of path length when a line or trajectory is splatted onto the kernel grid.
_SPLAT_DENSITY = 8


# ---------------------------------------------------------------------------------------------
# kernels


def gaussian_kernel(sigma, size=None):
    """Isotropic Gaussian PSF; ``size`` defaults to 2*ceil(3 sigma)+1."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    size = _odd(size or 2 * math.ceil(3 * sigma) + 1)
    r = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    return _normalise(np.outer(g, g))


def linear_motion_kernel(length, angle_deg, size=None):
    """Anti-aliased straight-line PSF of ``length`` pixels (a box of that length along the line).

    The segment runs from -length/2 to +length/2 through the kernel centre and is splatted with
    bilinear weights, so non-integer lengths and any angle give a smooth, exactly centred kernel.
    """
    if length < 1:
        raise ValueError(f"motion length must be >= 1 pixel, got {length}")
    size = _odd(size or math.ceil(length) + 3)
    theta = math.radians(angle_deg)
    t = np.linspace(-length / 2, length / 2, max(2, int(math.ceil(length * _SPLAT_DENSITY)) + 1))
    # Screen convention: +y is up, array rows grow down, hence the minus sign.
    xs, ys = t * math.cos(theta), -t * math.sin(theta)
    return _splat(xs, ys, size)


def trajectory_kernel(rng, size=31, length=None, anxiety=None, steps=1000):
    """Random camera-shake PSF: a path of constant speed whose heading drifts randomly.

    The heading turns by Gaussian steps scaled by ``anxiety`` (0: a straight line, 1: a tight
    scribble) and, rarely, by an abrupt jerk; a weak pull towards the start keeps the hand from
    wandering off. The path is rescaled to an extent of ``length`` pixels (default: random, 25-60%
    of ``size``), centred on its centre of mass and splatted like a line.
    """
    size = _odd(size)
    if length is None:
        length = rng.uniform(0.25, 0.6) * size
    if anxiety is None:
        anxiety = rng.uniform(0.05, 0.6)
    # All random numbers are drawn up front; the recurrence itself runs on Python floats (fast).
    turns = rng.normal(size=steps) * anxiety * 0.05
    jerks = np.where(rng.uniform(size=steps) < anxiety * 0.004, rng.normal(size=steps) * 1.5, 0.0)
    heading = rng.uniform(0, 2 * math.pi)
    pull = 2e-5
    x = y = 0.0
    vx, vy = math.cos(heading), math.sin(heading)
    path = np.empty((steps, 2))
    for i in range(steps):
        heading = math.atan2(vy, vx) + turns[i] + jerks[i]
        vx, vy = math.cos(heading) - pull * x, math.sin(heading) - pull * y
        speed = math.hypot(vx, vy)
        vx, vy = vx / speed, vy / speed  # constant speed: exposure spread evenly along the path
        x, y = x + vx, y + vy
        path[i] = x, y
    extent = np.ptp(path, axis=0).max()
    path = (path - path.mean(axis=0)) * (length / max(extent, 1e-9))
    # Keep the path inside the grid: very elongated paths centred on their mass can stick out.
    path = np.clip(path, -(size // 2 - 1), size // 2 - 1)
    return _splat(path[:, 0], path[:, 1], size)


def defocus_kernel(radius, size=None):
    """Uniform disk PSF (out-of-focus blur) with anti-aliased edges (8x8 supersampled coverage)."""
    if radius <= 0:
        raise ValueError(f"defocus radius must be > 0, got {radius}")
    size = _odd(size or 2 * math.ceil(radius) + 1)
    sub = 8
    r = (np.arange(size * sub, dtype=np.float64) + 0.5) / sub - size / 2
    inside = (r[:, None] ** 2 + r[None, :] ** 2) <= radius**2
    coverage = inside.reshape(size, sub, size, sub).mean(axis=(1, 3))
    return _normalise(coverage)


def centred_kernel(kernel, size):
    """``kernel`` (odd, square) zero-padded or cropped to ``size`` x ``size`` about its centre."""
    kernel = np.asarray(kernel, np.float32)
    pad = (size - kernel.shape[0]) // 2
    if pad < 0:
        return np.ascontiguousarray(kernel[-pad:pad, -pad:pad])
    return np.pad(kernel, pad)


# ---------------------------------------------------------------------------------------------
# blurs


def apply_kernel(img, kernel):
    """Convolve every channel with ``kernel`` (reflected borders, output float32 HxW[xC])."""
    img = _as_float(img)
    kernel = np.asarray(kernel, dtype=np.float32)
    # filter2D correlates; flipping makes it a true convolution, which matters for asymmetric
    # trajectory kernels that a non-blind deconvolution will use as given.
    out = cv2.filter2D(img, cv2.CV_32F, cv2.flip(kernel, -1), borderType=cv2.BORDER_REFLECT)
    return out.reshape(img.shape)


def gaussian_blur(img, sigma):
    kernel = gaussian_kernel(sigma)
    return _clip(apply_kernel(img, kernel)), {"kind": "gaussian", "sigma": float(sigma), "kernel": kernel}


def motion_blur(img, length, angle):
    kernel = linear_motion_kernel(length, angle)
    params = {"kind": "motion", "length": float(length), "angle": float(angle) % 180.0, "kernel": kernel}
    return _clip(apply_kernel(img, kernel)), params


def trajectory_blur(img, rng, size=31, length=None, anxiety=None):
    kernel = trajectory_kernel(rng, size=size, length=length, anxiety=anxiety)
    return _clip(apply_kernel(img, kernel)), {"kind": "trajectory", "size": int(kernel.shape[0]), "kernel": kernel}


def defocus_blur(img, radius):
    kernel = defocus_kernel(radius)
    return _clip(apply_kernel(img, kernel)), {"kind": "defocus", "radius": float(radius), "kernel": kernel}


BLUR_KINDS = ("gaussian", "motion", "trajectory", "defocus")


def random_blur(img, rng, kinds=BLUR_KINDS, sigma=(0.5, 3.0), length=(5, 25), angle=(0, 180),
                radius=(1.0, 4.0), trajectory_size=31, trajectory_length=None, weights=None):
    """One blur drawn from ``kinds`` (uniformly, or with ``weights``), its parameters drawn
    uniformly from the given ranges (``trajectory_length``: the shake path's extent in px, default
    25-60% of ``trajectory_size``)."""
    unknown = set(kinds) - set(BLUR_KINDS)
    if not kinds or unknown:
        raise ConfigError("blur.kinds", f"unknown or empty blur kinds {sorted(unknown) or kinds}",
                          f"choose from {', '.join(BLUR_KINDS)}")
    p = None if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)
    kind = kinds[rng.choice(len(kinds), p=p)]
    if kind == "gaussian":
        return gaussian_blur(img, _draw(rng, sigma))
    if kind == "motion":
        return motion_blur(img, _draw(rng, length), _draw(rng, angle))
    if kind == "trajectory":
        extent = None if trajectory_length is None else _draw(rng, trajectory_length)
        return trajectory_blur(img, rng, size=trajectory_size, length=extent)
    return defocus_blur(img, _draw(rng, radius))


# ---------------------------------------------------------------------------------------------
# noise, compression, resolution


def gaussian_noise(img, sigma, rng):
    img = _as_float(img)
    noisy = img + rng.normal(0.0, sigma, size=img.shape).astype(np.float32)
    return _clip(noisy), {"kind": "gaussian_noise", "sigma": float(sigma)}


def poisson_noise(img, peak, rng):
    """Shot noise: photon counts with mean ``img * peak`` (lower peak = darker scene = noisier)."""
    img = _as_float(img)
    noisy = rng.poisson(np.clip(img, 0, 1) * peak).astype(np.float32) / np.float32(peak)
    return _clip(noisy), {"kind": "poisson_noise", "peak": float(peak)}


def sensor_noise(img, peak, read_sigma, rng):
    """A camera sensor's noise: shot noise (photon counts of mean ``img * peak``) plus Gaussian
    read noise of ``read_sigma``."""
    shot, _ = poisson_noise(img, peak, rng)
    noisy, _ = gaussian_noise(shot, read_sigma, rng)
    return noisy, {"kind": "sensor_noise", "peak": float(peak), "read_sigma": float(read_sigma)}


def h264(img, crf):
    """Round-trip through libx264 (PyAV) as one intra frame at constant rate factor ``crf``, 4:2:0:
    a video codec's blocking, ringing and halved chroma. The image is padded to even sides."""
    import av

    img = _as_float(img)
    u8 = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    gray = u8.ndim == 2 or u8.shape[2] == 1
    rgb = np.repeat(u8.reshape(u8.shape[:2] + (1,)), 3, axis=2) if gray else u8
    h, w = u8.shape[:2]
    even = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = even.shape[1], even.shape[0], "yuv420p"
    encoder.options = {"crf": str(int(crf)), "preset": "ultrafast", "tune": "zerolatency"}
    packets = encoder.encode(av.VideoFrame.from_ndarray(even, format="rgb24")) + encoder.encode(None)
    decoder = av.CodecContext.create("h264", "r")
    frames = [f for p in packets for f in decoder.decode(p)] + list(decoder.decode(None))
    out = frames[0].to_ndarray(format="rgb24")[:h, :w]
    out = out[..., :1].reshape(img.shape) if gray else out
    return out.astype(np.float32) / 255.0, {"kind": "h264", "crf": int(crf)}


def jpeg(img, quality=10):
    """Round-trip through OpenCV's JPEG codec (quality factor 10 is the JPEG-artifact seed's)."""
    img = _as_float(img)
    u8 = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    color = u8.ndim == 3 and u8.shape[2] == 3
    ok, buf = cv2.imencode(".jpg", u8[..., ::-1] if color else u8, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not encode JPEG")
    dec = cv2.imdecode(buf, cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE)
    dec = dec[..., ::-1] if color else dec.reshape(img.shape)
    return np.ascontiguousarray(dec, dtype=np.float32) / 255.0, {"kind": "jpeg", "quality": int(quality)}


def bicubic_downscale(img, scale=4):
    """Anti-aliased bicubic downscaling (MATLAB ``imresize`` style, the SR benchmarks' convention).

    The image is first cropped to a multiple of ``scale`` so that LQ x scale == GT exactly.
    """
    img = _as_float(img)
    h, w = (img.shape[0] // scale) * scale, (img.shape[1] // scale) * scale
    img = img[:h, :w]
    rows, cols = _cubic_weights(h, scale), _cubic_weights(w, scale)
    planes = img.reshape(h, w, -1)
    out = np.einsum("ih,hwc,jw->ijc", rows, planes, cols, optimize=True).astype(np.float32)
    out = out.reshape((h // scale, w // scale) + img.shape[2:])
    return _clip(out), {"kind": "bicubic_downscale", "scale": int(scale), "cropped_to": [h, w]}


def _cubic_weights(n_in, scale):
    """(n_in/scale, n_in) matrix of Keys cubic (a=-0.5) weights, stretched by ``scale`` to low-pass."""
    n_out = n_in // scale
    centres = (np.arange(n_out) + 0.5) * scale - 0.5
    x = np.arange(n_in)
    d = np.abs(x[None, :] - centres[:, None]) / scale
    w = np.where(d <= 1, 1.5 * d**3 - 2.5 * d**2 + 1,
                 np.where(d < 2, -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2, 0.0))
    return w / w.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# documents


def document_degrade(img, rng, blur_sigma=(0.5, 1.5), stains=(0, 4), illumination=(0.0, 0.35),
                     noise_sigma=(0.0, 0.03)):
    """Scanned/photographed-paper damage: mild blur, coffee-like stains, uneven lighting, noise."""
    img = _as_float(img)
    h, w = img.shape[:2]
    out, blur = gaussian_blur(img, _draw(rng, blur_sigma))

    # Stains: soft ellipses that darken and tint the page (multiplicative, like absorbed liquid).
    n_stains = int(rng.integers(stains[0], stains[1] + 1))
    mask = np.zeros((h, w), np.float32)
    for _ in range(n_stains):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.uniform(0.03, 0.2) * w) + 1, int(rng.uniform(0.03, 0.2) * h) + 1)
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(0.2, 0.6)), -1)
    if n_stains:
        mask = cv2.GaussianBlur(mask, (0, 0), max(2.0, 0.01 * max(h, w)))
    tint = np.array([0.55, 0.75, 1.0], np.float32)  # brownish: blue absorbed most
    if out.ndim == 3 and out.shape[2] == 3:
        out = out * (1 - mask[..., None] * tint)
    else:
        out = out * (1 - mask.reshape(mask.shape + (1,) * (out.ndim - 2)) * 0.75)

    # Uneven illumination: a tilted plane plus a broad vignette.
    strength = _draw(rng, illumination)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / max(h - 1, 1) - 0.5, xx / max(w - 1, 1) - 0.5
    direction = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(direction) * xx + np.sin(direction) * yy
    light = 1 - strength * (0.5 + ramp) * 0.8 - strength * 0.4 * (xx**2 + yy**2) * 2
    out = out * light.reshape(light.shape + (1,) * (out.ndim - 2))

    sigma = _draw(rng, noise_sigma)
    out, _ = gaussian_noise(out, sigma, rng)
    params = {"kind": "document", "blur_sigma": blur["sigma"], "stains": n_stains,
              "illumination": float(strength), "noise_sigma": float(sigma), "kernel": blur["kernel"]}
    return out, params


# ---------------------------------------------------------------------------------------------
# config-driven pipeline

_PIPELINE_KEYS = ("blur", "document", "downscale", "noise", "jpeg", "h264")


def build_degradation(cfg):
    """Turn a config section into ``degrade(img, rng) -> (img, params)``.

    Example: ``{"blur": {"kinds": ["gaussian", "motion"], "sigma": [1, 3], "length": [5, 25]},
    "noise": {"sigma": [0, 0.01]}, "jpeg": null, "downscale": null}``. Steps run in the order
    blur -> document -> downscale -> noise -> jpeg -> h264 (a camera's order: optics, sensor, codec).
    ``params["steps"]`` lists every step's params; ``params["kernel"]`` is the blur kernel if any.
    Ranges are [low, high] (drawn uniformly) or a single number. A step may carry ``"prob"``.
    """
    cfg = dict(cfg or {})
    unknown = set(cfg) - set(_PIPELINE_KEYS)
    if unknown:
        raise ConfigError("degradation", f"unknown section(s) {sorted(unknown)}",
                          f"use {', '.join(_PIPELINE_KEYS)}")
    steps = [(key, _build_step(key, cfg[key])) for key in _PIPELINE_KEYS if cfg.get(key) not in (None, False)]

    def degrade(img, rng):
        out = _as_float(img)
        done = []
        for key, (step, prob) in steps:
            if prob < 1.0 and rng.uniform() >= prob:
                continue
            out, params = step(out, rng)
            done.append(params)
        result = {"kind": "pipeline", "steps": done}
        kernels = [p["kernel"] for p in done if "kernel" in p]
        if kernels:
            result["kernel"] = kernels[0]
        scales = [p["scale"] for p in done if p["kind"] == "bicubic_downscale"]
        result["scale"] = scales[0] if scales else 1
        return out, result

    degrade.config = cfg
    degrade.scale = int(_section(cfg.get("downscale"), "scale").get("scale", 4)) if cfg.get("downscale") else 1
    return degrade


def _build_step(key, section):
    opts = _section(section, {"noise": "sigma", "jpeg": "quality", "h264": "crf", "downscale": "scale"}.get(key))
    prob = float(opts.pop("prob", 1.0))
    try:
        if key == "blur":
            return _blur_step(opts), prob
        if key == "document":
            return (lambda img, rng: document_degrade(img, rng, **opts)), prob
        if key == "downscale":
            scale = int(opts.pop("scale", 4))
            _no_extra(key, opts)
            return (lambda img, rng: bicubic_downscale(img, scale)), prob
        if key == "noise":
            return _noise_step(opts), prob
        if key == "h264":
            crf = opts.pop("crf", (23, 40))
            _no_extra(key, opts)
            return (lambda img, rng: h264(img, int(round(_draw(rng, crf))))), prob
        quality = opts.pop("quality", 10)
        _no_extra(key, opts)
        return (lambda img, rng: jpeg(img, int(round(_draw(rng, quality))))), prob
    except TypeError as e:
        raise ConfigError(f"degradation.{key}", str(e), "check the option names") from None


def _blur_step(opts):
    allowed = {"kinds", "sigma", "length", "angle", "radius", "trajectory_size", "trajectory_length", "weights"}
    _no_extra("blur", {k: v for k, v in opts.items() if k not in allowed})
    opts = {k: tuple(v) if isinstance(v, list) else v for k, v in opts.items()}
    return lambda img, rng: random_blur(img, rng, **opts)


def _noise_step(opts):
    kind = opts.pop("kind", "gaussian")
    if kind == "gaussian":
        sigma = opts.pop("sigma", (0.0, 0.02))
        _no_extra("noise", opts)
        return lambda img, rng: gaussian_noise(img, _draw(rng, sigma), rng)
    if kind == "poisson":
        peak = opts.pop("peak", (30.0, 300.0))
        _no_extra("noise", opts)
        return lambda img, rng: poisson_noise(img, _draw(rng, peak), rng)
    if kind == "sensor":
        peak, sigma = opts.pop("peak", (30.0, 1000.0)), opts.pop("sigma", (0.0, 0.01))
        _no_extra("noise", opts)
        return lambda img, rng: sensor_noise(img, _draw(rng, peak), _draw(rng, sigma), rng)
    raise ConfigError("degradation.noise.kind", f"unknown noise kind {kind!r}", "use 'gaussian', 'poisson' or 'sensor'")


def _section(section, shorthand):
    """A section may be a dict, ``true`` (defaults) or a bare value for its main option."""
    if section is True:
        return {}
    if isinstance(section, dict):
        return dict(section)
    if shorthand is None:
        raise ConfigError("degradation", f"expected a mapping, got {section!r}")
    return {shorthand: section}


def _no_extra(key, opts):
    if opts:
        raise ConfigError(f"degradation.{key}", f"unknown option(s) {sorted(opts)}")


# ---------------------------------------------------------------------------------------------
# helpers


def _draw(rng, spec):
    """A number from a [low, high] range (uniform) or the number itself."""
    if isinstance(spec, (list, tuple)):
        low, high = spec
        return float(rng.uniform(low, high)) if high > low else float(low)
    return float(spec)


def _splat(xs, ys, size):
    """Accumulate equally weighted points (pixel offsets from the centre) with bilinear weights."""
    c = size // 2
    x, y = xs + c, ys + c
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    kernel = np.zeros((size, size), np.float64)
    for dy, dx, wgt in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < size) & (xx >= 0) & (xx < size)
        np.add.at(kernel, (yy[ok], xx[ok]), wgt[ok])
    return _normalise(kernel)


def _normalise(kernel):
    return (kernel / kernel.sum()).astype(np.float32)


def _odd(n):
    n = int(n)
    return n if n % 2 else n + 1


def _as_float(img):
    return unit_float(img, copy=False)


def _clip(img):
    return np.clip(img, 0.0, 1.0, out=img if img.dtype == np.float32 else None).astype(np.float32, copy=False)
