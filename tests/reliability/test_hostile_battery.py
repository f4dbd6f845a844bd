"""A hostile or unlucky user's battery against ``restore run`` and ``restore detect``: pixel
layouts a decoder or encoder can lose (gray+alpha TIFF, alpha in video and JPEG), closed or
stalled standard streams, Ctrl-C while waiting for input, names at NAME_MAX, option values at the
edges. Each case runs the real command in a fresh process on real files made here (Pillow,
tifffile, PyAV) and checks the rules of docs/RELIABILITY.md: a wrong result is never written
silently, a mistake is one line with its exit code, no traceback, no hang."""
import contextlib
import os
import subprocess
import sys

import av
import numpy as np
import pytest
from PIL import Image

from restore.runtime.streams import read_image


def restore_proc(*args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, closed=()):
    """(exit code, stderr) of ``restore ARGS`` in a fresh process; ``closed``: standard streams
    (0, 1) the child starts with closed, as a shell's ``<&-`` or ``>&-`` leaves them."""
    proc = subprocess.run([sys.executable, "-c", "from restore.runtime.cli import main; main()", *map(str, args)], stdin=stdin,
                          stdout=stdout, stderr=subprocess.PIPE, timeout=120, preexec_fn=lambda: [os.close(fd) for fd in closed])
    return proc.returncode, proc.stderr.decode("utf-8", "replace")


def write_video(path, frames=3, size=(32, 24), codec="ffv1", pix_fmt="yuv444p"):
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], pix_fmt
        for _ in range(frames):
            image = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


# --- images whose layout the decoder could lose ---------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_gray_alpha_tiff_keeps_its_alpha_and_depth_or_is_refused(tmp_path, kit, tiny_model, dtype):
    """OpenCV decodes a 2-sample TIFF as 8-bit gray: alpha gone, 16 bits cut to 8, exit 0."""
    tifffile = pytest.importorskip("tifffile")
    pixels = kit.noise((24, 32, 2), dtype)
    src = tmp_path / "la.tif"
    tifffile.imwrite(src, pixels, photometric="minisblack", extrasamples=[2])
    result = kit.run_cli("restore", "run", src, "-o", tmp_path / "out.tif", "--model", tiny_model, "-q")
    if result.code == 0:
        out = read_image(tmp_path / "out.tif")
        assert out.dtype == dtype and out.shape == pixels.shape, (out.dtype, out.shape)
        np.testing.assert_array_equal(out[..., 1], pixels[..., 1])
    else:
        kit.assert_user_error(result, "restore", 3, src)
        assert not (tmp_path / "out.tif").exists()


@pytest.fixture(scope="module")
def identity_model(tmp_path_factory):
    """Output = input: any change in a restored file is the tool's doing."""
    from restore.runtime.testing import write_conv_artifact

    return write_conv_artifact(tmp_path_factory.mktemp("identity") / "identity", layers=0, tile=32, overlap=8)


@pytest.mark.parametrize("compression", [None, "tiff_lzw"])
def test_rgba_tiff_keeps_its_colours(tmp_path, kit, identity_model, compression):
    """libtiff's RGBA reader (OpenCV's) premultiplies an ordinary alpha: 200 at alpha 128 came back 100."""
    pixels = kit.noise((24, 32, 4), np.uint8)
    src = tmp_path / "rgba.tif"
    Image.fromarray(pixels, "RGBA").save(src, compression=compression)
    for out in (tmp_path / "out.png", tmp_path / "out.tif"):
        assert kit.run_cli("restore", "run", src, "-o", out, "--model", identity_model, "-q").code == 0
        np.testing.assert_array_equal(read_image(out), pixels)


UPRIGHT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1], 5: lambda a: a.swapaxes(0, 1),
           6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 2).swapaxes(0, 1), 8: lambda a: np.rot90(a, 1)}


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_tiff_orientation_is_applied_once(tmp_path, kit, identity_model, orientation):
    """OpenCV turned 2-4 itself (then the runtime turned them back) and failed on 5-8 ("corrupt")."""
    pixels = kit.noise((24, 32, 3), np.uint8)
    for compression in (None, "tiff_lzw"):
        src = tmp_path / f"o{orientation}{compression or ''}.tif"
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(pixels).save(src, exif=exif, compression=compression)
        out = tmp_path / f"{src.stem}.png"
        assert kit.run_cli("restore", "run", src, "-o", out, "--model", identity_model, "-q").code == 0
        np.testing.assert_array_equal(read_image(out), UPRIGHT[orientation](pixels))


