import numpy as np
import pytest

from restore.runtime.errors import ConfigError
from restore.trainer import degradations as D
from restore.trainer.metrics import psnr


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    base = rng.random((12, 16, 3)).astype(np.float32)
    import cv2
    return np.clip(cv2.resize(base, (96, 72), interpolation=cv2.INTER_CUBIC), 0, 1)


def _rng(seed=1):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("kernel", [
    D.gaussian_kernel(1.7), D.gaussian_kernel(0.6, size=9), D.linear_motion_kernel(13.5, 37),
    D.linear_motion_kernel(1, 0), D.defocus_kernel(3.2), D.trajectory_kernel(_rng(), size=25),
])
def test_kernels_are_normalised_odd_and_float32(kernel):
    assert kernel.dtype == np.float32 and kernel.ndim == 2
    assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
    assert abs(float(kernel.sum()) - 1) < 1e-5
    assert kernel.min() >= 0


def _centroid_and_spread(kernel, direction_deg):
    ys, xs = np.mgrid[:kernel.shape[0], :kernel.shape[1]] - kernel.shape[0] // 2
    t = np.radians(direction_deg)
    along = xs * np.cos(t) - ys * np.sin(t)  # screen convention: +y up
    across = xs * np.sin(t) + ys * np.cos(t)
    return (kernel * xs).sum(), (kernel * ys).sum(), np.sqrt((kernel * along**2).sum()), np.sqrt((kernel * across**2).sum())


@pytest.mark.parametrize("angle", [0, 30, 90, 135])
def test_motion_kernel_lies_along_its_angle(angle):
    length = 15
    cx, cy, along, across = _centroid_and_spread(D.linear_motion_kernel(length, angle), angle)
    assert abs(cx) < 1e-3 and abs(cy) < 1e-3
    assert abs(along - length / np.sqrt(12)) < 0.5  # a box of that length
    assert across < 0.6


def test_motion_angle_zero_is_horizontal_and_45_rises_to_the_right():
    k = D.linear_motion_kernel(9, 0)
    c = k.shape[0] // 2
    assert k[c].sum() > 0.95
    k = D.linear_motion_kernel(9, 45)
    assert k[c - 3, c + 3] > 0 and k[c + 3, c + 3] == 0


def test_defocus_is_a_disk_and_gaussian_has_its_sigma():
    k = D.defocus_kernel(4)
    c = k.shape[0] // 2
    assert k[c, c] == pytest.approx(k[c, c + 2]) and k[c, c + 4] < k[c, c]
    ys, xs = np.mgrid[:k.shape[0], :k.shape[1]] - c
    assert k[np.hypot(xs, ys) > 4.8].sum() == 0
    g = D.gaussian_kernel(2.0)
    ys, xs = np.mgrid[:g.shape[0], :g.shape[1]] - g.shape[0] // 2
    assert np.sqrt((g * xs**2).sum()) == pytest.approx(2.0, rel=0.02)


def test_apply_kernel_is_a_true_convolution():
    delta = np.zeros((31, 31), np.float32)
    delta[15, 15] = 1
    kernel = D.trajectory_kernel(_rng(3), size=15)
    out = D.apply_kernel(delta, kernel)
    np.testing.assert_allclose(out[8:23, 8:23], kernel, atol=1e-6)


def test_blurs_keep_shape_range_and_report_their_kernel(image):
    cases = [D.gaussian_blur(image, 2), D.motion_blur(image, 11, 200), D.defocus_blur(image, 3),
             D.trajectory_blur(image, _rng()), D.random_blur(image, _rng())]
    for out, params in cases:
        assert out.shape == image.shape and out.dtype == np.float32
        assert 0 <= out.min() and out.max() <= 1
        assert abs(params["kernel"].sum() - 1) < 1e-5
        assert params["kind"] in D.BLUR_KINDS
        np.testing.assert_allclose(out, np.clip(D.apply_kernel(image, params["kernel"]), 0, 1), atol=1e-6)
    assert cases[1][1]["angle"] == 20.0  # motion directions are axes, folded into [0, 180)
    gray_out, _ = D.gaussian_blur(image[..., 0], 1.5)
    assert gray_out.shape == image.shape[:2]


def test_random_functions_are_reproducible(image):
    fns = [
        lambda r: D.trajectory_blur(image, r),
        lambda r: D.random_blur(image, r),
        lambda r: D.gaussian_noise(image, 0.05, r),
        lambda r: D.poisson_noise(image, 50, r),
        lambda r: D.document_degrade(image, r),
        lambda r: D.build_degradation({"blur": {"kinds": ["motion", "trajectory"]}, "noise": {"sigma": [0, 0.02]},
                                        "jpeg": {"quality": [20, 60]}})(image, r),
    ]
    for fn in fns:
        a, pa = fn(_rng(5))
        b, pb = fn(_rng(5))
        c, _ = fn(_rng(6))
        np.testing.assert_array_equal(a, b)
        assert pa.keys() == pb.keys()
        assert not np.array_equal(a, c)


def test_random_blur_draws_every_kind():
    rng = _rng(0)
    img = np.full((40, 40), 0.5, np.float32)
    kinds = {D.random_blur(img, rng)[1]["kind"] for _ in range(40)}
    assert kinds == set(D.BLUR_KINDS)
    with pytest.raises(ConfigError):
        D.random_blur(img, rng, kinds=("gaussian", "swirl"))


