"""Commit what one scripts/gpu_check.sh device call brought back: copies the returned files into
benchmarks/results/ under names that carry the device and the date.

    python scripts/gpu_results.py FILES_AT [RESULTS_DIR]   # FILES_AT: the folder the device tool returned

gpu_check.json -> benchmarks/results/gpu-check-<device>-<date>.json, kernel_bench.png and model.png
-> ...-kernel-bench.png and ...-model.png beside it; logs.txt stays out (it is in the reply). A dry
run's JSON is refused: those figures are a CPU's.
"""
import json
import re
import shutil
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def main(files_at, results=RESULTS):
    files_at, results = Path(files_at), Path(results)
    report = json.loads((files_at / "gpu_check.json").read_text())
    if report.get("dry_run"):
        print(f"gpu_results: error: {files_at / 'gpu_check.json'} is a dry run, not GPU figures", file=sys.stderr)
        return 3
    slug = re.sub(r"[^a-z0-9]+", "-", str(report["device"]).lower()).strip("-")
    stem = f"gpu-check-{slug}-{report['date'][:10]}"
    copies = {"gpu_check.json": f"{stem}.json", "kernel_bench.png": f"{stem}-kernel-bench.png", "model.png": f"{stem}-model.png"}
    for source, target in copies.items():
        if (files_at / source).is_file():
            shutil.copyfile(files_at / source, results / target)
            print(results / target)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
