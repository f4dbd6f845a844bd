"""Image and video I/O with real OpenCV codecs and a real ONNX Runtime model."""
import cv2
import numpy as np
import pytest

from restore.runtime import Restorer
from restore.runtime import streams
from restore.runtime.errors import InputError, OutputError
from restore.runtime.testing import decodable_frames, write_conv_artifact

FPS, W, H, N = 15.0, 64, 48, 12


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    with Restorer(write_conv_artifact(tmp_path_factory.mktemp("m") / "identity", layers=0, tile=32, overlap=8)) as r:
        yield r


@pytest.fixture(scope="module")
def x4(tmp_path_factory):
    with Restorer(write_conv_artifact(tmp_path_factory.mktemp("m") / "x4", layers=1, tile=16, overlap=4, scale=4)) as r:
        yield r


def make_video(path, frames=N, fps=FPS, size=(W, H)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(frames):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        cv2.circle(frame, (5 + 4 * i, size[1] // 2), 8, (40, 200, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def probe(path):
    cap = cv2.VideoCapture(str(path))
    info = cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    return (decodable_frames(path), *info)


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_video_round_trip_keeps_frame_count_size_and_rate(tmp_path, identity, suffix):
    src = make_video(tmp_path / "in.mp4")
    dst = streams.restore_video(identity, src, tmp_path / f"out{suffix}", progress=False)
    assert probe(dst) == (N, FPS, W, H)
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_x4_video_is_four_times_larger(tmp_path, x4):
    dst = streams.restore_video(x4, make_video(tmp_path / "in.mp4", frames=3), tmp_path / "out.mp4", progress=False)
    assert probe(dst) == (3, FPS, 4 * W, 4 * H)


def test_interrupt_leaves_a_playable_partial_video(tmp_path, identity):
    src = make_video(tmp_path / "in.mp4")
    dst = tmp_path / "out.mp4"

    def frames_then_ctrl_c():
        for i, frame in enumerate(streams.VideoReader(src)):
            if i == 5:
                raise KeyboardInterrupt
            yield frame

    writer = streams.VideoWriter(dst, FPS, (W, H))
    with pytest.raises(KeyboardInterrupt):
        streams.restore_frames(identity, frames_then_ctrl_c(), writer, progress=False)
    assert not dst.exists()
    assert probe(tmp_path / "out.partial.mp4") == (5, FPS, W, H)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.partial.mp4"]


def test_other_errors_leave_no_video(tmp_path, identity):
    def frames_then_bad_size():
        yield np.zeros((H, W, 3), np.uint8)
        yield np.zeros((H + 2, W, 3), np.uint8)

    writer = streams.VideoWriter(tmp_path / "out.mp4", FPS, (W, H))
    with pytest.raises(InputError):
        streams.restore_frames(identity, frames_then_bad_size(), writer, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_decoder_stays_a_bounded_number_of_frames_ahead(tmp_path):
    src = make_video(tmp_path / "in.mp4", frames=30)
    reader = streams.VideoReader(src, queue_size=3)
    frames = iter(reader)
    next(frames)
    reader._thread.join(timeout=0.5)  # it would finish the whole video if it were unbounded
    assert reader._thread.is_alive() and reader._queue.qsize() <= 3
    reader.close()
    assert not reader._thread.is_alive()


def test_folder_to_video_and_video_to_frames(tmp_path, identity):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((H, W, 3), 50 * i, np.uint8))
    video = streams.restore_folder_to_video(identity, folder, tmp_path / "v.avi", fps=10, progress=False)
    assert probe(video) == (4, 10.0, W, H)
    out = streams.restore_video_to_frames(identity, video, tmp_path / "back", progress=False)
    assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}.png" for i in range(4)]


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
    (tmp_path / "bad.mp4").write_bytes(b"nothing")
    with pytest.raises(InputError):
        streams.VideoReader(tmp_path / "bad.mp4")
    with pytest.raises(OutputError):
        streams.VideoWriter(tmp_path / "out.gif", FPS, (W, H))


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
