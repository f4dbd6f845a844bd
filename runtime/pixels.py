"""Pixel values as floats in [0, 1], whatever the image's integer depth."""
import numpy as np

FULL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def unit_float(image, dtype=np.float32, copy=True):
    """uint8 / 255 and uint16 / 65535 as ``dtype``; float images converted as they are (shared,
    not copied, when ``copy`` is False and they already have ``dtype``)."""
    image = np.asarray(image)
    scale = FULL_SCALE.get(image.dtype)
    if scale is None:
        return image.astype(dtype, copy=copy)
    return image.astype(dtype) / dtype(scale)


# Float images hold values in [0, 1] (like 8-bit / 255); a little outside is rounding, clipped.
FLOAT_SLACK = 1 / 16


def check_float_pixels(image, name):
    """InputError when a float image has NaN/Inf pixels or values far outside [0, 1] (a float TIFF
    saved in 0..255, say): restoring it would be silently wrong (one NaN spreads through a
    tile's Fourier transform; 0..255 clips to white)."""
    from .errors import InputError

    image = np.asarray(image)
    if image.dtype.kind != "f" or image.size == 0:
        return
    finite = np.isfinite(image)
    if not finite.all():
        bad = int(image.size - np.count_nonzero(finite))
        raise InputError(name, f"has {bad} NaN or infinite pixel values", "fix or replace those pixels; float images hold values in 0..1")
    low, high = float(image.min()), float(image.max())
    if low < -FLOAT_SLACK or high > 1 + FLOAT_SLACK:
        raise InputError(name, f"float pixels range over {low:g}..{high:g}, but float images hold values in 0..1",
                         "divide by 255 (or 65535) or save it as an 8- or 16-bit image")
