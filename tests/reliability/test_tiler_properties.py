"""Property-based tests (hypothesis) of the tiler over random image sizes, tiles and overlaps:
the tile grid covers the image, the blending weights are positive and normalise to one, output
shapes follow the model, and an identity model gives back its input exactly."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from restore.runtime.artifact import resolve_model
from restore.runtime.backends.onnxruntime import OnnxRuntimeBackend
from restore.runtime.testing import write_conv_artifact
from restore.runtime.tiler import Tiler, axis_layout, feather, max_overlap, reflect_indices, weight_sum

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def tile_and_overlap(draw, max_tile=96):
    tile = draw(st.integers(2, max_tile))
    overlap = draw(st.integers(0, max_overlap(tile)))  # what the Tiler accepts
    return tile, overlap


@SETTINGS
@given(length=st.integers(1, 700), geometry=tile_and_overlap(), scale=st.sampled_from([1, 2, 4]))
def test_tile_grid_covers_every_pixel_and_weights_normalise(length, geometry, scale):
    tile, overlap = geometry
    pad, padded, starts = axis_layout(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == padded
    assert padded >= length + 2 * pad and padded >= tile
    assert all(b > a for a, b in zip(starts, starts[1:]))
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:])), "neighbours overlap by at least `overlap`"
    covered = np.zeros(padded, int)
    for s in starts:
        covered[s : s + tile] += 1
    assert covered.min() >= 1
    # blending happens at the output resolution: everything times the model scale
    t_out, starts_out = tile * scale, [s * scale for s in starts]
    w = feather(t_out, overlap * scale)
    assert w.shape == (t_out,) and w.min() >= 0 and w.max() <= 1
    total = weight_sum(padded * scale, starts_out, t_out, w)
    image = slice(pad * scale, (pad + length) * scale)
    assert total[image].min() > 0, "every image pixel gets weight from some tile"
    # normalised weights of the tiles that touch a pixel sum to exactly one: each pixel is
    # counted once in the blend
    normalised = np.zeros(padded * scale, np.float64)
    safe_total = np.where(total > 0, total, 1.0)  # the padding outside the image may get none
    for s in starts_out:
        normalised[s : s + t_out] += w / safe_total[s : s + t_out]
    np.testing.assert_allclose(normalised[image], 1.0, rtol=1e-6)


@SETTINGS
@given(length=st.integers(1, 400), pad=st.integers(0, 64), extra=st.integers(0, 64))
def test_reflect_padding_stays_inside_the_image(length, pad, extra):
    padded = length + 2 * pad + extra
    idx = reflect_indices(length, pad, padded)
    assert idx.shape == (padded,) and idx.min() >= 0 and idx.max() < length
    np.testing.assert_array_equal(idx[pad : pad + length], np.arange(length))


@pytest.fixture(scope="module")
def identity_backend(tmp_path_factory):
    """A real ONNX Runtime session of an Identity graph with dynamic H/W, shared by all examples."""
    directory = write_conv_artifact(tmp_path_factory.mktemp("identity") / "id", layers=0, tile=None, overlap=8)
    backend = OnnxRuntimeBackend(resolve_model(directory))
    backend.activate()
    yield backend
    backend.deactivate()


@pytest.fixture(scope="module")
def conv_x4_backend(tmp_path_factory):
    directory = write_conv_artifact(tmp_path_factory.mktemp("x4") / "x4", layers=1, scale=4, tile=None, overlap=4)
    backend = OnnxRuntimeBackend(resolve_model(directory))
    backend.activate()
    yield backend
    backend.deactivate()


IMAGE_KINDS = st.sampled_from([(np.uint8, None), (np.uint8, 1), (np.uint8, 3), (np.uint8, 4), (np.uint16, 3),
                               (np.uint16, 2), (np.float32, 3), (np.float32, None)])


def random_image(h, w, kind, seed):
    dtype, channels = kind
    shape = (h, w) if channels is None else (h, w, channels)
    rng = np.random.default_rng(seed)
    if dtype == np.float32:
        return rng.random(shape, dtype=np.float32)
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True, dtype=dtype)


@SETTINGS
@given(h=st.integers(1, 150), w=st.integers(1, 150), geometry=tile_and_overlap(64), batch=st.integers(1, 5),
       kind=IMAGE_KINDS, seed=st.integers(0, 2**16))
def test_identity_model_gives_back_the_input(identity_backend, h, w, geometry, batch, kind, seed):
    tile, overlap = geometry
    image = random_image(h, w, kind, seed)
    tiler = Tiler(identity_backend, tile=tile, overlap=overlap, batch=batch)
    out = tiler.restore(image)
    assert out.shape == image.shape and out.dtype == image.dtype
    if image.dtype == np.float32:
        np.testing.assert_allclose(out, image, rtol=1e-5, atol=1e-6)  # float32 weighted average of equal values
    else:
        np.testing.assert_array_equal(out, image)


def check_x4(backend, h, w, tile, overlap, kind, seed):
    image = random_image(h, w, kind, seed)
    out = Tiler(backend, tile=tile, overlap=overlap, batch=3).restore(image)
    assert out.shape == (4 * h, 4 * w) + image.shape[2:] and out.dtype == image.dtype
    assert np.isfinite(out.astype(np.float64)).all(), "every output pixel must get blending weight"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=st.integers(1, 60), w=st.integers(1, 60), geometry=tile_and_overlap(32), kind=IMAGE_KINDS, seed=st.integers(0, 99))
def test_x4_output_shape_and_values(conv_x4_backend, h, w, geometry, kind, seed):
    check_x4(conv_x4_backend, h, w, *geometry, kind, seed)


def test_x4_overlap_1_border_gets_weight(conv_x4_backend):
    """Found by hypothesis: with overlap 1 the padding was 0 input pixels while the feather zeroes
    the first output pixel of a tile at x2/x4, so the image border got weight 0 (NaN)."""
    check_x4(conv_x4_backend, 1, 1, 2, 1, (np.float32, 3), 0)
