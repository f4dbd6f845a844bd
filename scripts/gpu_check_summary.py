"""The last step of scripts/gpu_check.sh: every part's status and figures into one JSON.

    python3 scripts/gpu_check_summary.py PARTS_DIR OUT_DIR DRY_RUN(0|1)

Writes OUT_DIR/gpu_check.json and copies the two plots to OUT_DIR/kernel_bench.png and
OUT_DIR/model.png; prints a short table last (the device tool's reply carries the end of the output).
Headline figures are lifted to ``headline`` so a reader need not dig: fused kernel vs torch at
64x64, the shipped model's fps / p50 / p99 / fraction of the compute floor per size, the
pipeline's overlap efficiency, NVENC/NVDEC frames/s, the GPU tests' counts.
"""
import datetime
import json
import platform
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

PARTS = ("environment", "build", "kernel_check", "kernel_bench", "model", "pipeline", "video", "gpu_tests", "sanitizer")


def load(parts, name):
    path = parts / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    folder = parts / name  # gpu_matrix writes <device>-<date>.json into a folder
    found = sorted(folder.glob("*.json")) if folder.is_dir() else []
    return json.loads(found[0].read_text()) if found else None


def gpu_tests(parts):
    path = parts / "gpu_tests.xml"
    if not path.is_file():
        return None
    suite = ET.parse(path).getroot()
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    failed = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    return {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")} | {"failed": failed}


def headline(result):
    head = {}
    bench = result["kernel_bench"].get("figures") or {}
    for size in bench.get("sizes", []):
        head[f"kernel {size['shape'][2]}x{size['shape'][3]}"] = {
            "speedup_vs_torch": size["speedup_vs_torch"], "fraction_of_floor": size["fraction_of_floor"]}
    check = result["kernel_check"].get("figures") or {}
    if check:
        head["kernel_check"] = f"{check['passed']} passed, {check['failed']} failed"
    matrix = result["model"].get("figures") or {}
    streams = {s["size"]: s for s in matrix.get("streaming") or [] if isinstance(s, dict) and "fps" in s}
    for r in (matrix.get("per_frame") or {}).get("results", []):
        if "error" in r:
            head[f"model {r['size']}"] = {"error": r["error"]}
            continue
        floor = r.get("floor") or {}
        head[f"model {r['size']}"] = {
            "precision": r["precision"], "fps": r["fps"], "p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"],
            "fraction_of_compute_floor": 1 / floor["compute_over_floor"] if floor.get("compute_over_floor") else None,
            "stream_fps": streams.get(r["size"], {}).get("fps"), "graph_fallback": r.get("graph_fallback")}
    pipeline = result["pipeline"].get("figures") or {}
    for case in pipeline.get("cases", []):
        head[f"pipeline {case['workload']} slots={case['slots']}"] = {"pipelined_over_compute": case["efficiency"]}
    video = result["video"].get("figures") or {}
    if video:
        head["video"] = video.get("skipped") or {k: video[k] for k in ("encoder", "encode_fps", "decoder", "decode_fps")}
    if result["gpu_tests"].get("figures"):
        head["gpu_tests"] = result["gpu_tests"]["figures"]
    return head


def main(parts_dir, out_dir, dry_run):
    parts, out = Path(parts_dir), Path(out_dir)
    result = {}
    for name in PARTS:
        status_path = parts / f"{name}.status"
        status = json.loads(status_path.read_text()) if status_path.is_file() else {"rc": None, "skipped": "not run"}
        status["figures"] = gpu_tests(parts) if name == "gpu_tests" else load(parts, name)
        result[name] = status
    report = {
        "format": "restore-gpu-check/1", "dry_run": bool(int(dry_run)),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(), "device": device_name(result),
        "tensorrt_rtx": (result["kernel_bench"].get("figures") or {}).get("trt_rtx_engine"),
        "headline": {}, "parts": result,
    }
    report["headline"] = headline(result)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    for source, target in ((parts / "kernel_bench.png", "kernel_bench.png"),
                           (next((parts / "model").glob("*.png"), None) if (parts / "model").is_dir() else None, "model.png")):
        if source is not None and source.is_file():
            shutil.copyfile(source, out / target)
    print(f"{'part':14s} {'exit':>5s} {'s':>5s} {'budget':>6s} {'timeout':>7s}")
    for name, status in result.items():
        print(f"{name:14s} {str(status.get('rc')):>5s} {status.get('seconds', 0):5d} {status.get('budget_s', 0):6d}"
              f" {status.get('timeout_s', 0):7d}"
              + (f"  {status['skipped']}" if status.get("skipped") else ""))
    print(json.dumps(report["headline"], indent=1, default=str))
    failed = [name for name, status in result.items() if status.get("rc") not in (0, None)]
    if failed:
        print(f"parts that failed: {', '.join(failed)} (logs.txt has their output)")
    return 1 if failed else 0


def device_name(result):
    for name in ("kernel_bench", "kernel_check"):
        figures = result[name].get("figures") or {}
        if figures.get("device"):
            return figures["device"]
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
