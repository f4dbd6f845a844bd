"""Shared pieces of the reliability suite: a tiny real model, bad-file makers, and a runner for
the command-line entry points as real subprocesses with the one-line-error checks."""
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from restore.runtime.testing import decodable_frames, write_conv_artifact

ENTRY_POINTS = {
    "restore": "from restore.runtime.cli import main; main()",
    "restore-export": "from restore.export.cli import main; main()",
}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A real ONNX artifact (two 3x3 convs + residual): milliseconds per tile on CPU."""
    return write_conv_artifact(tmp_path_factory.mktemp("models") / "tiny", layers=2, tile=32, overlap=8, batch=2)


class Result:
    def __init__(self, proc):
        self.code, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr

    def error_lines(self, prog):
        return [line for line in self.stderr.splitlines() if line.startswith(f"{prog}: error:")]


def run_cli(prog, *args, fsize_limit=None, memory_limit=None, timeout=180, cwd=None):
    """Run an entry point (``restore`` or ``restore-export``) in a fresh Python process.

    ``fsize_limit``: bytes for RLIMIT_FSIZE in the child (``ulimit -f``), so writes past it fail
    for real with EFBIG; Python starts with SIGXFSZ ignored, so the process is not killed.
    ``memory_limit``: bytes of address space (RLIMIT_AS), so an allocation bomb that slips
    through fails fast instead of swapping the machine."""

    def limit():
        if fsize_limit:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))
        if memory_limit:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    proc = subprocess.run([sys.executable, "-c", ENTRY_POINTS[prog], *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, preexec_fn=limit if fsize_limit or memory_limit else None,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    return Result(proc)


def assert_user_error(result, prog, code, *names):
    """The policy for a user's mistake: the exit code of its error class, exactly one
    ``prog: error:`` line naming the input(s) and giving a hint, no traceback."""
    assert result.code == code, f"exit {result.code}, expected {code}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.error_lines(prog)
    assert len(lines) == 1, result.stderr
    for name in names:
        assert str(name) in lines[0], f"{name} not named in: {lines[0]}"
    assert "(" in lines[0] or code == 8, f"no hint in: {lines[0]}"
    return lines[0]


def leftovers(folder):
    """Temporary or partial files an interrupted write could leave behind."""
    return sorted(p.name for p in Path(folder).rglob("*") if ".partial" in p.name)


# --- bad files ----------------------------------------------------------------------------------
def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_header(path, width, height, bits=8, color_type=2):
    """A PNG whose IHDR claims ``width`` x ``height`` but whose pixel data is a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, bits, color_type, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(bytes(64))) + png_chunk(b"IEND", b"")
    Path(path).write_bytes(data)
    return path


def jpeg_with_size(path, width, height):
    """A valid small JPEG whose frame header (SOF0) is rewritten to claim another size."""
    ok, buf = cv2.imencode(".jpg", noise((16, 16, 3)))
    data = bytearray(buf.tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    Path(path).write_bytes(bytes(data))
    return path


def noise(shape, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    return (rng.random(shape) * np.iinfo(dtype).max).astype(dtype)


def encoded(suffix, image):
    ok, buf = cv2.imencode(suffix, image)
    assert ok
    return buf.tobytes()


def write_video(path, frames=12, size=(64, 48), fps=10, fourcc="MJPG"):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(noise((size[1], size[0], 3), seed=i))
    writer.release()
    return path


@pytest.fixture(scope="session")
def kit():
    """The helpers above, for test modules (a conftest cannot be imported under
    --import-mode=importlib)."""
    import types

    return types.SimpleNamespace(**{k: v for k, v in globals().items() if not k.startswith("_")})
