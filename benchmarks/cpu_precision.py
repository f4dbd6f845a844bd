"""bf16 on the CPU (OpenVINO, AVX512-BF16 / AMX) against fp32, on the shipped model, through the
runtime as a user runs it (``Restorer``, tiles of 256):

    python -m restore.benchmarks.cpu_precision [--rounds 3] [--out benchmarks/results/cpu-precision-DATE.json]

- quality: every crop of the field holdout (36) and the fixed holdout (8), and the photo from
  outside the repository (benchmarks/outside_photo.py, 5 cases), restored in fp32 and in bf16:
  the PSNR gain over the input of each, per category, the largest per-crop difference of the two
  gains, and the bf16 output against the fp32 one (PSNR, largest and 99.9th-percentile difference
  in levels of 1/255); and the uniform pictures' round trip in bf16 (within a level).
- speed: ms per 1280x720 and 1920x1080 frame, ONNX Runtime fp32, OpenVINO fp32 and OpenVINO bf16,
  interleaved round by round, best of ``--rounds``.
Results: JSON and a PNG beside it. Needs a CPU on which OpenVINO reports BF16.
"""
import argparse
import datetime
import json
import time
from pathlib import Path

import numpy as np

from .report import command_line

RESULTS = Path(__file__).parent / "results"
SIZES = ((1280, 720), (1920, 1080))


def pictures():
    """[(set, category, name, ground truth, input)] for the quality comparison."""
    from restore.trainer.holdout import field_crops, holdout_crops

    from .outside_photo import cases

    out = [("field", c.blur["kind"], c.name, c.gt, c.lq) for c in field_crops()]
    out += [("holdout", c.blur["kind"], c.name, c.gt, c.lq) for c in holdout_crops()]
    return out + [("outside photo", name.split(",")[0], name, gt, lq) for name, gt, lq in cases()]


def quality(fp32, bf16):
    from tqdm import tqdm

    from restore.trainer.holdout import uniform_pictures
    from restore.trainer.metrics import psnr

    rows = []
    for group, category, name, gt, lq in tqdm(pictures(), desc="quality", unit="picture"):
        a, b = fp32.restore(lq), bf16.restore(lq)
        levels = np.abs(b - a) * 255
        rows.append({"set": group, "category": category, "name": name, "gain_fp32_db": round(float(psnr(gt, a) - psnr(gt, lq)), 3),
                     "gain_bf16_db": round(float(psnr(gt, b) - psnr(gt, lq)), 3), "bf16_vs_fp32_psnr_db": round(float(psnr(a, b)), 2),
                     "max_diff_levels": round(float(levels.max()), 2), "p999_diff_levels": round(float(np.percentile(levels, 99.9)), 2)})
    uniform = [{"name": name, "max_change_levels": round(float(np.abs(bf16.restore(p) - p).max() * 255), 3)} for name, p in uniform_pictures()]
    return rows, uniform


def summarise(rows):
    groups = {}
    for r in rows:
        groups.setdefault(f"{r['set']}: {r['category']}", []).append(r)
    return {key: {"pictures": len(g), "gain_fp32_db": round(float(np.mean([r["gain_fp32_db"] for r in g])), 3),
                  "gain_bf16_db": round(float(np.mean([r["gain_bf16_db"] for r in g])), 3),
                  "largest_gain_difference_db": round(float(max(abs(r["gain_bf16_db"] - r["gain_fp32_db"]) for r in g)), 3),
                  "min_bf16_vs_fp32_psnr_db": min(r["bf16_vs_fp32_psnr_db"] for r in g)} for key, g in groups.items()}


def speed(restorers, rounds):
    from .field import scene

    frames = {f"{w}x{h}": (scene(w, h) * 255).astype(np.uint8) for w, h in SIZES}
    best = {size: {} for size in frames}
    for size, frame in frames.items():
        for r in restorers.values():  # warm-up
            r.restore(frame)
        for _ in range(rounds):
            for name, r in restorers.items():
                start = time.perf_counter()
                r.restore(frame)
                ms = (time.perf_counter() - start) * 1e3
                best[size][name] = round(min(best[size].get(name, ms), ms), 1)
        print(size, "  ".join(f"{k} {v:.0f} ms" for k, v in best[size].items()), flush=True)
    return best


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from restore.runtime.atomic import atomic_path

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [1, 2]})
    sizes, names = list(report["speed_ms"]), list(next(iter(report["speed_ms"].values())))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(sizes))]
        left.bar(xs, [report["speed_ms"][s][name] / 1e3 for s in sizes], width, label=name)
    left.set_xticks(range(len(sizes)), sizes)
    left.set_ylabel("s per frame (lower is better)")
    left.legend(fontsize=8)
    keys = list(report["summary"])
    for i, (precision, colour) in enumerate((("fp32", "tab:blue"), ("bf16", "tab:orange"))):
        right.bar([j + (i - 0.5) * 0.4 for j in range(len(keys))], [report["summary"][k][f"gain_{precision}_db"] for k in keys], 0.4,
                  label=precision, color=colour)
    right.set_xticks(range(len(keys)), keys, rotation=35, ha="right", fontsize=8)
    right.set_ylabel("mean PSNR gain over the input, dB")
    right.axhline(0, color="grey", lw=0.8)
    right.legend()
    for ax in (left, right):
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"shipped model, OpenVINO bf16 vs fp32, {report['device']['name']} ({report['date']})")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def main(argv=None):
    from restore.runtime import Restorer
    from restore.runtime.atomic import atomic_write_text

    from .suite import device_info

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    date = datetime.date.today().isoformat()
    out = args.out or RESULTS / f"cpu-precision-{date}.json"
    restorers = {"onnxruntime fp32": Restorer("default", backend="onnxruntime"), "openvino fp32": Restorer("default", backend="openvino", precision="fp32"),
                 "openvino bf16": Restorer("default", backend="openvino", precision="bf16")}
    rows, uniform = quality(restorers["openvino fp32"], restorers["openvino bf16"])
    report = {"command": command_line("cpu_precision", argv), "date": date, "device": device_info("cpu"),
              "descriptions": {k: r.description for k, r in restorers.items()}, "speed_ms": speed(restorers, args.rounds),
              "summary": summarise(rows), "uniform_bf16": {"pictures": uniform, "met": all(u["max_change_levels"] <= 1 for u in uniform)},
              "pictures": rows}
    for r in restorers.values():
        r.close()
    for key, s in report["summary"].items():
        print(f"{key:28s} {s['pictures']:3d}  fp32 {s['gain_fp32_db']:+.3f}  bf16 {s['gain_bf16_db']:+.3f}  "
              f"largest difference {s['largest_gain_difference_db']:.3f} dB  min PSNR bf16 vs fp32 {s['min_bf16_vs_fp32_psnr_db']:.1f} dB")
    print("uniform pictures in bf16 within a level:", report["uniform_bf16"]["met"])
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    plot(report, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
