"""Every user mistake on the command line is one line, a distinct exit code and no traceback:
paths past the system's limits, options out of range (checked at parse time, runtime/options.py),
files that are not regular files, pixels the runtime cannot take, Ctrl-C during an export."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from restore.runtime.api import Restorer
from restore.runtime.errors import ConfigError

LONG = "d/" * 2100 + "x.png"  # 4205 bytes: past PATH_MAX


@pytest.fixture
def image(tmp_path, kit):
    path = tmp_path / "in.png"
    path.write_bytes(kit.encoded(".png", kit.noise((24, 24, 3))))
    return path


@pytest.mark.parametrize("where, code", [("input", 3), ("-o", 5), ("--model", 4)])
def test_path_longer_than_path_max(tmp_path, kit, tiny_model, image, where, code):
    args = {"input": [LONG, "-o", tmp_path / "o.png", "--model", tiny_model],
            "-o": [image, "-o", LONG, "--model", tiny_model],
            "--model": [image, "-o", tmp_path / "o.png", "--model", LONG]}[where]
    line = kit.assert_user_error(kit.run_cli("restore", "run", *args, cwd=tmp_path), "restore", code, "x.png")
    assert "longer than the system allows" in line


def test_name_longer_than_name_max(tmp_path, kit, tiny_model, image):
    line = kit.assert_user_error(kit.run_cli("restore", "run", image, "-o", tmp_path / ("n" * 300 + ".png"), "--model", tiny_model),
                                 "restore", 5, "nnn")
    assert "longer than a file name may be" in line


def test_a_file_name_with_a_line_break_stays_one_line(tmp_path, kit, tiny_model):
    bad = tmp_path / "bad\nname\x1b[2J.png"  # a line break and a terminal escape in a legal name
    bad.write_bytes(b"not an image")
    line = kit.assert_user_error(kit.run_cli("restore", "run", bad, "-o", tmp_path / "o.png", "--model", tiny_model),
                                 "restore", 3, "bad\\nname\\x1b[2J.png")
    assert "not a readable" in line


@pytest.mark.parametrize("name", ["a" * 251 + ".png", "é" * 125 + ".png"])
def test_a_legal_long_output_name_is_written(tmp_path, kit, tiny_model, image, name):
    """250 bytes is a legal name; its temporary sibling must fit in NAME_MAX too."""
    out = tmp_path / name
    assert len(os.fsencode(name)) <= 255
    result = kit.run_cli("restore", "run", image, "-o", out, "--model", tiny_model, "-q")
    assert result.code == 0, result.stderr
    assert cv2.imread(str(out)).shape == (24, 24, 3)
    assert kit.leftovers(tmp_path) == []


@pytest.mark.parametrize("option, value", [("--batch", "0"), ("--batch", "-1"), ("--batch", "abc"), ("--batch", "1e9"),
                                           ("--tile", "0"), ("--tile", "x"), ("--tile", "99999999"), ("--overlap", "-1"),
                                           ("--overlap", "nan"), ("--device", "foo"), ("--device", "cuda:x"), ("--device", "")])
def test_numeric_and_device_options_are_checked_at_parse_time(tmp_path, kit, tiny_model, image, option, value):
    out = tmp_path / "o.png"
    result = kit.run_cli("restore", "run", image, "-o", out, "--model", tiny_model, option, value)
    line = kit.assert_user_error(result, "restore", 7, option)
    assert "restore: onnxruntime" not in result.stderr, "checked before the model is loaded"
    assert not out.exists(), line


def test_api_batch_0_is_an_error_not_the_default(tiny_model):
    with pytest.raises(ConfigError, match="batch"):
        Restorer(tiny_model, backend="onnxruntime", batch=0)


@pytest.mark.skipif("CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(), reason="a GPU runs fp16")
def test_fp16_on_a_cpu_is_refused_not_run_as_fp32(tmp_path, kit, tiny_model, image):
    result = kit.run_cli("restore", "run", image, "-o", tmp_path / "o.png", "--model", tiny_model, "--precision", "fp16")
    line = kit.assert_user_error(result, "restore", 6)
    assert "fp16" in line
    assert not (tmp_path / "o.png").exists()


def test_fifo_and_dangling_symlink_are_named_for_what_they_are(tmp_path, kit, tiny_model):
    os.mkfifo(tmp_path / "pipe.png")
    os.symlink(tmp_path / "gone.png", tmp_path / "link.png")
    for name, words in (("pipe.png", "named pipe (FIFO)"), ("link.png", "symbolic link")):
        result = kit.run_cli("restore", "run", tmp_path / name, "-o", tmp_path / "o.png", "--model", tiny_model, timeout=60)
        line = kit.assert_user_error(result, "restore", 3, name)
        assert words in line and "no such file" not in line


def test_pixels_the_runtime_cannot_take_are_not_called_corrupt(tmp_path, kit, tiny_model):
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "half.tif", rng.random((20, 20, 3)).astype(np.float16), photometric="rgb")
    tifffile.imwrite(tmp_path / "five.tif", (rng.random((20, 20, 5)) * 255).astype(np.uint8), photometric="minisblack", planarconfig="contig")
    for name, words in (("half.tif", "unsupported pixel type float16"), ("five.tif", "unsupported channels: 5")):
        result = kit.run_cli("restore", "run", tmp_path / name, "-o", tmp_path / "o.png", "--model", tiny_model)
        line = kit.assert_user_error(result, "restore", 3, name)
        assert words in line and "corrupt" not in line


def test_pixel_limit_in_units_that_do_not_round_to_zero(tmp_path, kit, tiny_model, image, monkeypatch):
    monkeypatch.setenv("RESTORE_MAX_IMAGE_PIXELS", "100")
    line = kit.assert_user_error(kit.run_cli("restore", "run", image, "-o", tmp_path / "o.png", "--model", tiny_model), "restore", 3, image)
    assert "576 pixels, above the limit of 100 pixels" in line


def test_library_warnings_do_not_reach_the_user(tmp_path):
    """run_main silences Python warnings (NumPy's RuntimeWarning, matplotlib's UserWarning) unless
    the user asks for them with -W."""
    code = ("import click, numpy as np, warnings\n"
            "from restore.runtime.cli import run_main\n"
            "@click.command()\n"
            "def noisy():\n"
            "    np.log(np.zeros(2))\n"
            "    warnings.warn('from a library', UserWarning)\n"
            "run_main(noisy, 'restore')\n")
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    loud = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert "RuntimeWarning" in loud.stderr and "from a library" in loud.stderr


# --- restore eval / restore-export (import torch: a few seconds each) ------------------------------
@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    pytest.importorskip("torch")
    from restore.trainer.checkpoint import save_checkpoint
    from restore.trainer.models import build_model

    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.pt", build_model("fourier-unet", widths=[8, 16], blocks=1))


def test_eval_on_pairs_too_small_for_ssim(tmp_path, kit, small_checkpoint):
    for sub in ("blur", "sharp"):
        (tmp_path / "pairs" / sub).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "pairs" / sub / "tiny.png"), kit.noise((4, 4, 3)))
    result = kit.run_cli("restore", "eval", small_checkpoint, "--data", tmp_path / "pairs", "--no-baselines")
    line = kit.assert_user_error(result, "restore", 3, "tiny")
    assert "4x4 pixels" in line and "11x11" in line


def test_export_into_the_current_folder_is_refused_before_exporting(tmp_path, kit, small_checkpoint):
    (tmp_path / "notes.txt").write_text("mine")
    result = kit.run_cli("restore-export", small_checkpoint, "-o", ".", "--target", "onnx", cwd=tmp_path)
    kit.assert_user_error(result, "restore-export", 5, ".")
    assert "traced" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def interrupted_export(checkpoint, out, after_line):
    """restore-export sent SIGINT once its stderr has printed ``after_line`` lines (0: as soon as
    it loads torch's libraries, while it is still importing torch)."""
    proc = subprocess.Popen([sys.executable, "-c", "from restore.export.cli import main; main()", str(checkpoint), "-o", str(out),
                             "--target", "onnx", "--fp16"], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a test runner may ignore SIGINT
    lines = [proc.stderr.readline() for _ in range(after_line)]
    if not after_line:  # into the command: torch's libraries are being loaded
        end = time.monotonic() + 120
        while "libtorch" not in Path(f"/proc/{proc.pid}/maps").read_text() and time.monotonic() < end:
            time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    proc.wait(timeout=120)
    return proc.returncode, "".join(lines) + rest


@pytest.mark.parametrize("after_line", [0, 2])
def test_ctrl_c_during_export(tmp_path, kit, small_checkpoint, after_line):
    out = tmp_path / "artifact"
    code, stderr = interrupted_export(small_checkpoint, out, after_line)
    assert code == 130, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == "restore-export: interrupted"
    assert not out.exists() and kit.leftovers(tmp_path) == []


def test_an_error_raised_with_a_line_break_in_any_part_is_one_line():
    error = ConfigError("a\nb", "bad\nvalue", "fix\rit")
    assert str(error) == "a\\nb: bad\\nvalue (fix\\rit)"
