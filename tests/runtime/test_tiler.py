"""Tiler/stitcher properties, run through real ONNX Runtime sessions of tiny conv models."""
import cv2
import numpy as np
import onnxruntime as ort
import pytest

from restore.runtime.artifact import resolve_model
from restore.runtime.backends.onnxruntime import OnnxRuntimeBackend
from restore.runtime.errors import ConfigError
from restore.runtime.testing import write_conv_artifact
from restore.runtime.tiler import Tiler, axis_layout, feather, seam_ratio

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "identity": write_conv_artifact(root / "identity", layers=0, tile=32, overlap=8),
        "identity_gray": write_conv_artifact(root / "identity_gray", channels=1, layers=0, tile=32, overlap=8),
        "conv": write_conv_artifact(root / "conv", layers=3, tile=None, overlap=16),
        "conv_x4": write_conv_artifact(root / "conv_x4", layers=2, tile=None, overlap=8, scale=4),
        "fixed_x4": write_conv_artifact(root / "fixed_x4", layers=2, tile=16, overlap=8, scale=4),
    }


def tiler_for(path, **kw):
    backend = OnnxRuntimeBackend(resolve_model(path)).activate()
    if backend.tile:
        kw.setdefault("tile", None)
    return Tiler(backend, **{"tile": 32, "overlap": 8, "batch": 3, **kw})


def whole_image(path, image):
    """The model run once on the whole image (no tiling): the reference."""
    session = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
    y = session.run(None, {"input": image.transpose(2, 0, 1)[None].astype(np.float32)})[0][0]
    return np.clip(y.transpose(1, 2, 0), 0, 1)


