"""Classical deblurring baselines for ``restore eval`` (scikit-image), on HxWxC float images.

- ``unsharp_mask``: Gaussian sigma 2, amount 1 (no PSF at all).
- Oracle (non-blind): Wiener (balance 0.02, Laplacian regulariser), unsupervised Wiener
  (regularisation estimated by Gibbs sampling) and Richardson-Lucy (30 iterations), each given the
  TRUE blur kernel of the crop.
- Blind: the same three given a fixed generic PSF instead of the true one: an isotropic Gaussian of
  sigma 2 px (the middle of the holdout's Gaussian range). Nothing is estimated from the image but
  the unsupervised Wiener's regularisation; for motion-blurred crops the guess is deliberately
  wrong, as it would be for any method that does not estimate the kernel.

Wiener filters assume circular convolution; the image is mirrored to 2H x 2W first, which is
periodic and matches the reflected borders of the synthetic blur for point-symmetric kernels, so
the oracle is not handicapped by boundary ringing. Richardson-Lucy works in the image domain and
gets a symmetric pad of twice the kernel size. Balance and iteration counts are fixed, not tuned
per image.
"""
import numpy as np

from .degradations import gaussian_kernel

WIENER_BALANCE = 0.02
RL_ITERATIONS = 30
BLIND_SIGMA = 2.0
UNSUPERVISED_MAX_ITER = 30


def _per_channel(fn, image):
    image = np.asarray(image, dtype=np.float64)
    planes = [fn(image[..., c]) for c in range(image.shape[2])]
    return np.clip(np.stack(planes, axis=-1), 0, 1).astype(np.float32)


def _mirror_periodic(plane):
    h, w = plane.shape
    return np.pad(plane, ((0, h), (0, w)), mode="symmetric"), (h, w)


def wiener(image, kernel, balance=WIENER_BALANCE):
    from skimage import restoration

    def one(plane):
        mirrored, (h, w) = _mirror_periodic(plane)
        return restoration.wiener(mirrored, kernel, balance, clip=False)[:h, :w]

    return _per_channel(one, image)


def unsupervised_wiener(image, kernel, seed=0):
    from skimage import restoration

    def one(plane):
        mirrored, (h, w) = _mirror_periodic(plane)
        out, _ = restoration.unsupervised_wiener(
            mirrored, kernel, clip=False, rng=seed,
            user_params={"max_num_iter": UNSUPERVISED_MAX_ITER, "min_num_iter": 10})
        return out[:h, :w]

    return _per_channel(one, image)


def richardson_lucy(image, kernel, iterations=RL_ITERATIONS):
    from skimage import restoration

    pad = 2 * max(kernel.shape)

    def one(plane):
        padded = np.pad(plane, pad, mode="symmetric")
        out = restoration.richardson_lucy(padded, kernel, num_iter=iterations, clip=False)
        return out[pad:-pad, pad:-pad]

    return _per_channel(one, image)


def unsharp_mask(image, radius=2.0, amount=1.0):
    """image + amount * (image - Gaussian(image, sigma=radius)). Written out with OpenCV:
    scikit-image 0.26's ``unsharp_mask`` returned a near-black image for float RGB input here."""
    import cv2

    image = np.asarray(image, np.float32)
    blurred = cv2.GaussianBlur(image, (0, 0), radius, borderType=cv2.BORDER_REFLECT)
    return np.clip(image + amount * (image - blurred), 0, 1).astype(np.float32)


def generic_psf():
    return gaussian_kernel(BLIND_SIGMA).astype(np.float64)


def run_baselines(lq, kernel=None):
    """{method name: restored image}. Oracle methods only when the true ``kernel`` is known."""
    out = {"unsharp_mask": unsharp_mask(lq)}
    if kernel is not None:
        k = np.asarray(kernel, np.float64)
        out["wiener_oracle"] = wiener(lq, k)
        out["unsupervised_wiener_oracle"] = unsupervised_wiener(lq, k)
        out["richardson_lucy_oracle"] = richardson_lucy(lq, k)
    guess = generic_psf()
    out["wiener_blind"] = wiener(lq, guess)
    out["unsupervised_wiener_blind"] = unsupervised_wiener(lq, guess)
    out["richardson_lucy_blind"] = richardson_lucy(lq, guess)
    return out
