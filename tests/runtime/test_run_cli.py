"""`restore run` / `restore demo` through the real CLI entry point: outputs and exit codes."""
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from restore.runtime.cli import main
from restore.runtime.errors import EXIT_INTERRUPTED
from restore.runtime.testing import decodable_frames, write_conv_artifact

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_conv_artifact(tmp_path_factory.mktemp("m") / "conv", layers=2, tile=32, overlap=8)


@pytest.fixture(scope="module")
def model_x4(tmp_path_factory):
    return write_conv_artifact(tmp_path_factory.mktemp("m") / "x4", layers=1, tile=16, overlap=4, scale=4)


def restore(monkeypatch, *args):
    """Run `restore ARGS...` in-process; return its exit code."""
    monkeypatch.setattr(sys, "argv", ["restore", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        main()
    return e.value.code


def write_video(path, frames=6, size=(48, 32), fps=10):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), (30 * i) % 256, np.uint8))
    writer.release()
    return path


def test_folder_with_one_bad_file_finishes_the_rest_and_exits_8(tmp_path, model, monkeypatch, capsys):
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), (RNG.random((40, 50, 3)) * 255).astype(np.uint8))
    cv2.imwrite(str(src / "c.tif"), (RNG.random((20, 30)) * 65535).astype(np.uint16))
    (src / "b.png").write_bytes(b"broken")
    write_video(src / "v.mp4")
    code = restore(monkeypatch, "run", src, "-o", tmp_path / "out", "--model", model, "-q")
    assert code == 8
    assert "b.png" in capsys.readouterr().err
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.tif", "v.mp4"]
    assert cv2.imread(str(out / "a.png")).shape == (40, 50, 3)
    assert cv2.imread(str(out / "c.tif"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert decodable_frames(out / "v.mp4") == 6


def test_single_image_to_file_at_x4(tmp_path, model_x4, monkeypatch):
    cv2.imwrite(str(tmp_path / "a.png"), (RNG.random((21, 34, 4)) * 255).astype(np.uint8))
    assert restore(monkeypatch, "run", tmp_path / "a.png", "-o", tmp_path / "big.png", "--model", model_x4, "-q") == 0
    assert cv2.imread(str(tmp_path / "big.png"), cv2.IMREAD_UNCHANGED).shape == (84, 136, 4)


def test_folder_of_frames_to_video_and_video_to_frames(tmp_path, model, monkeypatch):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i}.png"), np.full((32, 48, 3), 60 * i, np.uint8))
    assert restore(monkeypatch, "run", frames, "-o", tmp_path / "v.avi", "--fps", 8, "--model", model, "-q") == 0
    assert decodable_frames(tmp_path / "v.avi") == 3
    assert restore(monkeypatch, "run", tmp_path / "v.avi", "-o", tmp_path / "back", "--frames", "--model", model, "-q") == 0
    assert len(list((tmp_path / "back" / "v").glob("*.png"))) == 3


def test_skip_sharp_runs(tmp_path, model, monkeypatch):
    image = cv2.resize((RNG.random((40, 40, 3)) * 255).astype(np.uint8), (160, 160), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    assert restore(monkeypatch, "run", tmp_path / "a.png", "-o", tmp_path / "o.png", "--skip-sharp", "--model", model, "-q") == 0
    assert cv2.imread(str(tmp_path / "o.png")).shape == image.shape


@pytest.mark.parametrize(
    "args,code",
    [
        (["missing.png", "-o", "out"], 3),  # input error
        (["a.png", "-o", "out.png", "--model", "missing.onnx"], 7),  # config error
        (["a.png", "-o", "out.mp4"], 7),  # image into a video file
        (["a.png", "-o", "out.png", "--tile", "8", "--overlap", "8"], 7),
        (["a.png", "-o", "out.png", "--backend", "torch"], 6),  # no checkpoint in the artifact
        (["a.png", "-o", "out.png", "--backend", "nope"], 2),  # usage error
        (["a.png", "-o", "/proc/forbidden/out.png"], 5),  # output error
    ],
)
def test_exit_codes(tmp_path, model, monkeypatch, capsys, args, code):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((20, 20, 3), np.uint8))
    monkeypatch.chdir(tmp_path)
    if "--model" not in args:
        args = [*args, "--model", model]
    assert restore(monkeypatch, "run", *args, "-q") == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip()


def test_demo_writes_side_by_side_images_and_a_report(tmp_path, model, monkeypatch):
    samples = tmp_path / "samples"
    (samples / "sharp").mkdir(parents=True)
    sharp = (RNG.random((48, 64, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(samples / "sharp" / "one.png"), sharp)
    cv2.imwrite(str(samples / "one.png"), cv2.GaussianBlur(sharp, (5, 5), 1.5))
    cv2.imwrite(str(samples / "two.png"), sharp[:30, :40])
    out = tmp_path / "demo"
    assert restore(monkeypatch, "demo", "-o", out, "--model", model, "--samples", samples) == 0
    assert cv2.imread(str(out / "one.before_after.png")).shape == (48, 2 * 64 + 8, 3)
    report = (out / "report.md").read_text()
    assert "| one.png |" in report and "| two.png |" in report
    assert '"psnr_after"' in (out / "report.json").read_text()


def test_demo_on_an_unlucky_samples_folder(tmp_path, model, monkeypatch, capsys):
    """A broken sample is skipped (exit 8, the others done), macOS '._x.png' files are not samples,
    a reference identical to its sample gives valid JSON, and a run stopped before its report
    (images only) does not lock the folder against the next run."""
    samples = tmp_path / "samples"
    (samples / "sharp").mkdir(parents=True)
    flat = np.full((40, 40, 3), 128, np.uint8)
    cv2.imwrite(str(samples / "flat.png"), flat)
    cv2.imwrite(str(samples / "sharp" / "flat.png"), flat)  # PSNR of identical images: infinite
    (samples / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut")
    (samples / "._flat.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    out = tmp_path / "demo"
    out.mkdir()
    (out / "flat.before_after.png").write_bytes(b"from a run that was stopped")
    assert restore(monkeypatch, "demo", "-o", out, "--model", model, "--samples", samples) == 8
    err = capsys.readouterr().err
    assert "broken.png" in err and "._flat" not in err and "Traceback" not in err
    assert "--resume" not in err  # restore run's hint: demo has no such option
    report = json.loads((out / "report.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert [r["sample"] for r in report["samples"]] == ["flat.png"]
    assert report["samples"][0]["psnr_before"] is None
    assert cv2.imread(str(out / "flat.before_after.png")).shape == (40, 88, 3)


def test_sigterm_keeps_a_playable_partial_video(tmp_path, model):
    """A real process, a real signal: the partial output is finished and renamed, exit 130."""
    src = write_video(tmp_path / "long.mp4", frames=400, size=(320, 240))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "restore.runtime", "run", str(src), "-o", str(tmp_path / "out.mp4"),
                             "--model", str(model), "-q"], stderr=subprocess.PIPE, text=True, env=env)
    def hidden():  # the run's unique temporary file, .out.XXXXXXXX.partial.mp4
        return list(tmp_path.glob(".out.*.partial.mp4"))

    deadline = time.time() + 30
    while time.time() < deadline and not hidden():
        time.sleep(0.05)
    time.sleep(1.0)  # some frames in, far from all 400
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=30)[1]
    if proc.returncode == 0:
        pytest.skip("the video finished before the signal arrived")
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert not (tmp_path / "out.mp4").exists() and not hidden()
    assert 0 < decodable_frames(tmp_path / "out.partial.mp4") < 400
