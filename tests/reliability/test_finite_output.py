"""Rule 4 of docs/RELIABILITY.md: a silently wrong result is never written.

Non-finite model output (a real ONNX model built here that returns NaN or Inf, or a normalisation
std of 0) is exit 4 with nothing written; non-finite or out-of-range float pixels, damaged JPEGs
and multi-frame images are refused as inputs (exit 3); JSON reports hold no NaN/Infinity."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from restore.runtime import Restorer
from restore.runtime.errors import InputError, ModelError
from restore.runtime.outputs import finite_json
from restore.runtime.streams import read_image
from restore.runtime.testing import ONNX_IR_VERSION, ONNX_OPSET, write_conv_artifact


def poisoned_artifact(folder, value, where="all"):
    """An artifact whose model adds ``value`` (NaN or Inf) to every pixel, or, with
    where="constant", only to tiles whose pixels are all equal (as the shipped model once did)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    write_conv_artifact(folder, layers=1, tile=32, overlap=8, batch=2)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    inits = [numpy_helper.from_array(np.array(value, np.float32), "poison")]
    if where == "all":
        nodes = [helper.make_node("Add", ["input", "poison"], ["output"])]
    else:  # poison / (max - min): 0 * value on textured tiles, value / 0 on constant ones
        nodes = [
            helper.make_node("ReduceMax", ["input"], ["hi"], axes=[1, 2, 3], keepdims=1),
            helper.make_node("ReduceMin", ["input"], ["lo"], axes=[1, 2, 3], keepdims=1),
            helper.make_node("Sub", ["hi", "lo"], ["spread"]),
            helper.make_node("Equal", ["spread", "zero"], ["flat"]),
            helper.make_node("Where", ["flat", "poison", "zero"], ["bad"]),
            helper.make_node("Add", ["input", "bad"], ["output"]),
        ]
        inits.append(numpy_helper.from_array(np.array(0, np.float32), "zero"))
    graph = helper.make_graph(nodes, "poisoned", [inp], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = ONNX_IR_VERSION
    onnx.save(model, str(folder / "model.onnx"))
    return folder


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_non_finite_model_output_is_exit_4_and_nothing_is_written(tmp_path, kit, value, suffix):
    model = poisoned_artifact(tmp_path / "model", value)
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), kit.noise((70, 90, 3)))
    out = tmp_path / f"out{suffix}"
    result = kit.run_cli("restore", "run", src, "-o", out, "--model", model, "-q")
    line = kit.assert_user_error(result, "restore", 4, "model.onnx")
    assert "NaN or infinite values for 12 of 12 tiles" in line, line
    assert not out.exists() and kit.leftovers(tmp_path) == []


def test_a_model_that_fails_only_on_constant_tiles_is_caught_and_counted(tmp_path, kit):
    model = poisoned_artifact(tmp_path / "model", np.nan, where="constant")
    image = kit.noise((64, 96, 3))
    image[:, 48:] = 200  # a clipped sky: the right half is one value
    with Restorer(str(model)) as restorer:
        with pytest.raises(ModelError, match=r"for \d+ of \d+ tiles") as error:
            restorer.restore(image)
        bad, total = map(int, str(error.value).split("values for ")[1].split(" tiles")[0].split(" of "))
        assert 0 < bad < total
        assert restorer.restore(kit.noise((64, 96, 3))).shape == (64, 96, 3)  # textured everywhere: fine


def test_normalisation_std_zero_never_writes_a_black_image(tmp_path, kit):
    model = write_conv_artifact(tmp_path / "model", layers=1, tile=32, overlap=8, batch=2)
    metadata = json.loads((model / "metadata.json").read_text())
    metadata["io"]["normalisation"]["std"] = [0.0, 0.0, 0.0]
    (model / "metadata.json").write_text(json.dumps(metadata))
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), kit.noise((40, 40, 3)))
    result = kit.run_cli("restore", "run", src, "-o", tmp_path / "out.png", "--model", model, "-q")
    kit.assert_user_error(result, "restore", 4)  # refused by the metadata check or by the output guard
    assert not (tmp_path / "out.png").exists()


# --- float pixels ---------------------------------------------------------------------------------
def float_tiff(path, image):
    assert cv2.imwrite(str(path), image)
    return path


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_pixels_are_refused_by_run_and_detect(tmp_path, kit, tiny_model, bad):
    image = kit.noise((64, 64, 3), np.float32)
    image[10, 20, 1] = bad
    src = float_tiff(tmp_path / "nan.tif", image)
    run = kit.run_cli("restore", "run", src, "-o", tmp_path / "out.tif", "--model", tiny_model, "-q")
    assert "1 NaN or infinite" in kit.assert_user_error(run, "restore", 3, src)
    detect = kit.run_cli("restore", "detect", src, "-o", tmp_path / "report")
    kit.assert_user_error(detect, "restore", 3, src)
    assert not (tmp_path / "out.tif").exists() and not (tmp_path / "report").exists()


