"""Peak RSS of `restore run` on a huge image (default 16384 x 16384 RGB PNG) on CPU.

    python -m restore.benchmarks.runtime_memory [--size 16384] [--layers 1] [--out DIR]

Writes a test PNG (smooth pattern + noise), a tiny conv ONNX artifact (runtime/testing.py; tile
256, overlap 32), runs the real CLI in a child process and samples its RSS and the kernel's
high-water mark (VmHWM) every 20 ms. The image is decoded fully as uint8 (size^2 x 3 bytes); the
tiler must add only a few strips of float buffers on top. Results go to
benchmarks/results/runtime_memory.json.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from restore.runtime.atomic import atomic_write_text

RESULTS = Path(__file__).parent / "results" / "runtime_memory.json"


def make_png(path, size):
    import cv2

    # Rows in bands keep the generator's own memory small; the PNG must still be decoded whole.
    y = np.arange(size, dtype=np.float32)[:, None]
    x = np.arange(size, dtype=np.float32)[None, :]
    rng = np.random.default_rng(0)
    image = np.empty((size, size, 3), np.uint8)
    for r0 in range(0, size, 1024):
        yy = y[r0 : r0 + 1024]
        for c in range(3):
            band = 128 + 90 * np.sin(yy / (97 + 31 * c)) * np.cos(x / (131 + 17 * c))
            band += rng.normal(0, 6, band.shape)
            image[r0 : r0 + 1024, :, c] = np.clip(band, 0, 255)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 1])


def _vm_hwm(pid):
    """The kernel's peak-RSS mark of a live process (catches peaks between samples)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def run(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--layers", type=int, default=1, help="3x3 conv layers of the tiny model (0 = identity)")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args(argv)

    import psutil

    from restore.runtime.testing import write_conv_artifact

    work = args.out or Path(tempfile.mkdtemp(prefix="restore-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"big{args.size}.png"
    if not src.exists():
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"from restore.benchmarks.runtime_memory import make_png; make_png({str(src)!r}, {args.size})"], check=True)
        print(f"wrote {src} ({src.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s", flush=True)
    model = write_conv_artifact(work / "model", layers=args.layers, tile=256, overlap=32, batch=4)
    dst = work / "out.png"
    cmd = [sys.executable, "-m", "restore.runtime", "run", str(src), "-o", str(dst), "--model", str(model), "-q"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    ps = psutil.Process(proc.pid)
    peak = high_water = 0
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
            high_water = max(high_water, _vm_hwm(proc.pid))
        except (psutil.NoSuchProcess, OSError):
            break
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"restore run failed with exit code {proc.returncode}")
    pixels = args.size * args.size
    result = {
        "image": f"{args.size}x{args.size} RGB uint8 PNG",
        "decoded_image_mb": round(pixels * 3 / 2**20),
        "model": f"tiny conv ONNX, {args.layers} 3x3 layers, tile 256, overlap 32, batch 4 (onnxruntime CPU)",
        "peak_rss_mb_sampled": round(peak / 2**20),
        "peak_rss_mb_vmhwm": round(high_water / 2**20),
        "seconds": round(seconds, 1),
        "megapixels_per_second": round(pixels / 1e6 / seconds, 2),
        "command": " ".join(cmd[1:]),
    }
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS, json.dumps(result, indent=2) + "\n")
    dst.unlink(missing_ok=True)


if __name__ == "__main__":
    run()
