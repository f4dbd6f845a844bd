"""``restore run --cluster`` on real Ray: the local mode, and a two-node cluster started here on
127.0.0.1. Outputs are compared with a plain local run of the same options: images byte for byte,
videos frame by frame (FFV1 is lossless, so its frames must be equal; H.264 pieces are encoded
apart, so within the codec's tolerance), timestamps and audio packets exactly."""
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from restore.runtime.testing import loopback_ray_cluster, write_conv_artifact, write_test_video

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

# Ray 2.5x+ nodes joining a head need a shared token: one made for this test run, loopback only.
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}


def restore(*args, check=True):
    """`restore ARGS...` in a fresh process (Ray's driver state never leaks into the test's)."""
    result = subprocess.run([sys.executable, "-m", "restore.runtime", *map(str, args)], env=ENV, capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder of images (8- and 16-bit, odd sizes) and an H.264 + AAC clip with a keyframe every 8 frames."""
    import cv2

    folder = tmp_path_factory.mktemp("in")
    rng = np.random.default_rng(1)
    for i, (h, w) in enumerate([(48, 64), (61, 77), (96, 40), (64, 64)]):
        cv2.imwrite(str(folder / f"im{i}.png"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / "deep.png"), rng.integers(0, 65535, (40, 52, 3), dtype=np.uint16))
    write_test_video(folder / "clip.mp4", frames=48, size=(96, 64), fps=30000 / 1001, audio="aac", options={"g": "8"})
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_conv_artifact(tmp_path_factory.mktemp("m") / "conv", layers=3, width=16, tile=32, overlap=8)


@pytest.fixture(scope="module")
def local(inputs, model, tmp_path_factory):
    """A plain local run of the folder, in H.264 and in FFV1."""
    out = tmp_path_factory.mktemp("local")
    restore("run", inputs, "-o", out / "h264", "--model", model, "-q")
    restore("run", inputs, "-o", out / "ffv1", "--model", model, "--codec", "ffv1", "-q")
    return out


def frames_of(path):
    with av.open(str(path)) as c:
        return [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def audio_of(path):
    with av.open(str(path)) as c:
        return hashlib.sha256(b"".join(bytes(p) for p in c.demux(audio=0) if p.size)).hexdigest()


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def assert_same_as_local(out, reference, lossless):
    names = sorted(p.name for p in reference.iterdir())
    assert sorted(p.name for p in out.iterdir()) == names  # nothing else: no partial, no work folder
    for name in names:
        if name.endswith(".png"):
            assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    ours, theirs = frames_of(out / "clip.mp4"), frames_of(reference / "clip.mp4")
    assert [pts for pts, _ in ours] == [pts for pts, _ in theirs]  # no frame missing, none twice, same times
    for i, ((_, a), (_, b)) in enumerate(zip(ours, theirs)):
        if lossless:
            np.testing.assert_array_equal(a, b)
        else:  # x264 at CRF 18 on this noisy clip: two encodes of one frame differ by ~37 dB PSNR
            assert psnr(a, b) > 32, i
            neighbours = [theirs[j][1] for j in (i - 1, i + 1) if 0 <= j < len(theirs)]
            assert all(psnr(a, n) < psnr(a, b) - 3 for n in neighbours), i  # the right frame, not its neighbour
    assert audio_of(out / "clip.mp4") == audio_of(reference / "clip.mp4")


def test_without_cluster_ray_is_never_imported(inputs, model, tmp_path):
    code = ("import sys; from restore.runtime.cli import main\n"
            f"sys.argv = ['restore', 'run', {str(inputs / 'im0.png')!r}, '-o', {str(tmp_path / 'o.png')!r}, '--model', {str(model)!r}, '-q']\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], 'ray imported'\n")
    subprocess.run([sys.executable, "-c", code], env=ENV, check=True, timeout=120)
    assert (tmp_path / "o.png").is_file()


def test_cluster_options_are_checked(inputs, model, tmp_path):
    result = restore("run", inputs / "im0.png", "-o", tmp_path / "o.png", "--model", model, "--workers", "2", check=False)
    assert result.returncode == 7 and "only used with --cluster" in result.stderr
    result = restore("run", inputs / "clip.mp4", "-o", tmp_path / "f", "--frames", "--model", model, "--cluster", "local", check=False)
    assert result.returncode == 7 and "without --cluster" in result.stderr and "Traceback" not in result.stderr
    with socket.socket() as s:  # a port nobody listens on: one line at once, not Ray's retries
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    result = restore("run", inputs / "im0.png", "-o", tmp_path / "o.png", "--model", model, "--cluster", address, check=False)
    assert result.returncode == 7 and "nothing answers there" in result.stderr


def test_local_mode_is_frame_identical_to_a_local_run(inputs, model, local, tmp_path):
    """FFV1 (lossless): the joined video's frames are exactly the local run's. A damaged video
    beside the folder is skipped (exit 8) and leaves nothing behind."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes((inputs / "clip.mp4").read_bytes()[:3000])
    result = restore("run", inputs, bad, "-o", tmp_path / "out", "--model", model, "--codec", "ffv1", "--cluster", "local", "--workers", "2", "-q",
                     check=False)
    assert result.returncode == 8 and "skipped: " + str(bad) in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert_same_as_local(tmp_path / "out", local / "ffv1", lossless=True)


@pytest.fixture(scope="module")
def two_nodes():
    """A head node and a second node on 127.0.0.1, one CPU each."""
    with loopback_ray_cluster(nodes=2, cpus_per_node=1, env=ENV) as address:
        yield address


def worker_pids(busy=False):
    """Pids of the RestoreWorker actor processes (Ray names them ray::RestoreWorker[.method])."""
    pids = []
    for p in psutil.process_iter(["cmdline"]):
        title = " ".join(p.info["cmdline"] or [])
        if title.startswith("ray::RestoreWorker" + (".restore" if busy else "")):
            pids.append(p.pid)
    return pids


def wait_for(condition, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def start_driver(*args):
    return subprocess.Popen([sys.executable, "-m", "restore.runtime", *map(str, args)], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_nodes_survive_a_killed_worker(inputs, model, local, two_nodes, tmp_path):
    """A worker process killed mid-job is restarted by Ray and its job retried: H.264 output
    complete, with the local run's timestamps and frames within the codec's tolerance."""
    driver = start_driver("run", inputs, "-o", tmp_path / "out", "--model", model, "--cluster", two_nodes, "--workers", "2")
    victim = wait_for(lambda: worker_pids(busy=True))[0]
    os.kill(victim, signal.SIGKILL)
    _, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 0, stderr
    assert "2 workers on 2 nodes" in stderr  # one per node: each has one CPU
    assert not psutil.pid_exists(victim)
    assert_same_as_local(tmp_path / "out", local / "h264", lossless=False)


@pytest.mark.slow
def test_two_nodes_ctrl_c_leaves_nothing_complete_and_resume_finishes(inputs, model, local, two_nodes, tmp_path):
    out = tmp_path / "out"
    driver = start_driver("run", inputs, "-o", out, "--model", model, "--codec", "ffv1", "--cluster", two_nodes, "--workers", "2")
    wait_for(lambda: (out / ".clip.mp4.segments").is_dir() and list((out / ".clip.mp4.segments").glob("restored-*")))
    driver.send_signal(signal.SIGINT)
    _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stderr
    wait_for(lambda: not worker_pids(), 60)  # the cluster work stopped
    assert not (out / "clip.mp4").exists()
    for path in out.iterdir():  # what is there is either complete and right, or hidden and named partial/segments
        if not path.name.startswith("."):
            assert path.read_bytes() == (local / "ffv1" / path.name).read_bytes()
    pieces = len(list((out / ".clip.mp4.segments").glob("restored-*")))
    images = len([p for p in out.iterdir() if p.suffix == ".png"])
    result = restore("run", inputs, "-o", out, "--model", model, "--codec", "ffv1", "--cluster", two_nodes, "--workers", "2", "--resume")
    assert f"{images} outputs exist already" in result.stderr
    assert f"{pieces} of " in result.stderr and "pieces restored already" in result.stderr
    assert_same_as_local(out, local / "ffv1", lossless=True)