@pytest.mark.parametrize("shape", [(1, 1), (1, 1, 3), (1, 7, 3), (9, 1, 3), (2, 3, 3), (31, 33, 3), (65, 130, 3), (100, 40, 1), (32, 32, 3)])
def test_identity_model_gives_back_the_image_for_any_size(models, shape):
    tiler = tiler_for(models["identity"])
    image = (RNG.random(shape) * 255).astype(np.uint8)
    out = tiler.restore(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("dtype,peak", [(np.uint16, 65535), (np.float32, 1.0), (np.float64, 1.0)])
def test_bit_depths_round_trip(models, dtype, peak):
    tiler = tiler_for(models["identity"])
    image = (RNG.random((45, 70, 3)) * peak).astype(dtype)
    out = tiler.restore(image)
    assert out.dtype == dtype
    np.testing.assert_allclose(out.astype(np.float64), image.astype(np.float64), atol=1e-6 * peak)


def test_gray_image_on_rgb_model_and_rgb_image_on_gray_model(models):
    gray = (RNG.random((40, 50)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(tiler_for(models["identity"]).restore(gray), gray)
    rgb = (RNG.random((40, 50, 3)) * 255).astype(np.uint8)
    # 3 samples per tile in batches of 2: tiles straddle batches
    np.testing.assert_array_equal(tiler_for(models["identity_gray"], batch=2).restore(rgb), rgb)


def test_alpha_is_passed_through_and_resized_at_x4(models):
    rgba = (RNG.random((37, 52, 4)) * 255).astype(np.uint8)
    out = tiler_for(models["conv"], tile=16, overlap=8).restore(rgba)
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    out4 = tiler_for(models["conv_x4"], tile=16, overlap=8).restore(rgba)
    assert out4.shape == (37 * 4, 52 * 4, 4)
    # strips join exactly like one whole-image resize
    np.testing.assert_array_equal(out4[..., 3], cv2.resize(rgba[..., 3], (52 * 4, 37 * 4), interpolation=cv2.INTER_LINEAR))
    gray_alpha = (RNG.random((20, 30, 2)) * 65535).astype(np.uint16)
    out = tiler_for(models["identity"]).restore(gray_alpha)
    np.testing.assert_array_equal(out, gray_alpha)


def test_tiled_equals_whole_image_for_a_conv_model(models):
    """3 conv layers: receptive radius 3 <= overlap / 4 = 4, so tiling is exact away from borders
    (at the borders the whole-image run sees zero padding, the tiler reflection)."""
    image = RNG.random((150, 203, 3)).astype(np.float32)
    tiled = tiler_for(models["conv"], tile=48, overlap=16, batch=4).restore(image)
    whole = whole_image(models["conv"], image)
    border = 4
    assert np.abs(tiled - whole)[border:-border, border:-border].max() < 1e-3


def test_tiled_equals_whole_image_at_x4(models):
    image = RNG.random((41, 67, 3)).astype(np.float32)
    tiled = tiler_for(models["conv_x4"], tile=16, overlap=8).restore(image)
    whole = whole_image(models["conv_x4"], image)
    assert tiled.shape == (164, 268, 3)
    border = 3 * 4
    assert np.abs(tiled - whole)[border:-border, border:-border].max() < 1e-3


def test_fixed_tile_backend_imposes_its_tile(models):
    with pytest.raises(ConfigError):
        tiler_for(models["fixed_x4"], tile=100)
    tiler = tiler_for(models["fixed_x4"])
    assert tiler.tile == 16 and tiler.scale == 4
    out = tiler.restore((RNG.random((5, 70, 3)) * 255).astype(np.uint8))
    assert out.shape == (20, 280, 3)


def test_huge_image_path_reads_and_writes_strips_in_order(models):
    """The input is read by row slices no taller than a tile, the output is written in
    increasing row order: the contract that lets a lazy reader / strip writer stand in."""

    class LazyImage:
        def __init__(self, array):
            self.array, self.shape, self.dtype, self.reads = array, array.shape, array.dtype, []

        def __getitem__(self, rows):
            self.reads.append(rows.stop - rows.start)
            return self.array[rows]

    class StripWriter:
        def __init__(self, shape):
            self.shape, self.next_row, self.rows = shape, 0, []

        def __setitem__(self, rows, value):
            assert rows.start == self.next_row, "strips out of order"
            self.next_row = rows.stop
            self.rows.append(value)

    image = (RNG.random((300, 90, 3)) * 255).astype(np.uint8)
    tiler = tiler_for(models["identity"], tile=32, overlap=8)
    tiler.rows_per_call_tiles = 1  # one tile row per call, as for a huge image
    lazy, writer = LazyImage(image), StripWriter(image.shape)
    tiler.restore(lazy, out=writer)
    assert max(lazy.reads) <= 32
    assert writer.next_row == 300
    np.testing.assert_array_equal(np.concatenate(writer.rows), image)


@pytest.mark.parametrize("shape", [(300, 90, 3), (40, 41, 4), (33, 200)])
def test_restoring_in_place_equals_a_fresh_output(models, shape):
    image = (RNG.random(shape) * 255).astype(np.uint8)
    tiler = tiler_for(models["conv"], tile=32, overlap=12)
    tiler.rows_per_call_tiles = 1
    expected = tiler.restore(image)
    assert tiler.restore(image, out=image) is image
    np.testing.assert_array_equal(image, expected)


def test_seam_ratio_sees_hard_seams_and_not_feathered_ones(models):
    """A zero-padded conv model changes tile edges: without overlap that is a seam on every tile
    boundary; with feathered overlap the edge pixels get no weight."""
    y, x = np.mgrid[0:192, 0:192] / 192.0
    image = np.stack([0.5 + 0.3 * np.sin(6 * x), 0.5 + 0.3 * np.cos(5 * y), 0.5 + 0.2 * x * y], axis=2).astype(np.float32)
    hard = tiler_for(models["conv"], tile=48, overlap=0).restore(image)
    soft = tiler_for(models["conv"], tile=48, overlap=16).restore(image)
    assert seam_ratio(hard, 48, 0) > 2.0
    assert seam_ratio(soft, 48, 16) < 1.2


def test_skip_tile_passes_tiles_through(models):
    image = (RNG.random((70, 90, 3)) * 255).astype(np.uint8)
    out = tiler_for(models["conv"], tile=32, overlap=8).restore(image, skip_tiles=lambda image, boxes: [True] * len(boxes))
    np.testing.assert_array_equal(out, image)
    out4 = tiler_for(models["conv_x4"], tile=16, overlap=8).restore(image, skip_tiles=lambda image, boxes: [True] * len(boxes))
    assert out4.shape == (280, 360, 3)


def test_skip_boxes_cover_the_image_and_stay_inside_it(models):
    image = (RNG.random((70, 90, 3)) * 255).astype(np.uint8)
    seen = []

    def skip_left_half(img, boxes):
        seen.extend(boxes)
        return [x + w <= 45 for y, x, h, w in boxes]

    out = tiler_for(models["conv"], tile=32, overlap=8).restore(image, skip_tiles=skip_left_half)
    covered = np.zeros(image.shape[:2], bool)
    for y, x, h, w in seen:
        assert 0 <= y and y + h <= 70 and 0 <= x and x + w <= 90
        covered[y : y + h, x : x + w] = True
    assert covered.all()
    np.testing.assert_array_equal(out[:, :10], image[:, :10])  # only passed-through tiles there
    assert not np.array_equal(out[:, 60:], image[:, 60:])


def test_feather_weights_sum_to_one_across_an_overlap():
    tile, overlap = 40, 16
    w = feather(tile, overlap)
    total = np.zeros(100)
    for start in (0, tile - overlap):
        total[start : start + tile] += w
    inner = total[3 * overlap // 4 : 2 * tile - overlap - 3 * overlap // 4]  # away from the outer ramps
    np.testing.assert_allclose(inner, 1.0, atol=1e-6)
    assert w[: overlap // 4].max() == 0.0


def test_count_tiles_matches_the_tiles_run(models):
    tiler = tiler_for(models["conv"], tile=32, overlap=8)
    image = np.zeros((70, 130, 3), np.uint8)
    done = []
    tiler.restore(image, on_tiles=done.append)
    assert sum(done) == tiler.count_tiles(image.shape) == 3 * 6  # 70 -> starts 0, 24, 46; 130 -> six


def test_layout_covers_the_padded_axis():
    for length in (1, 5, 31, 32, 33, 100, 1000):
        pad, padded, starts = axis_layout(length, 32, 8)
        assert starts[0] == 0 and starts[-1] + 32 == padded >= length + 2 * pad
        assert all(b - a <= 32 - 8 for a, b in zip(starts, starts[1:]))


def test_bad_tiling_options_are_config_errors(models):
    with pytest.raises(ConfigError):
        tiler_for(models["conv"], tile=32, overlap=32)
    with pytest.raises(ConfigError, match="half the tile"):
        tiler_for(models["conv"], tile=32, overlap=17)  # 15x the work of overlap 8 for no better picture
    assert tiler_for(models["conv"], tile=32, overlap=16).overlap == 16
    assert tiler_for(models["conv"], tile=16, overlap=None, default_overlap=32).overlap == 8  # a model's advice, a user's small --tile
    with pytest.raises(ConfigError):
        tiler_for(models["conv"], batch=0)
