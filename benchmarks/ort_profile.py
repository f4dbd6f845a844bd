"""Where an ONNX graph's CPU time goes under ONNX Runtime, and how far it is from this CPU's floor.

    python -m restore.benchmarks.ort_profile [MODEL.onnx] [--batch 4] [--threads 2] [--out benchmarks/results/ort-profile-DATE.json]

Runs the graph (default: the shipped model's restorer, one batch of tiles at its tile size) with
ONNX Runtime's profiler, sums each operator kind's kernel time and counts its FLOPs from the
profiled shapes (MatMul, Gemm, Conv, ConvTranspose; the rest count as memory-bound), then sets
them against this CPU's measured fp32 sgemm rate (``floor.measure_matmul_tflops``, same threads).

``fp32 ceiling`` = the graph's time / (its FLOPs at the sgemm rate): the most any fp32 engine could
speed this graph up on this CPU without doing fewer FLOPs. A target above it needs a different
computation (fewer FLOPs) or lower precision, not a better engine.
"""
import argparse
import collections
import datetime
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from restore.runtime.atomic import atomic_write_text

from .media import cpu_model
from .report import command_line

RESULTS = Path(__file__).parent / "results"


def node_flops(op, inputs, outputs):
    """Multiply-adds x 2 of one profiled node from its input and output shapes (0: not counted)."""
    out = outputs[0] if outputs else None
    if op in ("MatMul", "Gemm", "FusedMatMul") and out:
        return 2 * math.prod(out) * inputs[0][-1]  # (..., M, K) @ (..., K, N)
    if op in ("Conv", "FusedConv") and out:
        weight = inputs[1]
        return 2 * math.prod(out) * math.prod(weight[1:])
    if op == "ConvTranspose" and out:  # ORT's profile leaves its weight out; exact for stride = kernel (upsamplers)
        return 2 * math.prod(out) * inputs[0][1]
    return 0


def profile(path, batch, threads, rounds=3):
    """{op kind: [ms per run, GFLOP per run, nodes]} and the mean wall ms per run."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feeds = {}
        for i in session.get_inputs():
            shape = [batch if not isinstance(d, int) and i.name == "input" else (d if isinstance(d, int) else 1) for d in i.shape]
            x = rng.random(shape, dtype=np.float32)
            feeds[i.name] = x / x.sum(-1, keepdims=True) if i.name == "posterior" else x
        session.run(None, feeds)  # warm-up, profiled too: left out below by counting runs
        walls = []
        for _ in range(rounds):
            start = time.perf_counter()
            session.run(None, feeds)
            walls.append((time.perf_counter() - start) * 1e3)
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
    first_timed = sorted(e["ts"] for e in runs)[1]  # skip the warm-up run's nodes
    kinds = collections.defaultdict(lambda: [0.0, 0.0, 0])
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < first_timed:
            continue
        args = e["args"]
        kind = kinds[args["op_name"]]
        kind[0] += e["dur"] / 1e3 / rounds
        kind[1] += node_flops(args["op_name"], _shapes(args, "input_type_shape"), _shapes(args, "output_type_shape")) / 1e9 / rounds
        kind[2] += 1
    for kind in kinds.values():
        kind[2] //= rounds
    return dict(kinds), float(np.mean(walls))


def _shapes(args, key):
    """The shapes of a profiled node's inputs or outputs: [{"float": [dims]}, ...] -> [[dims], ...]."""
    return [next(iter(entry.values())) for entry in args.get(key, [])]


def main(argv=None):
    from restore.runtime.artifact import DEFAULT_MODEL_DIR

    from .floor import measure_matmul_tflops

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default=str(DEFAULT_MODEL_DIR / "model.onnx"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    sgemm_tflops, _ = measure_matmul_tflops("cpu")
    kinds, wall_ms = profile(args.model, args.batch, args.threads)
    total_ms = sum(k[0] for k in kinds.values())
    gflop = sum(k[1] for k in kinds.values())
    floor_ms = gflop / (sgemm_tflops * 1e3) * 1e3
    table = [{"op": op, "ms": round(ms, 2), "share": round(ms / total_ms, 4), "nodes": n, "gflop": round(g, 3),
              "gflop_per_s": round(g / ms * 1e3, 1) if g else None}
             for op, (ms, g, n) in sorted(kinds.items(), key=lambda kv: -kv[1][0])]
    date = datetime.date.today().isoformat()
    report = {"format": "restore-ort-profile/1", "command": command_line("ort_profile", argv),
              "model": args.model, "cpu": cpu_model(), "threads": args.threads, "batch": args.batch, "date": date,
              "sgemm_gflop_per_s": round(sgemm_tflops * 1e3, 1), "wall_ms_per_run": round(wall_ms, 1),
              "kernel_ms_per_run": round(total_ms, 1), "gflop_per_run": round(gflop, 2),
              "achieved_gflop_per_s": round(gflop / total_ms * 1e3, 1), "fp32_ceiling": round(total_ms / floor_ms, 2), "ops": table}
    out = args.out or RESULTS / f"ort-profile-{date}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    print(f"{'op':16s} {'ms':>8s} {'share':>6s} {'GFLOP':>7s} {'GFLOP/s':>8s}")
    for row in table:
        rate = f"{row['gflop_per_s']:8.1f}" if row["gflop_per_s"] else f"{'-':>8s}"
        print(f"{row['op']:16s} {row['ms']:8.1f} {row['share']:6.1%} {row['gflop']:7.2f} {rate}")
    print(f"{report['cpu']}, {args.threads} threads: {gflop:.1f} GFLOP in {total_ms:.0f} ms of kernels "
          f"({report['achieved_gflop_per_s']} GFLOP/s; sgemm {report['sgemm_gflop_per_s']}): fp32 ceiling {report['fp32_ceiling']}x")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
