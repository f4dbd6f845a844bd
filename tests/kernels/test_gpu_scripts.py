"""Decisions of the GPU scripts that need no GPU: where TensorRT-RTX is tried, and how the figures
a device call brought back are filed."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

from restore.kernels.fourier_bottleneck import gpu_bench

REPO = Path(__file__).resolve().parents[2]


def test_tensorrt_rtx_is_not_tried_on_hopper_and_children_stay_under_the_command_limit():
    args = argparse.Namespace(skip_trt=False, cpu=False)
    reason = gpu_bench.trt_trial_or_reason(args, (9, 0))["skipped"]
    assert reason == ("compute capability 9.0 is not supported by TensorRT-RTX's support matrix "
                      "(7.5/8.6/8.9/12.0): not tried")
    assert gpu_bench.trt_trial_or_reason(argparse.Namespace(skip_trt=True, cpu=False), (8, 6)) == {"skipped": "--skip-trt"}
    assert gpu_bench.TRIAL_TIMEOUT_S < 600


def test_returned_figures_are_filed_with_device_and_date_and_dry_runs_are_refused(tmp_path):
    returned, results = tmp_path / "returned", tmp_path / "results"
    returned.mkdir()
    results.mkdir()
    report = {"dry_run": False, "device": "NVIDIA H200", "date": "2026-12-24T10:00:00+00:00"}
    (returned / "gpu_check.json").write_text(json.dumps(report))
    (returned / "model.png").write_bytes(b"png")
    (returned / "logs.txt").write_text("log")
    script = [sys.executable, str(REPO / "scripts" / "gpu_results.py"), str(returned), str(results)]
    assert subprocess.run(script, capture_output=True, text=True).returncode == 0
    assert sorted(p.name for p in results.iterdir()) == ["gpu-check-nvidia-h200-2026-12-24-model.png",
                                                         "gpu-check-nvidia-h200-2026-12-24.json"]
    (returned / "gpu_check.json").write_text(json.dumps(dict(report, dry_run=True)))
    refused = subprocess.run(script, capture_output=True, text=True)
    assert refused.returncode == 3 and "dry run" in refused.stderr
