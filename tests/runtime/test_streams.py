"""Image I/O with real OpenCV codecs and a real ONNX Runtime model (video: test_media.py)."""
import cv2
import numpy as np
import pytest

from restore.runtime import Restorer
from restore.runtime import streams
from restore.runtime.errors import InputError, OutputError
from restore.runtime.testing import write_conv_artifact


@pytest.fixture(scope="module")
def x4(tmp_path_factory):
    with Restorer(write_conv_artifact(tmp_path_factory.mktemp("m") / "x4", layers=1, tile=16, overlap=4, scale=4)) as r:
        yield r


def test_images_keep_channel_order_and_bit_depth(tmp_path):
    rgb16 = np.zeros((4, 5, 3), np.uint16)
    rgb16[..., 0] = 60000  # red
    streams.write_image(tmp_path / "red.png", rgb16.copy())
    on_disk = cv2.imread(str(tmp_path / "red.png"), cv2.IMREAD_UNCHANGED)
    assert on_disk.dtype == np.uint16 and on_disk[0, 0].tolist() == [0, 0, 60000]  # BGR on disk
    np.testing.assert_array_equal(streams.read_image(tmp_path / "red.png"), rgb16)


def test_bad_inputs_and_outputs_are_user_errors(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError):
        streams.read_image(tmp_path / "bad.png")


@pytest.mark.parametrize("shape,dtype", [((37, 53, 3), np.uint8), ((20, 30), np.uint16), ((25, 26, 4), np.uint8), ((9, 11, 3), np.uint16), ((1, 1, 3), np.uint8)])
def test_png_strip_writer_is_lossless_and_readable_by_opencv(tmp_path, shape, dtype):
    image = (np.random.default_rng(3).random(shape) * np.iinfo(dtype).max).astype(dtype)
    writer = streams.PngStripWriter(tmp_path / "s.png", shape, dtype)
    for r0 in range(0, shape[0], 7):
        writer[r0 : min(r0 + 7, shape[0])] = image[r0 : r0 + 7]
    writer.close()
    np.testing.assert_array_equal(streams.read_image(tmp_path / "s.png"), image)
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]


def test_png_strip_writer_refuses_disorder_and_leaves_nothing_when_incomplete(tmp_path):
    writer = streams.PngStripWriter(tmp_path / "s.png", (10, 4, 3), np.uint8)
    writer[0:5] = np.zeros((5, 4, 3), np.uint8)
    with pytest.raises(ValueError):
        writer[6:10] = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(OutputError):
        writer.close()
    assert list(tmp_path.iterdir()) == []


def test_restoring_into_a_streamed_png_equals_the_in_memory_result(tmp_path, x4):
    image = (np.random.default_rng(4).random((45, 61, 4)) * 255).astype(np.uint8)
    streams.write_restored_image(x4, image, tmp_path / "big.png")
    np.testing.assert_array_equal(streams.read_image(tmp_path / "big.png"), x4.restore(image))