def test_noise_statistics():
    flat = np.full((256, 256), 0.5, np.float32)
    noisy, params = D.gaussian_noise(flat, 0.05, _rng())
    assert abs(noisy.std() - 0.05) < 0.003 and params == {"kind": "gaussian_noise", "sigma": 0.05}
    shot, _ = D.poisson_noise(flat, 40, _rng())
    assert abs(shot.mean() - 0.5) < 0.01
    assert abs(shot.std() - np.sqrt(0.5 / 40)) < 0.01


def test_jpeg_quality_10_is_lossier_than_90(image):
    low, params = D.jpeg(image, 10)
    high, _ = D.jpeg(image, 90)
    assert params == {"kind": "jpeg", "quality": 10}
    assert low.shape == image.shape and low.dtype == np.float32
    assert psnr(image, low) < psnr(image, high) - 5
    gray, _ = D.jpeg(image[..., 1], 10)
    assert gray.shape == image.shape[:2]


def test_bicubic_downscale(image):
    small, params = D.bicubic_downscale(image[:70, :94], 4)
    assert small.shape == (17, 23, 3) and params["cropped_to"] == [68, 92]
    const = np.full((64, 64), 0.25, np.float32)
    np.testing.assert_allclose(D.bicubic_downscale(const, 4)[0], 0.25, atol=1e-6)
    # Anti-aliased: a pixel-level checkerboard averages out instead of aliasing.
    checker = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)
    assert np.abs(D.bicubic_downscale(checker, 4)[0] - 0.5).max() < 0.05


def test_document_degrade_keeps_text_readable_shape():
    page = np.ones((120, 200, 3), np.float32)
    page[50:60, 20:180] = 0
    out, params = D.document_degrade(page, _rng(2))
    assert out.shape == page.shape and params["kind"] == "document" and "kernel" in params
    assert out[55, 100].mean() < out[20, 100].mean()


def test_build_degradation_pipeline(image):
    cfg = {"blur": {"kinds": ["gaussian", "motion"], "sigma": [1, 3], "length": [5, 25]},
           "noise": {"sigma": [0, 0.01]}, "jpeg": None, "downscale": None}
    degrade = D.build_degradation(cfg)
    out, params = degrade(image, _rng())
    assert out.shape == image.shape and params["kind"] == "pipeline" and degrade.scale == 1
    assert [s["kind"] for s in params["steps"]][1] == "gaussian_noise"
    assert params["kernel"] is params["steps"][0]["kernel"]
    sr = D.build_degradation({"blur": {"kinds": ["gaussian"]}, "downscale": 4, "jpeg": 30})
    small, p = sr(image, _rng())
    assert small.shape == (18, 24, 3) and sr.scale == 4 and p["scale"] == 4
    assert [s["kind"] for s in p["steps"]] == ["gaussian", "bicubic_downscale", "jpeg"]
    never = D.build_degradation({"blur": {"kinds": ["gaussian"], "prob": 0.0}})
    np.testing.assert_array_equal(never(image, _rng())[0], image)
    for bad in ({"blurr": {}}, {"blur": {"sigmas": [1, 2]}}, {"noise": {"kind": "salt"}}, {"jpeg": {"q": 3}}):
        with pytest.raises(ConfigError):
            D.build_degradation(bad)


def test_h264_round_trip_is_lossy_4_2_0_and_keeps_odd_sizes(image):
    odd = image[:71, :95]
    out, params = D.h264(odd, 30)
    assert out.shape == odd.shape and out.dtype == np.float32 and params == {"kind": "h264", "crf": 30}
    assert 25 < psnr(odd, out) < 60
    assert psnr(odd, D.h264(odd, 45)[0]) < psnr(odd, D.h264(odd, 18)[0])  # a higher CRF loses more
    assert np.array_equal(out, D.h264(odd, 30)[0])  # deterministic
    grey, _ = D.h264(odd[..., 0], 30)
    assert grey.shape == odd.shape[:2]


def test_sensor_noise_grows_with_the_signal():
    flat = np.full((64, 64, 3), 0.1, np.float32), np.full((64, 64, 3), 0.8, np.float32)
    dark, bright = (D.sensor_noise(f, 1000.0, 0.0, _rng())[0] - f for f in flat)
    assert 1.5 < bright.std() / dark.std() < 4  # shot noise: sqrt(0.8 / 0.1) = 2.8
    read_only = D.sensor_noise(flat[0], 1e9, 0.02, _rng())[0] - flat[0]
    assert abs(read_only.std() - 0.02) < 0.002


def test_pipeline_takes_shake_extents_sensor_noise_and_h264(image):
    degrade = D.build_degradation({"blur": {"kinds": ["trajectory"], "trajectory_size": 39, "trajectory_length": [30, 30]},
                                   "noise": {"kind": "sensor", "peak": [500, 500], "sigma": 0.005}, "h264": {"crf": 28}})
    out, params = degrade(image, _rng())
    assert [p["kind"] for p in params["steps"]] == ["trajectory", "sensor_noise", "h264"]
    kernel = params["kernel"]
    ys, xs = np.nonzero(kernel > 0)
    assert kernel.shape == (39, 39) and max(np.ptp(ys), np.ptp(xs)) >= 28  # a 30 px path
    with pytest.raises(ConfigError):
        D.build_degradation({"h264": {"crf": 20, "preset": "slow"}})
