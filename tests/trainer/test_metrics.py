import subprocess
import sys

import numpy as np
import pytest
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from restore.trainer.metrics import mse, psnr, ssim


def _pair(dtype, channels, seed=0):
    rng = np.random.default_rng(seed)
    shape = (70, 90) if channels is None else (70, 90, channels)
    ref = rng.random(shape)
    ref = (ref + np.roll(ref, 1, axis=0) + np.roll(ref, 1, axis=1)) / 3  # some structure
    noisy = np.clip(ref + rng.normal(0, 0.08, shape), 0, 1)
    if dtype == np.uint8:
        return (ref * 255).round().astype(np.uint8), (noisy * 255).round().astype(np.uint8), 255
    if dtype == np.uint16:
        return (ref * 65535).round().astype(np.uint16), (noisy * 65535).round().astype(np.uint16), 65535
    return ref.astype(dtype), noisy.astype(dtype), 1.0


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("channels", [None, 1, 3])
def test_ssim_matches_scikit_image(dtype, channels):
    a, b, data_range = _pair(dtype, channels)
    kwargs = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": data_range}
    if channels is not None:
        kwargs["channel_axis"] = -1
    expected = structural_similarity(a, b, **kwargs)
    assert abs(ssim(a, b) - expected) < 1e-3
    assert abs(ssim(a, b, data_range=data_range) - expected) < 1e-3


def test_ssim_of_identical_images_is_one_and_drops_with_blur():
    a, b, _ = _pair(np.float32, 3)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, b) < 0.9


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_psnr_and_mse_match_scikit_image(dtype):
    a, b, data_range = _pair(dtype, 3)
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=data_range), abs=1e-6)
    assert mse(a, b) == pytest.approx(mean_squared_error(a, b))


def test_psnr_edge_cases():
    a = np.zeros((8, 8), np.float32)
    assert psnr(a, a) == float("inf")
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-4)
    assert psnr(a, a + 0.1, data_range=2.0) == pytest.approx(20 + 20 * np.log10(2), abs=1e-4)
    with pytest.raises(ValueError):
        mse(a, np.zeros((8, 9)))


def test_metrics_import_without_torch():
    code = "import sys; import restore.trainer.metrics; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