def test_deep_tiff_with_an_orientation_is_refused_in_one_line(tmp_path, kit, identity_model):
    tifffile = pytest.importorskip("tifffile")
    src = tmp_path / "deep.tif"
    tifffile.imwrite(src, kit.noise((24, 32, 3), np.uint16), photometric="rgb", extratags=[(0x0112, "H", 1, 6, True)])
    result = kit.run_cli("restore", "run", src, "-o", tmp_path / "out.png", "--model", identity_model, "-q")
    kit.assert_user_error(result, "restore", 3, src)
    assert "orientation" in result.stderr and not (tmp_path / "out.png").exists()


def test_a_cmyk_profile_is_not_attached_to_the_rgb_output(tmp_path, kit, identity_model):
    from PIL import ImageCms

    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[16:20] = b"CMYK"  # a CMYK profile's colour space
    src = tmp_path / "cmyk.jpg"
    Image.fromarray(kit.noise((24, 32, 3), np.uint8)).convert("CMYK").save(src, icc_profile=bytes(profile))
    for out in (tmp_path / "out.jpg", tmp_path / "out.png"):
        result = kit.run_cli("restore", "run", src, "-o", out, "--model", identity_model)
        assert result.code == 0 and "colour profile is for CMYK" in result.stderr, result.stderr
        with Image.open(out) as image:
            assert image.mode == "RGB" and "icc_profile" not in image.info


# --- closed standard streams -----------------------------------------------------------------------
def test_stdout_closed_with_dash_output_is_one_line(tmp_path, tiny_model):
    """``restore run clip.mkv -o - >&-``: there is no stdout to write the video to."""
    src = write_video(tmp_path / "clip.mkv")
    code, err = restore_proc("run", src, "-o", "-", "--model", tiny_model, "-q", stdout=None, closed=(1,))
    assert code == 5 and "Traceback" not in err, err
    assert [line for line in err.splitlines() if line.startswith("restore: error:")], err


def test_stdin_closed_with_dash_input_is_one_line(tmp_path, tiny_model):
    code, err = restore_proc("run", "-", "-o", tmp_path / "out.mkv", "--model", tiny_model, "-q", stdin=None, closed=(0,))
    assert code == 3 and "Traceback" not in err, err
    assert len([line for line in err.splitlines() if line.startswith("restore: error: stdin")]) == 1, err
    assert not list(tmp_path.glob("out*"))


# --- option values at the edges ----------------------------------------------------------------------
def test_batch_zero_is_refused_like_negative_batches(tmp_path, kit, tiny_model):
    """``--batch 0`` fell back to the artifact's advice while -1 was refused."""
    src = tmp_path / "a.png"
    Image.fromarray(kit.noise((24, 32, 3))).save(src)
    result = kit.run_cli("restore", "run", src, "-o", tmp_path / "b.png", "--model", tiny_model, "--batch", 0)
    kit.assert_user_error(result, "restore", 7, "batch")
    assert not (tmp_path / "b.png").exists()


# --- alpha a video cannot carry --------------------------------------------------------------------
def test_a_video_with_alpha_says_its_alpha_is_dropped(tmp_path, kit, tiny_model):
    """A yuva420p FFV1 video came out opaque with no word on stderr."""
    src = write_video(tmp_path / "alpha.mkv", pix_fmt="yuva420p")
    result = kit.run_cli("restore", "run", src, "-o", tmp_path / "out.mkv", "--model", tiny_model, "-q")
    assert result.code == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("restore: note:")]
    assert len(notes) == 1 and "alpha" in notes[0] and str(src) in notes[0], result.stderr
    with av.open(str(tmp_path / "out.mkv")) as out:
        assert sum(1 for _ in out.decode(video=0)) == 3


