"""Present benchmark results: a plain-text table, the JSON file and a PNG plot (all files atomic)."""
import argparse
import json
import shlex
import sys
from pathlib import Path

from restore.runtime.atomic import atomic_path, atomic_write_text

COLUMNS = [
    # header, width, how to get the value from a result record
    ("model", 13, lambda r: r["model"]),
    ("backend", 13, lambda r: r["backend"]),
    ("prec", 4, lambda r: r["precision"]),
    ("size", 9, lambda r: r["size"]),
    ("tile", 4, lambda r: r.get("tile") or "-"),
    ("p50 ms", 8, lambda r: r["latency_ms"]["p50"]),
    ("p95 ms", 8, lambda r: r["latency_ms"]["p95"]),
    ("p99 ms", 8, lambda r: r["latency_ms"]["p99"]),
    ("fps", 7, lambda r: r["fps"]),
    ("strm fps", 8, lambda r: r.get("stream_fps")),
    ("MP/s", 7, lambda r: r["megapixels_per_s"]),
    ("dec", 6, lambda r: r["stages_ms"]["decode"]),
    ("up", 6, lambda r: r["stages_ms"]["upload"]),
    ("comp", 8, lambda r: r["stages_ms"]["compute"]),
    ("down", 6, lambda r: r["stages_ms"]["download"]),
    ("stitch", 6, lambda r: r["stages_ms"]["stitch"]),
    ("enc", 6, lambda r: r["stages_ms"]["encode"]),
    ("ovl", 4, lambda r: r.get("overlap_efficiency")),
    ("RSS MB", 7, lambda r: r["peak_host_rss_mb"]),
    ("dev MB", 7, lambda r: r["peak_device_mb"]),
    ("kFLOP/px", 8, lambda r: r["flops_per_pixel"] / 1e3 if r.get("flops_per_pixel") else None),
    ("TFLOP/s", 7, lambda r: r.get("achieved_tflops")),
    ("x floor", 7, lambda r: (r.get("floor") or {}).get("compute_over_floor")),
]


def _cell(value, width):
    if value is None:
        text = "n/a"
    elif isinstance(value, float):
        text = f"{value:.{max(0, min(3, width - len(str(int(abs(value)))) - 2))}f}"
    else:
        text = str(value)
    return text.rjust(width) if isinstance(value, (int, float)) or value is None else text.ljust(width)


def table(report):
    """The results as a fixed-width text table (stage columns are medians in ms; n/a = stage not
    used by that backend; 'x floor' = compute time / hardware floor)."""
    lines = ["  ".join(h.ljust(w) if i < 5 else h.rjust(w) for i, (h, w, _) in enumerate(COLUMNS))]
    for r in report["results"]:
        if r.get("error"):
            head = "  ".join(_cell(get(r), w) for h, w, get in COLUMNS[:5])
            lines.append(f"{head}  FAILED: {r['error']}")
            continue
        lines.append("  ".join(_cell(get(r), w) for _, w, get in COLUMNS))
    rates = report.get("rates")
    device = report.get("device", {})
    lines.append(f"device: {device.get('name', device.get('device'))}")
    for choice in dict.fromkeys(r["backend_choice"] for r in report["results"] if r.get("backend_choice")):
        lines.append(choice)
    if rates:
        lines.append(f"measured: {rates['matmul_tflops']:.2f} TFLOP/s dense {rates['matmul_dtype']} matmul, "
                     f"{rates['bandwidth_gbs']:.1f} GB/s copy bandwidth")
    return "\n".join(lines)


def write_json(report, path):
    atomic_write_text(path, json.dumps(report, indent=2, sort_keys=False) + "\n")


def command_line(module, argv):
    """The command that ran benchmark ``module`` with ``argv`` (None: this process's own arguments,
    as when run with ``python -m``), for its results file."""
    return shlex.join(["python", "-m", f"restore.benchmarks.{module}", *(sys.argv[1:] if argv is None else argv)])


def checkpoint_parser(doc):
    """The argument parser of a benchmark of one checkpoint (described by the first paragraph of
    ``doc``): CHECKPOINT, the shipped model's by default, and --out FILE."""
    from restore.runtime.artifact import DEFAULT_MODEL_DIR

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", default=str(DEFAULT_MODEL_DIR / "model.safetensors"))
    parser.add_argument("--out", type=Path, default=None)
    return parser


def save_figure(fig, path):
    """``fig`` laid out and written as a PNG at ``path``, atomically."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)


def write_results(report, out, plot, shown):
    """``report`` as JSON at ``out`` and ``plot(report, png)`` beside it, then ``shown`` (the
    figures worth reading) and where both files are, on stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(report, out)
    plot(report, out.with_suffix(".png"))
    print(json.dumps(shown, indent=2))
    print(f"wrote {out} and {out.with_suffix('.png')}")


def plot(report, path, title=None):
    """Frames/s per model and size, p50 latency with a whisker to p99 and, where any case has
    one, compute time over the hardware floor. Cases differing in backend/precision/tile get
    their own bars. Returns False (and writes nothing) when no case succeeded."""
    ok = [r for r in report["results"] if not r.get("error")]
    if not ok:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(dict.fromkeys(r["size"] for r in ok))
    series = list(dict.fromkeys(_series(r) for r in ok))
    panels = [("frames/s (higher is better)", lambda r: r["fps"], "linear"),
              ("latency p50 ms, whisker to p99", lambda r: r["latency_ms"]["p50"], "linear")]
    if any((r.get("floor") or {}).get("compute_over_floor") for r in ok):
        panels.append(("compute time / hardware floor", lambda r: (r.get("floor") or {}).get("compute_over_floor"), "log"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.7 * len(panels), 5.2), squeeze=False)
    axes = axes[0]
    width = 0.8 / len(series)
    for i, name in enumerate(series):
        for ax, (_, value, _) in zip(axes, panels):
            xs, ys, whisker = [], [], []
            for j, size in enumerate(sizes):
                match = [r for r in ok if _series(r) == name and r["size"] == size and value(r)]
                if match:
                    r = match[0]
                    xs.append(j + (i - (len(series) - 1) / 2) * width)
                    ys.append(value(r))
                    whisker.append(max(r["latency_ms"]["p99"], r["latency_ms"]["p95"]) - r["latency_ms"]["p50"])
            error = [[0] * len(xs), whisker] if ax is axes[1] else None
            ax.bar(xs, ys, width, yerr=error, capsize=2, label=name)
    for ax, (ylabel, _, scale) in zip(axes, panels):
        ax.set_xticks(range(len(sizes)), sizes)
        ax.set_ylabel(ylabel)
        ax.set_yscale(scale)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    device = report.get("device", {})
    fig.suptitle(title or f"restore bench on {device.get('name', device.get('device'))} ({report.get('created', '')[:10]})")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return True


def _series(r):
    tile = f" t{r['tile']}" if r.get("tile") else ""
    picked = f" ({r['backend_picked']})" if r["backend"] == "auto" and r.get("backend_picked") else ""
    return f"{r['model']} {r['backend']}{picked} {r['precision']}{tile}"
