"""Bad input to `restore run`, `restore detect` and the Python API: every case is a real file run
through a real subprocess (or the real API), and must end in one line naming the input with a
hint, the exit code of its error class, no traceback, and no output that looks complete."""
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from restore.runtime.api import Restorer
from restore.runtime.errors import ConfigError, InputError, ModelError, OutputError
from restore.runtime.image_header import DEFAULT_MAX_IMAGE_PIXELS, check_image_file
from restore.runtime.streams import read_image


def bad_images(kit, folder):
    """name -> (file, words the error must contain). Every one must be refused."""
    folder.mkdir(parents=True, exist_ok=True)
    png = kit.encoded(".png", kit.noise((40, 50, 3)))
    jpg = kit.encoded(".jpg", kit.noise((40, 50, 3)))
    cases = {
        "empty.png": (b"", "empty file"),
        "truncated.png": (png[: len(png) // 2], "truncated or damaged"),
        "truncated.jpg": (jpg[: len(jpg) - 40], "truncated or damaged"),
        "corrupt.png": (png[:33] + bytes(len(png) - 33), "truncated or damaged"),
        "bitflip.png": (png[:60] + bytes([png[60] ^ 0x10]) + png[61:], "truncated or damaged"),
        "text.jpg": (b"this is not a picture\n" * 20, "not a readable"),
        "random.tif": (np.random.default_rng(0).bytes(5000), "not a readable"),
    }
    made = {}
    for name, (data, words) in cases.items():
        (folder / name).write_bytes(data)
        made[name] = (folder / name, words)
    made["bomb.png"] = (kit.png_with_header(folder / "bomb.png", 30000, 30000), "above the limit")
    made["bomb.jpg"] = (kit.jpeg_with_size(folder / "bomb.jpg", 30000, 30000), "above the limit")
    made["zero.png"] = (kit.png_with_header(folder / "zero.png", 0, 0), "0x0")
    cv2.imwrite(str(folder / "float64.tif"), kit.noise((20, 20, 3), np.float64))
    made["float64.tif"] = (folder / "float64.tif", "unsupported pixel type")
    cv2.imwrite(str(folder / "int32.tif"), kit.noise((20, 20)).astype(np.int32) * 1000)
    made["int32.tif"] = (folder / "int32.tif", "unsupported pixel type")
    return made


def good_images(kit, folder):
    """Unusual but valid images: name -> array written. All must be restored."""
    images = {
        "one pixel.png": kit.noise((1, 1, 3)),
        "gray 16-bit.png": kit.noise((33, 21), np.uint16),
        "rgba.png": kit.noise((17, 40, 4)),
        "unicode éß 日本.png": kit.noise((30, 30, 3)),
        "float.tif": kit.noise((24, 24, 3), np.float32),
    }
    for name, image in images.items():
        assert cv2.imwrite(str(folder / name), image)
    return images


def test_folder_of_bad_images_reports_each_and_restores_the_good_ones(tmp_path, tiny_model, kit):
    src, out = tmp_path / "in put", tmp_path / "out ü"
    bad = bad_images(kit, src)
    good = good_images(kit, src)
    result = kit.run_cli("restore", "run", src, "-o", out, "--model", tiny_model, "-q", memory_limit=4 << 30)
    summary = kit.assert_user_error(result, "restore", 8, f"{len(bad)} of {len(bad) + len(good)} inputs")
    assert "failed" in summary and "--resume" in summary
    skipped = [line for line in result.stderr.splitlines() if line.startswith("restore: skipped:")]
    assert len(skipped) == len(bad), result.stderr
    for name, (path, words) in bad.items():
        line = next((line for line in skipped if f"{path}:" in line), None)
        assert line is not None, f"{name} not reported:\n{result.stderr}"
        assert words in line and "(" in line, line
        assert not (out / name).exists()
    for name, image in good.items():
        restored = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
        assert restored is not None, name
        assert restored.shape == image.shape and restored.dtype == image.dtype, name
    assert kit.leftovers(out) == []


def test_allocation_bomb_is_refused_from_the_header_fast(tmp_path, kit):
    for bomb in (kit.png_with_header(tmp_path / "b.png", 30000, 30000, bits=16, color_type=6),
                 kit.jpeg_with_size(tmp_path / "b.jpg", 30000, 30000)):
        start = time.perf_counter()
        with pytest.raises(InputError, match="30000x30000 is 900 Mpixel, above the limit of 268 Mpixel"):
            read_image(bomb)
        assert time.perf_counter() - start < 0.5
    assert DEFAULT_MAX_IMAGE_PIXELS == 16384 * 16384


def test_pixel_limit_is_configurable(tmp_path, kit, monkeypatch):
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), kit.noise((100, 100, 3)))
    monkeypatch.setenv("RESTORE_MAX_IMAGE_PIXELS", "5000")
    with pytest.raises(InputError, match="raise RESTORE_MAX_IMAGE_PIXELS"):
        check_image_file(small)
    monkeypatch.setenv("RESTORE_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(InputError, match="RESTORE_MAX_IMAGE_PIXELS=lots"):
        check_image_file(small)
    monkeypatch.setenv("RESTORE_MAX_IMAGE_PIXELS", "10000")
    assert check_image_file(small) == (100, 100)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".bmp", ".webp"])
