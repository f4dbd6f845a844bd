"""No-reference sharpness for real blurred photos (no sharp reference exists): the variance of
the Laplacian of the grey image (higher = more high-frequency detail), and the before/after
figure of the model card."""
import cv2
import numpy as np

from restore.runtime.atomic import atomic_path


def laplacian_variance(image):
    """Variance of the 3x3 Laplacian of the BT.601 grey image, for float images in [0, 1]."""
    image = np.asarray(image, np.float32)
    gray = image[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32) if image.ndim == 3 else image
    return float(cv2.Laplacian(gray, cv2.CV_32F, ksize=1).var())


def before_after(model, image, path):
    """Restore ``image`` (HxWx3 float) with ``model``, write [before | after] as PNG to ``path``;
    returns (restored image, {"before": sharpness, "after": sharpness})."""
    from .inference import restore_array

    restored = restore_array(model, image)
    pair = np.concatenate([image, np.ones((image.shape[0], 8, 3), np.float32), restored], axis=1)
    u8 = np.round(np.clip(pair, 0, 1) * 255).astype(np.uint8)[..., ::-1]
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), u8):
            raise OSError(f"OpenCV could not write {tmp}")
    return restored, {"before": laplacian_variance(image), "after": laplacian_variance(restored)}
