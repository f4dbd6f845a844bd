"""The one-call GPU script (scripts/gpu_check.sh) in its CPU dry run: every part runs on the
shipped model at a tiny size and leaves figures, not errors, and nothing is written outside $OUT
(and a scratch folder the script removes), so the day a GPU is lent the script runs unchanged."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RETURNED = {"gpu_check.json", "logs.txt", "kernel_bench.png", "model.png"}
# Written by other processes of a test session, or the kernel library's own git-ignored build
# folder (the kernel tests build it too; the script only rebuilds it when the sources changed).
NOT_OURS = ("__pycache__", ".pytest_cache", ".hypothesis", ".venv", ".git", "kernels/fourier_bottleneck/build")


def tree(root):
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root).as_posix()
        dirnames[:] = [d for d in dirnames if d not in NOT_OURS and f"{rel}/{d}".lstrip("./") not in NOT_OURS]
        for name in filenames:
            path = Path(dirpath) / name
            stat = path.stat()
            files[path.relative_to(root).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return files


@pytest.mark.slow
def test_gpu_check_dry_run_gives_figures_for_every_part_and_writes_only_under_out(tmp_path, nvcc):
    out, scratch = tmp_path / "out", tmp_path / "tmp"
    scratch.mkdir()
    before = tree(REPO)
    env = dict(os.environ, OUT=str(out), TMPDIR=str(scratch), PYTHON=sys.executable, OMP_NUM_THREADS="2")
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--dry-run"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert tree(REPO) == before
    assert list(scratch.iterdir()) == []
    assert {p.name for p in out.iterdir()} == RETURNED

    report = json.loads((out / "gpu_check.json").read_text())
    parts = report["parts"]
    assert report["dry_run"] and all(status["rc"] == 0 for status in parts.values()), parts
    assert sum(status["budget_s"] for status in parts.values()) <= 530  # what the GPU run is given
    head = report["headline"]
    model = head["model 64x64"]
    assert model["fps"] > 0 and model["p99_ms"] >= model["p50_ms"] > 0 and model["stream_fps"] > 0
    assert 0 < model["fraction_of_compute_floor"] and model["graph_fallback"] is None
    matrix = parts["model"]["figures"]
    assert matrix["ours"] == "default" and matrix["runtime"][0]["backend"] == "runtime:torch" and "fps" in matrix["runtime"][0]
    assert head["kernel_check"].endswith(" 0 failed") and parts["kernel_check"]["figures"]["passed"] >= 24
    assert head["kernel 64x64"]["speedup_vs_torch"] > 0
    assert report["tensorrt_rtx"] == {"skipped": "no GPU (dry run)"}
    (pipeline,) = [v for k, v in head.items() if k.startswith("pipeline host-torch-shipped")]
    assert pipeline["pipelined_over_compute"] > 0
    assert head["video"]["encode_fps"] > 0 and parts["video"]["figures"]["all_frames_back"]
    assert parts["gpu_tests"]["figures"]["tests"] > 0 and parts["gpu_tests"]["figures"]["failed"] == []
    assert parts["sanitizer"]["figures"]["failed"] == 0