def test_float_tiff_in_0_255_is_refused_not_clipped(tmp_path, kit, tiny_model):
    src = float_tiff(tmp_path / "f255.tif", kit.noise((48, 48, 3), np.float32) * 255)
    result = kit.run_cli("restore", "run", src, "-o", tmp_path / "out.tif", "--model", tiny_model, "-q")
    assert "0..1" in kit.assert_user_error(result, "restore", 3, src)


def test_float_tiff_with_rounding_overshoot_is_accepted_and_stays_float(tmp_path, kit, tiny_model):
    image = kit.noise((48, 48, 3), np.float32) * 1.02 - 0.01
    src = float_tiff(tmp_path / "f.tif", image)
    result = kit.run_cli("restore", "run", src, "-o", tmp_path / "out.tif", "--model", tiny_model, "-q")
    assert result.code == 0, result.stderr
    out = read_image(tmp_path / "out.tif")
    assert out.dtype == np.float32 and np.isfinite(out).all() and 0 <= out.min() and out.max() <= 1


def test_the_api_refuses_non_finite_pixels_too(tiny_model, kit):
    image = kit.noise((32, 32), np.float32)
    image[0, 0] = np.nan
    with Restorer(str(tiny_model)) as restorer, pytest.raises(InputError, match="1 NaN"):
        restorer.restore(image)


# --- damaged and multi-frame files ------------------------------------------------------------------
@pytest.mark.parametrize("keep", [0.3, 0.5, 0.8])
def test_jpeg_cut_short_with_an_end_marker_is_damaged_input(tmp_path, kit, tiny_model, keep):
    data = kit.encoded(".jpg", kit.noise((128, 128, 3)))
    src = tmp_path / "cut.jpg"
    src.write_bytes(data[: int(len(data) * keep)] + b"\xff\xd9")
    for args in (("run", src, "-o", tmp_path / "out.png", "--model", tiny_model, "-q"), ("detect", src, "-o", tmp_path / "r")):
        result = kit.run_cli("restore", *args)
        line = kit.assert_user_error(result, "restore", 3, src)
        assert "damaged" in line
        assert "Corrupt JPEG" not in result.stderr.replace(line, ""), "libjpeg's own message must not leak"
    assert not (tmp_path / "out.png").exists()


def test_an_intact_jpeg_still_reads(tmp_path, kit):
    src = tmp_path / "ok.jpg"
    src.write_bytes(kit.encoded(".jpg", kit.noise((64, 64, 3))))
    assert read_image(src).shape == (64, 64, 3)


def frames_of(kit, n, mode="RGB"):
    return [Image.fromarray(kit.noise((40, 40, 3), seed=i)).convert(mode) for i in range(n)]


@pytest.mark.parametrize("suffix, options", [
    (".png", {"format": "PNG"}),  # APNG
    (".webp", {"format": "WEBP", "lossless": True}),
    (".tif", {"format": "TIFF"}),  # multi-page
])
def test_images_with_several_frames_are_refused_not_cut_to_the_first(tmp_path, kit, tiny_model, suffix, options):
    first, *rest = frames_of(kit, 3)
    src = tmp_path / f"many{suffix}"
    first.save(src, save_all=True, append_images=rest, **options)
    result = kit.run_cli("restore", "run", src, "-o", tmp_path / f"out{suffix}", "--model", tiny_model, "-q")
    assert "has 3 frames" in kit.assert_user_error(result, "restore", 3, src)
    assert not (tmp_path / f"out{suffix}").exists()


def test_a_single_frame_written_by_pillow_is_fine(tmp_path, kit):
    for suffix in (".png", ".webp", ".tif"):
        frames_of(kit, 1)[0].save(tmp_path / f"one{suffix}", **({"lossless": True} if suffix == ".webp" else {}))
        assert read_image(tmp_path / f"one{suffix}").shape == (40, 40, 3)


# --- JSON ------------------------------------------------------------------------------------------
def test_json_reports_never_hold_nan_or_infinity():
    text = finite_json({"psnr": float("inf"), "ssim": np.float32("nan"), "rows": [[1.5, -np.inf]], "n": np.int64(3)})
    assert json.loads(text) == {"psnr": None, "ssim": None, "rows": [[1.5, None]], "n": 3}
    assert "NaN" not in text and "Infinity" not in text


def test_eval_and_detect_write_through_finite_json():
    """The commands that write JSON reports use the one guard (a source check: running eval
    needs a trained checkpoint; finite_json itself is tested above)."""
    import inspect

    from restore.runtime import detect_cli
    from restore.trainer import cli, evaluate

    for module in (detect_cli, cli, evaluate):
        source = inspect.getsource(module)
        assert "finite_json(" in source and "json.dumps(" not in source, module.__name__


def test_detect_on_a_constant_float_image_writes_valid_json(tmp_path):
    src = tmp_path / "flat.tif"
    cv2.imwrite(str(src), np.full((64, 64, 3), 0.5, np.float32))
    proc = subprocess.run([sys.executable, "-m", "restore.runtime", "detect", str(src), "-o", str(tmp_path / "r")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    json.loads((tmp_path / "r" / "flat.json").read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
