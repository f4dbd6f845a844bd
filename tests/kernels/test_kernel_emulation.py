"""The kernels' own block code (fourier_bottleneck_blocks.cuh), executed thread by thread on the
CPU by fourier_bottleneck_emulate, against the NumPy reference. Running the threads of each step
in both orders shows any race inside a step (a step's threads must not depend on each other)."""
import numpy as np
import pytest

from restore.kernels.fourier_bottleneck import library
from restore.kernels.fourier_bottleneck.reference import fourier_bottleneck_ref

TOLERANCE = {np.float32: 1e-5, np.float16: 2e-3}
FUSED = [(8, 8), (8, 16), (16, 8), (32, 32), (64, 64), (128, 128), (8, 128), (128, 16), (32, 64)]
GENERAL = [(24, 40), (100, 60), (7, 5), (1, 1), (3, 8), (256, 16), (12, 9)]


def relative_error(y, ref):
    return np.abs(y.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30)


def check(shape, mode, dtype, grid=(8, 8), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    weight = rng.standard_normal((shape[1], *grid, 2)).astype(np.float32)
    y = library.emulate(x, weight, mode)
    y_reversed = library.emulate(x, weight, mode, reverse_threads=True)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert np.isfinite(y).all()
    np.testing.assert_array_equal(y, y_reversed)
    ref = fourier_bottleneck_ref(x.astype(np.float64), weight, mode)
    assert relative_error(y, ref) <= TOLERANCE[dtype]


@pytest.mark.parametrize("h, w", FUSED)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("mode", ["spectral", "gir"])
def test_fused_path_matches_reference(fb_library, h, w, dtype, mode):
    assert library.launch_plan((2, 3, h, w), (8, 8), mode, dtype).path == "fused"
    check((2, 3, h, w), mode, dtype)


@pytest.mark.parametrize("h, w", GENERAL)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_general_path_matches_reference(fb_library, h, w, dtype):
    assert library.launch_plan((1, 2, h, w), (8, 8), "spectral", dtype).path == "general"
    check((1, 2, h, w), "spectral", dtype)


def test_general_path_gir_mode(fb_library):
    check((1, 2, 24, 40), "gir", np.float32)


@pytest.mark.parametrize("grid", [(2, 2), (5, 9), (16, 4)])
def test_non_square_control_grids_are_sampled_like_the_reference(fb_library, grid):
    check((1, 4, 32, 16), "spectral", np.float32, grid=grid, seed=1)
    check((1, 4, 20, 12), "spectral", np.float32, grid=grid, seed=2)


def test_each_channel_uses_its_own_response(fb_library):
    x = np.random.default_rng(3).standard_normal((2, 3, 16, 16)).astype(np.float32)
    weight = np.zeros((3, 4, 4, 2), np.float32)
    weight[0, ..., 0] = 1.0  # identity
    weight[2, ..., 1] = 1.0  # multiply by i
    y = library.emulate(x, weight, "spectral")
    np.testing.assert_allclose(y[:, 0], x[:, 0], atol=1e-5)
    np.testing.assert_array_equal(y[:, 1], 0.0)
    ref = fourier_bottleneck_ref(x, weight, "spectral")
    np.testing.assert_allclose(y[:, 2], ref[:, 2], atol=1e-5)


def test_fused_path_refuses_misaligned_buffers(fb_library):
    x = np.zeros(2 * 64 + 1, np.float32)[1:].reshape(1, 2, 8, 8)  # 4 bytes past an aligned address
    with pytest.raises(library.FourierBottleneckError, match="16-byte aligned"):
        library.emulate(x, np.ones((2, 4, 4, 2), np.float32))