def test_header_size_matches_what_opencv_decodes(tmp_path, kit, suffix):
    path = tmp_path / f"x{suffix}"
    cv2.imwrite(str(path), kit.noise((37, 53, 3)))
    assert check_image_file(path) == (53, 37)
    assert cv2.imread(str(path)).shape[:2] == (37, 53)


# --- one input per run: the exit code of each error class ------------------------------------
def test_missing_input_is_an_input_error(tmp_path, tiny_model, kit):
    missing = tmp_path / "no such ü.png"
    result = kit.run_cli("restore", "run", missing, "-o", tmp_path / "out.png", "--model", tiny_model)
    kit.assert_user_error(result, "restore", 3, missing)


def test_corrupt_onnx_is_a_model_error(tmp_path, tiny_model, kit):
    broken = tmp_path / "broken model"
    broken.mkdir()
    (broken / "metadata.json").write_text((tiny_model / "metadata.json").read_text())
    (broken / "model.onnx").write_bytes((tiny_model / "model.onnx").read_bytes()[:200])
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), kit.noise((20, 20, 3)))
    result = kit.run_cli("restore", "run", image, "-o", tmp_path / "out.png", "--model", broken)
    kit.assert_user_error(result, "restore", 4, broken / "model.onnx")
    assert not (tmp_path / "out.png").exists()


def test_onnx_of_another_kind_of_model_is_a_model_error(tmp_path, kit):
    """A graph that is not an image-to-image generator (a classifier: NCHW in, N x 10 out)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("Tile", ["flat", "reps"], ["output"])],
        "classifier", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 9])],
        [onnx.numpy_helper.from_array(np.array([1, 3], np.int64), "reps")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    path = tmp_path / "classifier.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match="classifier.onnx|model returned"):
        with Restorer(path, backend="onnxruntime") as restorer:
            restorer.restore(kit.noise((20, 20, 3)))


def test_unknown_model_file_type_is_a_config_error(tmp_path, kit):
    weird = tmp_path / "model.bin"
    weird.write_bytes(b"\0" * 100)
    with pytest.raises(ConfigError, match="unknown model file type"):
        Restorer(weird)


@pytest.mark.parametrize("where", ["under a file", "in /proc"])
def test_unwritable_output_is_an_output_error(tmp_path, tiny_model, kit, where):
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), kit.noise((20, 20, 3)))
    target = image / "out.png" if where == "under a file" else "/proc/restore-test/out.png"
    result = kit.run_cli("restore", "run", image, "-o", target, "--model", tiny_model)
    kit.assert_user_error(result, "restore", 5, target)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_full_disk_while_writing_an_image(tmp_path, tiny_model, kit, suffix):
    """RLIMIT_FSIZE (``ulimit -f``) in the child: writes past 20 kB fail with EFBIG for real."""
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), kit.noise((200, 300, 3)))
    out = tmp_path / "out" / f"restored{suffix}"
    result = kit.run_cli("restore", "run", image, "-o", out, "--model", tiny_model, "-q", fsize_limit=20_000)
    line = kit.assert_user_error(result, "restore", 5, out)
    assert "disk full or file size limit" in line
    assert not out.exists() and kit.leftovers(tmp_path) == []


def test_full_disk_while_writing_a_video(tmp_path, tiny_model, kit):
    video = kit.write_video(tmp_path / "in.avi", frames=40, size=(96, 64))
    out = tmp_path / "out" / "restored.avi"
    result = kit.run_cli("restore", "run", video, "-o", out, "--model", tiny_model, "-q", fsize_limit=60_000)
    kit.assert_user_error(result, "restore", 5, out)
    assert not out.exists() and kit.leftovers(tmp_path) == []


def test_video_with_corrupt_last_frames_keeps_a_playable_partial(tmp_path, tiny_model, kit):
    good = kit.write_video(tmp_path / "good.avi", frames=20)
    data = bytearray(good.read_bytes())
    cut = int(len(data) * 0.6)
    data[cut:] = np.random.default_rng(1).bytes(len(data) - cut)
    damaged = tmp_path / "damaged tail.avi"
    damaged.write_bytes(bytes(data))
    out = tmp_path / "out.avi"
    result = kit.run_cli("restore", "run", damaged, "-o", out, "--model", tiny_model, "-q")
    line = kit.assert_user_error(result, "restore", 3, damaged, "of 20 frames decode")
    assert not out.exists()
    partial = tmp_path / "out.partial.avi"
    assert f"as {partial}" in line
    assert 1 <= kit.decodable_frames(partial) < 20


@pytest.mark.parametrize("audio", [None, "aac"])
def test_cut_matroska_without_a_frame_count_keeps_a_partial_not_a_complete_looking_video(tmp_path, tiny_model, kit, audio):
    """Matroska holds no frame count: the video track's duration tells a cut file from a whole one."""
    from restore.runtime.testing import write_test_video

    good = write_test_video(tmp_path / "good.mkv", frames=20, size=(160, 120), audio=audio)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    out = tmp_path / "out.mkv"
    result = kit.run_cli("restore", "run", cut, "-o", out, "--model", tiny_model, "-q")
    line = kit.assert_user_error(result, "restore", 3, cut, "of the stream's 2.00 s")
    assert not out.exists() and 1 <= kit.decodable_frames(tmp_path / "out.partial.mkv") < 20, line
    # a whole VFR file whose last frame lasts 2.6 s is not mistaken for a cut one
    vfr = write_test_video(tmp_path / "vfr.mkv", frames=6, pts=[0, 100, 200, 300, 400, 3000], audio=audio)
    assert kit.run_cli("restore", "run", vfr, "-o", tmp_path / "vfr_out.mkv", "--model", tiny_model, "-q").code == 0
    assert kit.decodable_frames(tmp_path / "vfr_out.mkv") == 6


