"""The blind estimate of a blur kernel of any shape (runtime/kernel_estimate.py) on a textured
picture blurred by a curved shake path, a smooth one, a sharp one, a flat one and one too small.
It does not find every shake (``python -m restore.benchmarks.shake_kernels`` measures how often);
the gravel shake here is one it finds, and the smooth picture one it must not trust."""
import numpy as np
import pytest

from restore.runtime.kernel_estimate import SIZE, deconvolve, estimate_kernel, similarity, sparsity
from restore.trainer.datasets import builtin_images
from restore.trainer.degradations import apply_kernel, gaussian_noise, trajectory_kernel
from restore.trainer.metrics import psnr


@pytest.fixture(scope="module")
def gravel():
    return dict(builtin_images("train"))["gravel"]


def test_a_curved_shake_is_found_with_its_phase(gravel):
    rng = np.random.default_rng(11)
    kernel = trajectory_kernel(rng, size=SIZE, length=21, anxiety=0.4)
    blurred, _ = gaussian_noise(np.clip(apply_kernel(gravel, kernel), 0, 1), 0.005, rng)
    estimate = estimate_kernel(blurred)
    assert estimate.kernel.shape == (SIZE, SIZE) and abs(estimate.kernel.sum() - 1) < 1e-9
    assert (estimate.kernel >= 0).all()
    assert similarity(estimate.kernel, kernel) > 0.8
    assert similarity(estimate.kernel, kernel) > similarity(estimate.kernel, kernel[::-1, ::-1]) + 0.1
    assert estimate.concentration > 0.5 and estimate.agreement > 0.6 and estimate.trusted

    def gain(k):
        return psnr(gravel, np.clip(deconvolve(blurred, k, 0.03), 0, 1)) - psnr(gravel, blurred)

    # more than the best a point-symmetric kernel (the model's bank) can do, the truth symmetrised
    assert gain(estimate.kernel) > 3.0
    assert gain(estimate.kernel) > gain((kernel + kernel[::-1, ::-1]) / 2) + 0.5


def test_the_right_kernel_gives_the_sparsest_gradients(gravel):
    """``sparsity``: deconvolved by the true shake, the picture's gradients are sparser than by a
    wrong kernel (the path turned a quarter) or by none, and a flat picture gives a finite 0."""
    rng = np.random.default_rng(5)
    kernel = trajectory_kernel(rng, size=SIZE, length=21, anxiety=0.4)
    blurred, _ = gaussian_noise(np.clip(apply_kernel(gravel, kernel), 0, 1), 0.005, rng)
    identity = np.zeros((SIZE, SIZE))
    identity[SIZE // 2, SIZE // 2] = 1
    right = sparsity(blurred, kernel)
    assert right < sparsity(blurred, np.rot90(kernel)) - 0.005 and right < sparsity(blurred, identity) - 0.005
    assert sparsity(np.full((128, 128, 3), 0.5, np.float32), kernel) == 0.0


def test_a_smooth_picture_s_estimate_is_not_trusted():
    """Cells under a microscope have few strong edges: the estimate is diffuse and not trusted."""
    cell = dict(builtin_images("train"))["cell"][:512, :512]
    rng = np.random.default_rng(11)
    kernel = trajectory_kernel(rng, size=SIZE, length=21, anxiety=0.4)
    blurred, _ = gaussian_noise(np.clip(apply_kernel(cell, kernel), 0, 1), 0.005, rng)
    estimate = estimate_kernel(blurred)
    assert similarity(estimate.kernel, kernel) < 0.6 and estimate.concentration < 0.5 and not estimate.trusted


def test_a_sharp_picture_gets_a_compact_kernel_and_a_flat_one_the_identity(gravel):
    sharp = estimate_kernel(gravel)
    assert sharp.concentration > 0.9
    yy, xx = np.mgrid[:SIZE, :SIZE] - SIZE // 2
    assert (sharp.kernel * (yy**2 + xx**2)).sum() < 4  # within about 2 px of its centre
    flat = estimate_kernel(np.full((128, 128, 3), 0.5, np.float32))
    assert flat.kernel[SIZE // 2, SIZE // 2] == 1 and np.isfinite(flat.kernel).all()


def test_a_picture_too_small_for_the_kernel_is_refused():
    with pytest.raises(ValueError, match="at least 78 px"):
        estimate_kernel(np.zeros((60, 200), np.float32))
