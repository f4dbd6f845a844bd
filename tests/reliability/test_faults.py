"""Faults during real `restore run` subprocesses: Ctrl-C (SIGINT) and SIGTERM in the middle of a
video, a folder with a bad file among good ones, and --resume after an interrupted folder run."""
import glob
import signal
import subprocess
import sys
import time

import cv2
import pytest

from restore.runtime.errors import EXIT_INTERRUPTED

RUN = "from restore.runtime.cli import main; main()"


def start_run(*args):
    # -X faulthandler: a run that hangs is made to dump its threads' stacks (``finish``)
    return subprocess.Popen([sys.executable, "-X", "faulthandler", "-c", RUN, "run", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=60):
    """The run's stderr once it exits; a run still going after ``timeout`` s fails the test with
    every thread's stack (SIGABRT makes faulthandler print them)."""
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        pytest.fail(f"restore run still running {timeout} s after the signal; its threads:\n{proc.communicate(timeout=30)[1]}")


def temporaries(out):
    """The hidden, unique temporary files of a run writing ``out`` (.NAME.XXXXXXXX.partial.EXT)."""
    return sorted(out.parent.glob(f".{glob.escape(out.stem)}.*.partial{out.suffix}"))


def wait_for_frames(out, proc, min_bytes, timeout=60):
    """Until the hidden temporary video of ``out`` has grown past ``min_bytes`` (frames are being written)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"restore run ended before it could be interrupted:\n{proc.stderr.read()}")
        if any(p.stat().st_size > min_bytes for p in temporaries(out) if p.is_file()):
            return
        time.sleep(0.02)
    pytest.fail("no frames were written in time")


@pytest.mark.parametrize("sig, suffix", [(signal.SIGINT, ".mp4"), (signal.SIGTERM, ".avi"), (signal.SIGINT, ".mkv")])
def test_signal_mid_video_leaves_a_playable_partial_or_nothing(tmp_path, tiny_model, kit, sig, suffix):
    video = kit.write_video(tmp_path / "in.avi", frames=300, size=(160, 120))
    out = tmp_path / "out dir" / f"restored ü{suffix}"
    proc = start_run(video, "-o", out, "--model", tiny_model, "-q")
    wait_for_frames(out, proc, min_bytes=20_000)
    proc.send_signal(sig)
    stderr = finish(proc)
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stderr, stderr
    assert not out.exists(), "an interrupted run must not leave a file at the final name"
    assert not temporaries(out), "the temporary file must be finished or removed"
    # Frames had been written, so the run keeps them as NAME.partial.EXT, and that file must play
    # (all 300 when the signal came while the file was being finished: its encoder's flush is
    # what grew it past min_bytes; a Ctrl-C there threw every restored frame away before).
    partial = out.with_name(f"{out.stem}.partial{suffix}")
    assert partial.exists(), stderr
    frames = kit.decodable_frames(partial)
    assert 1 <= frames <= 300
    assert f"kept the {frames} frames restored so far as {partial}" in stderr
    assert stderr.strip().splitlines()[-1] == "restore: interrupted"


@pytest.mark.parametrize("delay", [0.6, 0.9, 1.2])
def test_signal_at_start_up_leaves_nothing_or_a_playable_partial(tmp_path, tiny_model, kit, delay):
    video = kit.write_video(tmp_path / "in.avi", frames=100, size=(160, 120))
    out = tmp_path / "out.mp4"
    proc = start_run(video, "-o", out, "--model", tiny_model, "-q")
    time.sleep(delay)  # loading the model, or at the first frames
    proc.send_signal(signal.SIGTERM)
    stderr = finish(proc)
    # 0: it finished first; -SIGTERM: the signal came while Python was still importing, before
    # `restore run` took SIGTERM over, or during interpreter shutdown after it finished
    assert proc.returncode in (EXIT_INTERRUPTED, 0, -signal.SIGTERM), stderr
    assert "Traceback" not in stderr
    left = sorted(p.name for p in tmp_path.glob("*out*"))
    assert left in ([], ["out.partial.mp4"], ["out.mp4"]), left
    if left == ["out.mp4"]:
        assert kit.decodable_frames(tmp_path / "out.mp4") == 100
    elif left:
        assert kit.decodable_frames(tmp_path / left[0]) >= 1


def test_folder_run_continues_past_bad_files_and_resume_skips_finished(tmp_path, tiny_model, kit):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(4):
        cv2.imwrite(str(src / f"img{i}.png"), kit.noise((40, 60, 3), seed=i))
    kit.write_video(src / "clip.avi", frames=8)
    (src / "broken.png").write_bytes(kit.encoded(".png", kit.noise((40, 60, 3)))[:100])
    (src / "broken.mp4").write_bytes(b"\0" * 500)

    first = kit.run_cli("restore", "run", src, "-o", out, "--model", tiny_model, "-q")
    line = kit.assert_user_error(first, "restore", 8, "2 of 7 inputs", src / "broken.png", src / "broken.mp4")
    assert "--resume" in line
    done = sorted(p.name for p in out.iterdir())
    assert done == ["clip.avi", "img0.png", "img1.png", "img2.png", "img3.png"]
    assert kit.decodable_frames(out / "clip.avi") == 8

    # A finished output is not touched again; a missing one is redone.
    (out / "img2.png").unlink()
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (src / "broken.png").unlink()
    (src / "broken.mp4").unlink()
    second = kit.run_cli("restore", "run", src, "-o", out, "--model", tiny_model, "--resume", "-q")
    assert second.code == 0, second.stderr
    assert "4 outputs exist already, 1 to do" in second.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "img2.png"} == mtimes
    assert cv2.imread(str(out / "img2.png")).shape == (40, 60, 3)

    third = kit.run_cli("restore", "run", src, "-o", out, "--model", tiny_model, "--resume", "-q")
    assert third.code == 0 and "5 outputs exist already, 0 to do" in third.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_streaming_a_big_png_leaves_no_file(tmp_path, tiny_model, kit, sig):
    """PNG output is streamed strip by strip into a hidden temporary file: an interrupt must
    remove it and leave nothing at the final name."""
    image = tmp_path / "big.png"
    cv2.imwrite(str(image), kit.noise((3000, 3000, 3)))  # big enough to catch mid-stream
    out = tmp_path / "out" / "big.png"
    proc = start_run(image, "-o", out, "--model", tiny_model, "-q")
    deadline = time.monotonic() + 60
    while not list(out.parent.glob(".big.*partial.png")):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the output was never started"
        time.sleep(0.02)
    proc.send_signal(sig)
    stderr = finish(proc)
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stderr
    assert list(out.parent.iterdir()) == []


def test_folder_to_video_with_a_damaged_frame_names_it_and_leaves_no_video(tmp_path, tiny_model, kit):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(6):
        cv2.imwrite(str(frames / f"{i:03d}.png"), kit.noise((48, 64, 3), seed=i))
    png = (frames / "004.png").read_bytes()
    (frames / "004.png").write_bytes(png[: len(png) // 2])
    out = tmp_path / "movie.mp4"
    result = kit.run_cli("restore", "run", frames, "-o", out, "--model", tiny_model, "-q")
    kit.assert_user_error(result, "restore", 3, frames / "004.png")
    assert not out.exists() and kit.leftovers(tmp_path) == []


def test_resume_after_an_interrupted_video_finishes_it_and_keeps_the_partial(tmp_path, tiny_model, kit):
    """The partial an interrupted run kept is not this run's file: it stays (it might be a
    user's file of that name; see runtime/outputs.py)."""
    video = kit.write_video(tmp_path / "in.avi", frames=200, size=(160, 120))
    out = tmp_path / "out" / "clip.avi"
    proc = start_run(video, "-o", out, "--model", tiny_model, "-q")
    wait_for_frames(out, proc, min_bytes=20_000)
    proc.send_signal(signal.SIGINT)
    stderr = finish(proc)
    assert proc.returncode == EXIT_INTERRUPTED and (tmp_path / "out" / "clip.partial.avi").exists(), stderr
    again = kit.run_cli("restore", "run", video, "-o", out, "--model", tiny_model, "--resume", "-q")
    assert again.code == 0, again.stderr
    assert "0 outputs exist already, 1 to do" in again.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["clip.avi", "clip.partial.avi"]
    assert kit.decodable_frames(out) == 200