@pytest.mark.parametrize("kind", ["empty", "truncated", "not a video"])
def test_broken_videos(tmp_path, tiny_model, kit, kind):
    good = kit.write_video(tmp_path / "good.mp4", frames=10, fourcc="mp4v")
    bad = tmp_path / f"{kind}.mp4"
    bad.write_bytes({"empty": b"", "truncated": good.read_bytes()[: good.stat().st_size // 3],
                     "not a video": b"RIFF" + bytes(3000)}[kind])
    out = tmp_path / "out.mp4"
    result = kit.run_cli("restore", "run", bad, "-o", out, "--model", tiny_model, "-q")
    kit.assert_user_error(result, "restore", 3, bad)
    assert not out.exists()


# --- the Python API ---------------------------------------------------------------------------
@pytest.mark.parametrize("array, words", [
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    (np.zeros((10, 0), np.uint8), "empty"),
    (np.zeros((8, 8, 5), np.uint8), "1 to 4 channels"),
    (np.zeros((2, 8, 8, 3), np.uint8), "1 to 4 channels"),
    (np.zeros((8, 8, 3), np.int32), "uint8, uint16 or float"),
    (np.zeros((8, 8, 3), bool), "uint8, uint16 or float"),
])
def test_api_refuses_arrays_it_cannot_restore(tiny_model, array, words):
    with Restorer(tiny_model, backend="onnxruntime") as restorer:
        with pytest.raises(InputError, match=words):
            restorer.restore(array)


@pytest.mark.parametrize("shape, dtype", [((1, 1), np.uint8), ((1, 1, 3), np.uint16), ((1, 300, 3), np.float32),
                                          ((300, 1, 4), np.uint8), ((5, 7, 2), np.uint8)])
def test_api_restores_degenerate_but_valid_shapes(tiny_model, kit, shape, dtype):
    image = kit.noise(shape, dtype)
    with Restorer(tiny_model, backend="onnxruntime") as restorer:
        out = restorer.restore(image)
    assert out.shape == image.shape and out.dtype == image.dtype
    if len(shape) == 3 and shape[2] in (2, 4):
        np.testing.assert_array_equal(out[..., -1], image[..., -1])  # alpha passed through


def test_api_model_errors(tmp_path, tiny_model):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07garbage" * 50)
    with pytest.raises(ModelError, match="garbage.onnx: ONNX Runtime cannot load"):
        Restorer(garbage, backend="onnxruntime")
    meta = tmp_path / "bad meta"
    meta.mkdir()
    (meta / "model.onnx").write_bytes((tiny_model / "model.onnx").read_bytes())
    (meta / "metadata.json").write_text("{not json")
    with pytest.raises(ModelError, match="unreadable artifact metadata"):
        Restorer(meta)
    with pytest.raises((ModelError, ConfigError)):
        Restorer(tmp_path / "nothing here")


def test_api_output_error_names_the_path(tmp_path, kit):
    from restore.runtime.streams import write_image

    blocker = tmp_path / "a file"
    blocker.write_bytes(b"")
    with pytest.raises(OutputError, match="a part of this path is a file, not a folder"):
        write_image(blocker / "y.png", kit.noise((4, 4, 3)))
    assert kit.leftovers(tmp_path) == []


# --- restore detect ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind, code, words", [
    ("missing", 3, "no such file"),
    ("empty", 3, "empty file"),
    ("bomb", 3, "above the limit"),
    ("one pixel", 3, "too small"),
    ("truncated", 3, "truncated or damaged"),
    ("unwritable output", 5, "is a file, not a folder"),
])
def test_detect_bad_inputs(tmp_path, kit, kind, code, words):
    path = tmp_path / f"{kind} ü.jpg"
    out = tmp_path / "out"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "bomb":
        kit.jpeg_with_size(path, 30000, 30000)
    elif kind == "one pixel":
        cv2.imwrite(str(path), kit.noise((1, 1, 3)))
    elif kind == "truncated":
        path.write_bytes(kit.encoded(".jpg", kit.noise((64, 64, 3)))[:-100])
    elif kind == "unwritable output":
        cv2.imwrite(str(path), kit.noise((64, 64, 3)))
        out.write_bytes(b"a file, not a folder")
    result = kit.run_cli("restore", "detect", path, "-o", out, memory_limit=4 << 30)
    line = kit.assert_user_error(result, "restore", code)
    assert words in line and (str(path) in line or str(out) in line), line
    if code != 5:
        assert not out.exists() or not any(out.iterdir())


