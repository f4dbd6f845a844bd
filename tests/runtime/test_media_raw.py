"""Raw frames on stdin (``restore run - --raw WxH[:PIXFMT[:FPS]]``), read by FFmpeg's rawvideo
demuxer, through a real ONNX Runtime identity model in a real subprocess."""
import subprocess
import sys

import av
import numpy as np
import pytest

from restore.runtime.testing import write_conv_artifact

WIDTH, HEIGHT = 64, 48


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_conv_artifact(tmp_path_factory.mktemp("m") / "identity", layers=0, tile=32, overlap=8)


def frames(n):
    """n rgb24 frames, each a different flat grey, as the bytes ffmpeg -f rawvideo -pix_fmt rgb24 writes."""
    return b"".join(np.full((HEIGHT, WIDTH, 3), 30 * i, np.uint8).tobytes() for i in range(n))


def run(model, cwd, data, *args):
    return subprocess.run([sys.executable, "-m", "restore.runtime", "run", "-", "--model", str(model), "-q", *args],
                          input=data, cwd=cwd, capture_output=True, timeout=120)


def test_raw_rgb24_frames_on_stdin(tmp_path, model):
    proc = run(model, tmp_path, frames(6), "--raw", f"{WIDTH}x{HEIGHT}:rgb24:10", "-o", "out.mkv", "--codec", "ffv1")
    assert proc.returncode == 0, proc.stderr.decode()
    with av.open(str(tmp_path / "out.mkv")) as c:
        decoded = list(c.decode(video=0))
    assert [(f.width, f.height) for f in decoded] == [(WIDTH, HEIGHT)] * 6
    assert [round(float(f.pts * f.time_base), 3) for f in decoded] == [i / 10 for i in range(6)]
    means = [f.to_ndarray(format="rgb24").mean() for f in decoded]
    assert np.allclose(means, [30 * i for i in range(6)], atol=1)  # each frame is its own, in order


def test_partial_last_raw_frame_is_reported_not_dropped(tmp_path, model):
    proc = run(model, tmp_path, frames(3) + b"\x80" * 100, "--raw", f"{WIDTH}x{HEIGHT}", "-o", "out.mkv")
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 3 and len(err) == 1, err
    assert "100 bytes of a partial frame after frame 3" in err[0] and f"{WIDTH * HEIGHT * 3} bytes" in err[0]
    assert not (tmp_path / "out.mkv").exists()  # an incomplete result never under the final name
    with av.open(str(tmp_path / "out.partial.mkv")) as c:
        assert len(list(c.decode(video=0))) == 3


@pytest.mark.parametrize("value, words", [
    ("640", "not a frame size"), ("0x48", "not a frame size"), ("64x48:rgb25", "unknown pixel format 'rgb25'"),
    ("64x48:rgb24:0", "'0' is not a frame rate"), ("64x48:rgb24:1001", "'1001' is not a frame rate"),
    ("64x48:rgb24:nan", "'nan' is not a frame rate"), ("64x48:rgb24:25:9", "not a frame size"),
])
def test_bad_raw_values_are_refused_in_one_line(tmp_path, model, value, words):
    proc = run(model, tmp_path, frames(2), "--raw", value, "-o", "out.mkv")
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 7 and len(err) == 1 and f"--raw {value}: {words}" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_raw_needs_stdin_as_the_input(tmp_path, model):
    (tmp_path / "in.raw").write_bytes(frames(2))
    proc = subprocess.run([sys.executable, "-m", "restore.runtime", "run", "in.raw", "--raw", f"{WIDTH}x{HEIGHT}", "-o", "out.mkv",
                           "--model", str(model), "-q"], cwd=tmp_path, capture_output=True, timeout=120)
    assert proc.returncode == 7 and b"--raw: only describes raw frames on stdin" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.raw"]
