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