def test_outputs_get_a_normal_file_mode(tmp_path):
    """Atomic writes go through mkstemp (mode 0600); the finished file must have the mode any
    other new file would get (0666 minus the umask), or a web server cannot serve the result."""
    import os

    from restore.runtime.atomic import atomic_write_text

    mask = os.umask(0o022)
    os.umask(mask)
    atomic_write_text(tmp_path / "report.json", "{}")
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_metadata_that_does_not_match_the_model_is_a_model_error(tmp_path, kit):
    """An artifact whose metadata.json says x1 while its model.onnx is an x4 network (files mixed
    from two exports)."""
    import json
    import shutil

    from restore.runtime.testing import write_conv_artifact

    x4 = write_conv_artifact(tmp_path / "x4", layers=1, scale=4, tile=16, overlap=4)
    mixed = tmp_path / "mixed"
    shutil.copytree(x4, mixed)
    metadata = json.loads((mixed / "metadata.json").read_text())
    metadata["io"]["scale"] = 1
    (mixed / "metadata.json").write_text(json.dumps(metadata))
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), kit.noise((20, 20, 3)))
    result = kit.run_cli("restore", "run", image, "-o", tmp_path / "out.png", "--model", mixed)
    line = kit.assert_user_error(result, "restore", 4, "model.onnx")
    assert "re-export" in line
    assert not (tmp_path / "out.png").exists() and kit.leftovers(tmp_path) == []


@pytest.mark.parametrize("source, target", [("16-bit.png", "out.jpg"), ("16-bit.png", "out.webp"), ("16-bit.png", "out.bmp"),
                                            ("float.tif", "out.png"), ("float.tif", "out.jpg")])
def test_bit_depth_the_output_format_cannot_hold_is_scaled(tmp_path, kit, source, target):
    """An identity model, so the output must equal the input in the output's depth: OpenCV alone
    would saturate (16-bit into JPEG: white; float into PNG: black)."""
    from restore.runtime.testing import write_conv_artifact

    identity = write_conv_artifact(tmp_path / "identity", layers=0, tile=32, overlap=8)
    y, x = np.mgrid[0:40, 0:50] / 50.0
    unit = np.stack([0.1 + 0.8 * x, 0.5 + 0.4 * np.sin(3 * y), 0.2 + 0.6 * x * y], axis=2)  # smooth: JPEG keeps it
    image = np.rint(unit * 65535).astype(np.uint16) if source.startswith("16") else unit.astype(np.float32)
    cv2.imwrite(str(tmp_path / source), image)
    result = kit.run_cli("restore", "run", tmp_path / source, "-o", tmp_path / target, "--model", identity, "-q")
    assert result.code == 0, result.stderr
    if target.endswith(".png"):  # float into 16 bits: nothing worth saying
        assert result.stderr == ""
    else:  # the depth lost is said, in one line
        depth = "16-bit" if source.startswith("16") else "float"
        assert result.stderr.strip().splitlines() == [
            f"restore: note: {tmp_path / target}: {target[4:].upper()} holds 8 bits per channel: the {depth} picture "
            "is written with 8 (write .png or .tif to keep its depth)"]
    out = cv2.imread(str(tmp_path / target), cv2.IMREAD_UNCHANGED).astype(np.float64)
    unit = image / 65535.0 if image.dtype == np.uint16 else image.astype(np.float64)
    top = 65535.0 if target.endswith(".png") else 255.0
    tolerance = {".jpg": 0.02, ".webp": 0.02, ".bmp": 0.003, ".png": 1e-4}[Path(target).suffix]
    assert np.abs(out / top - unit).mean() < tolerance