def test_rgba_frames_into_a_video_say_their_alpha_is_dropped(tmp_path, kit, tiny_model):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(kit.noise((24, 32, 4), seed=i), "RGBA").save(frames / f"{i}.png")
    result = kit.run_cli("restore", "run", frames, "-o", tmp_path / "out.mkv", "--model", tiny_model, "-q")
    assert result.code == 0, result.stderr
    assert "alpha" in result.stderr and str(frames) in result.stderr, result.stderr


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_gray_alpha_frames_make_a_gray_video(tmp_path, kit, tiny_model, dtype):
    """LA PNG frames failed as exit 5 'video encoding failed (Unexpected numpy array shape)'."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        pixels = kit.noise((24, 32, 2), dtype, seed=i)
        if dtype == np.uint8:
            Image.fromarray(pixels, "LA").save(frames / f"{i}.png")
        else:  # Pillow writes no 16-bit LA: through the runtime's own PNG writer
            from restore.runtime.streams import write_image
            write_image(frames / f"{i}.png", pixels)
    result = kit.run_cli("restore", "run", frames, "-o", tmp_path / "out.mkv", "--model", tiny_model, "-q", "--codec", "ffv1")
    assert result.code == 0, result.stderr
    assert "alpha" in result.stderr, result.stderr
    with av.open(str(tmp_path / "out.mkv")) as out:
        pictures = [f.to_ndarray(format="rgb24") for f in out.decode(video=0)]
    assert len(pictures) == 3 and pictures[0].shape == (24, 32, 3)
    channels = pictures[0].astype(int)
    assert np.abs(channels[..., 0] - channels[..., 2]).max() <= 1  # gray stays gray (16-bit: rounding in the conversion)


@pytest.mark.parametrize("option", ["crf=abc", "preset=warp9", "profile=nonsense"])
def test_an_encoder_option_value_the_encoder_refuses_is_an_option_error(tmp_path, kit, tiny_model, option):
    """A known key with a bad value was exit 6 'cannot start libx264' (a backend error)."""
    src = write_video(tmp_path / "clip.mkv")
    result = kit.run_cli("restore", "run", src, "-o", tmp_path / "out.mp4", "--model", tiny_model, "--encoder-opt", option)
    kit.assert_user_error(result, "restore", 7, option)
    assert not list(tmp_path.glob("*out*"))


@pytest.mark.parametrize("codec", ["hevc", "av1"])
def test_a_frame_too_small_for_the_codec_is_one_option_error_without_encoder_noise(tmp_path, kit, tiny_model, codec):
    """2x2 frames: x265 and SVT-AV1 refuse them; this was exit 6 'check the --encoder-opt values'
    (none were given) and SVT-AV1 printed four 'Svt[error]' lines of its own."""
    src = write_video(tmp_path / "tiny.mkv", size=(2, 2))
    result = kit.run_cli("restore", "run", src, "-o", tmp_path / "out.mkv", "--model", tiny_model, "--codec", codec, "-q")
    line = kit.assert_user_error(result, "restore", 7, "2x2")
    assert result.stderr.strip() == line, result.stderr
    assert not list(tmp_path.glob("*out*"))


# --- names at the file system's limit ---------------------------------------------------------------
def test_a_legal_name_of_nearly_255_bytes_is_written(tmp_path, kit, tiny_model):
    """A 254-byte image name (125 x 'é') and a 252-byte video name (62 emoji) are legal, but their
    temporary and lock names (``.NAME.XXXXXXXX.partial.EXT``, ``.NAME.restore-lock``) were not:
    exit 5 'File name too long'."""
    image, video = tmp_path / "a.png", write_video(tmp_path / "v.mkv")
    Image.fromarray(kit.noise((24, 32, 3))).save(image)
    out = tmp_path / "out"
    for src, name in ((image, "é" * 125 + ".png"), (video, "\U0001F600" * 62 + ".mp4")):
        assert len(name.encode()) <= 255
        result = kit.run_cli("restore", "run", src, "-o", out / name, "--model", tiny_model, "-q")
        assert result.code == 0, result.stderr
    assert read_image(out / ("é" * 125 + ".png")).shape == (24, 32, 3)
    with av.open(str(out / ("\U0001F600" * 62 + ".mp4"))) as container:
        assert sum(1 for _ in container.decode(video=0)) == 3
    assert len(list(out.iterdir())) == 2  # no temporary or lock file left


# --- Ctrl-C while stdin has nothing to give -----------------------------------------------------------
@pytest.mark.parametrize("sent", ["nothing", "half a video"])
def test_ctrl_c_while_stdin_stalls_ends_the_run(tmp_path, tiny_model, sent):
    """``producer | restore run - -o out.mkv`` with a producer that stalls: Ctrl-C was lost while
    FFmpeg waited for stdin (nothing sent: it waited on, then exit 3 with a KeyboardInterrupt
    traceback; half a video sent: the run hung in the decode thread's read)."""
    import signal
    import time

    data = write_video(tmp_path / "clip.mkv", frames=40, size=(64, 48)).read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", "from restore.runtime.cli import main; main()", "run", "-", "-o", tmp_path / "out.mkv",
                             "--model", tiny_model, "-q", "--codec", "ffv1"], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        if sent != "nothing":
            proc.stdin.write(data[: len(data) // 2])
            proc.stdin.flush()
        time.sleep(4)  # started and waiting for more
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=20)
        err = proc.stderr.read().decode()
    finally:
        proc.kill()
        proc.stdin.close()
    assert code == 130 and "Traceback" not in err, err
    assert not (tmp_path / "out.mkv").exists()


def test_detect_with_dash_output_makes_no_folder_named_dash(tmp_path, kit):
    """``restore detect a.png -o -`` wrote its reports into a new folder named '-'."""
    src = tmp_path / "a.png"
    Image.fromarray(kit.noise((64, 64, 3))).save(src)
    result = kit.run_cli("restore", "detect", src, "-o", "-", cwd=tmp_path)
    kit.assert_user_error(result, "restore", 7, "-o -")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_into_a_jpeg_is_announced(tmp_path, kit, tiny_model, mode):
    """An RGBA or gray+alpha PNG restored into a .jpg lost its alpha without a word."""
    src = tmp_path / "a.png"
    Image.fromarray(kit.noise((24, 32, len(mode))), mode).save(src)
    result = kit.run_cli("restore", "run", src, "-o", tmp_path / "b.jpg", "--model", tiny_model, "-q")
    assert result.code == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("restore: note:")]
    assert len(notes) == 1 and "alpha" in notes[0] and "b.jpg" in notes[0], result.stderr
    assert Image.open(tmp_path / "b.jpg").mode == ("RGB" if mode == "RGBA" else "L")


@pytest.mark.parametrize("output", ["b.png", "b.mkv"])
def test_quality_without_a_jpeg_or_webp_output_is_refused(tmp_path, kit, tiny_model, output):
    """``--quality 50`` into a PNG or a video was accepted and did nothing (as --fps is refused where unused)."""
    src = tmp_path / "a.png"
    Image.fromarray(kit.noise((24, 32, 3))).save(src)
    if output.endswith(".mkv"):
        src = write_video(tmp_path / "a.mkv")
    result = kit.run_cli("restore", "run", src, "-o", tmp_path / output, "--model", tiny_model, "--quality", 50)
    kit.assert_user_error(result, "restore", 7, "--quality")
    assert not (tmp_path / output).exists()


def test_ctrl_c_while_a_url_drips_is_an_interrupt(tmp_path, tiny_model):
    """An http server that sends one byte every half second: Ctrl-C gave exit 3 'cannot open
    this video (Immediate exit requested)', not 130."""
    import signal
    import socket
    import threading
    import time

    server = socket.create_server(("127.0.0.1", 0))

    def drip():
        conn, _ = server.accept()
        conn.recv(65536)
        with contextlib.suppress(OSError):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\n\r\n")
            for _ in range(60):
                conn.sendall(b"\0")
                time.sleep(0.5)

    threading.Thread(target=drip, daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/clip.mp4"
    proc = subprocess.Popen([sys.executable, "-c", "from restore.runtime.cli import main; main()", "run", url, "-o", tmp_path / "out.mp4",
                             "--model", tiny_model, "-q"], stderr=subprocess.PIPE)
    try:
        time.sleep(4)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=20)
    finally:
        proc.kill()
        server.close()
    assert code == 130, proc.stderr.read().decode()
