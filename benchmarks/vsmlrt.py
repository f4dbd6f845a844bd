"""restore's CPU backends vs vs-mlrt's ONNX Runtime and OpenVINO plugins (and the Real-ESRGAN-style
tiler) on the same ONNX file, frames and thread count, in one run.

    python -m restore.benchmarks.vsmlrt [--sizes 640x360,1280x720] [--rounds 2] [--out benchmarks/results]
    restore bench --peer vs-mlrt                 # the same

vs-mlrt needs Python >= 3.12: the benchmark makes its own venv (``$XDG_CACHE_HOME/restore/vsmlrt-venv``)
from the first such interpreter it finds (``--python``, else 3.12 on PATH or in pyenv, where vs-mlrt
was checked, then newer ones) and installs ``vapoursynth``, ``vapoursynth-mlrt-ort`` and
``vapoursynth-mlrt-ov`` from PyPI into it; the plugins then run in that interpreter
(``vsmlrt_worker.py``). vs-mlrt cuts the frame into network-sized tiles (256) overlapping by 16 px
on each side and keeps each tile's centre (no blending); ours blends 32-px overlaps; the
Real-ESRGAN-style tiler keeps 236-px cells with 10 px of context. All run the shipped model.onnx
with the same number of threads (this machine's physical cores): ours on ONNX Runtime and, when
installed, OpenVINO (also in bf16 where the CPU has it), vs-mlrt's ORT plugin on ONNX Runtime's
CPU provider, its OpenVINO plugin in fp32 and, where the CPU has it, bf16.

Contenders run interleaved, ``--rounds`` times (best round kept), because other work on a shared
machine shifts absolute times; the ratios within one run are the figures to trust. Reported per
size: ms/frame and frames/s, fps ratio to vs-mlrt ORT's best setting (the issue's comparison) and
to vs-mlrt's best of all, PSNR of each output against ours on ONNX Runtime (fp32), and the seam
ratio of (output - input) on each tiler's own cut lines (~1 = no seam).
"""
import datetime
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from restore.runtime.errors import BackendError

PACKAGES = ["vapoursynth", "vapoursynth-mlrt-ort", "vapoursynth-mlrt-ov", "numpy"]
WORKER = Path(__file__).with_name("vsmlrt_worker.py")
SAMPLES = Path(__file__).resolve().parents[1] / "runtime" / "samples"
PEER_TILE, PEER_OVERLAP = 256, 16
ESRGAN_PAD = 10


def find_python(explicit=None):
    """An interpreter >= 3.12 for vs-mlrt, or None."""
    candidates = [explicit] if explicit else [shutil.which("python3.12"), *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python"))),
                                              shutil.which("python3.13"), *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[3-9]*/bin/python")))]
    for python in filter(None, candidates):
        probe = subprocess.run([python, "-c", "import sys; print(sys.version_info >= (3, 12))"], capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return python
    return None


def cache_venv_python():
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "restore" / "vsmlrt-venv" / "bin" / "python"


def ensure_venv(python=None, log=print):
    """The venv's interpreter, made (and vs-mlrt installed) on first use."""
    exe = cache_venv_python()
    venv = exe.parent.parent
    check = [str(exe), "-c", "import vapoursynth as vs; vs.core.ort; vs.core.ov"]
    if exe.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return exe
    base = find_python(python)
    if base is None:
        raise BackendError("vs-mlrt", "needs Python >= 3.12 and none was found", "install one (pyenv install 3.12) or pass --python")
    log(f"making {venv} with {base} and installing {' '.join(PACKAGES)} ...")
    for cmd in ([base, "-m", "venv", "--clear", str(venv)], [str(exe), "-m", "pip", "install", "-q", *PACKAGES]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
            raise BackendError("vs-mlrt", f"could not set up its venv ({last})", "check that PyPI is reachable")
    if subprocess.run(check, capture_output=True).returncode != 0:
        raise BackendError("vs-mlrt", "installed but its ONNX Runtime or OpenVINO plugin does not load", f"try {exe} -c 'import vapoursynth'")
    return exe


def sample_frames(width, height, count=1):
    """``count`` RGB float32 frames in [0, 1]: the bundled samples' sharp references scaled to cover
    the size, centre-cropped, then blurred (straight motion, 15 px at 30 degrees), so the model has
    a blur to undo at every size (a scaled-up blurry sample reads as sharp and comes back as it
    was, which would leave the outputs nothing to compare)."""
    import cv2

    from restore.trainer.degradations import apply_kernel, linear_motion_kernel

    frames = []
    for path in sorted((SAMPLES / "sharp").glob("*.png"))[:count]:
        image = cv2.imread(str(path))[..., ::-1]
        h, w = image.shape[:2]
        f = max(width / w, height / h)
        image = cv2.resize(image, (max(width, round(w * f)), max(height, round(h * f))), interpolation=cv2.INTER_CUBIC)
        y, x = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
        sharp = np.ascontiguousarray(image[y : y + height, x : x + width]).astype(np.float32) / 255.0
        frames.append(np.clip(apply_kernel(sharp, linear_motion_kernel(15, 30)), 0, 1).astype(np.float32))
    return frames


def self_contained(model, folder):
    """``model`` (a ModelSource whose graph takes the picture's blur estimate) as one graph that
    estimates the blur per tile, traced from its checkpoint: what vs-mlrt and a Real-ESRGAN-style
    tiler, which feed one input, can run."""
    from restore.export.onnx_export import save_onnx, trace_to_onnx
    from restore.export.spectral import probe_plane_shapes
    from restore.runtime.artifact import ModelSource
    from restore.trainer.checkpoint import model_from_checkpoint

    net = model_from_checkpoint(model.checkpoint).eval()
    tile = model.tiling["tile"]
    probe_plane_shapes(net, tile, net.in_channels)
    batch = model.metadata["shapes"]["batch"]
    save_onnx(trace_to_onnx(net, "matmul", tile, (batch["min"], batch["max"]), shared=False), folder / "model.onnx")
    metadata = {**model.metadata, "estimate": None}
    return ModelSource(name=f"{model.name} (self-contained graph)", onnx=folder / "model.onnx", metadata=metadata)


def peer_lines(length):
    """Where vs-mlrt's kept tile regions meet along one axis (both candidates at the last,
    end-aligned tile, whose neighbour overlaps it by more than the step)."""
    step = PEER_TILE - 2 * PEER_OVERLAP
    starts = list(range(0, max(length - PEER_TILE, 0), step)) + [max(length - PEER_TILE, 0)]
    lines = set()
    for a, b in zip(starts, starts[1:]):
        lines.update((b + PEER_OVERLAP, a + PEER_TILE - PEER_OVERLAP))
    return sorted(x for x in lines if 0 < x < length)


def run_peer(exe, frames, model, threads, streams, workdir, plugin="ort", precision="fp32"):
    """vs-mlrt's ``plugin`` (ort or ov) on ``frames`` in a fresh process: (ms per frame, outputs as
    H x W x 3, versions)."""
    src, out = Path(workdir) / "frames.npy", Path(workdir) / "peer_out.npy"
    np.save(src, np.stack([f.transpose(2, 0, 1) for f in frames]))
    done = subprocess.run([str(exe), str(WORKER), str(src), str(model), str(out), str(threads), str(streams), "1", plugin, precision],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise BackendError("vs-mlrt", f"its run failed: {(done.stderr.strip().splitlines() or ['?'])[-1][:300]}")
    info = json.loads(done.stdout.strip().splitlines()[-1])
    return info["ms_per_frame"], [o.transpose(1, 2, 0) for o in np.load(out)], info


def time_ours(fn, frames):
    outputs, start = [], time.perf_counter()
    for frame in frames:
        outputs.append(fn(frame))
    return (time.perf_counter() - start) * 1e3 / len(frames), outputs


def compare(sizes, rounds=2, frames_per_size=1, python=None, log=print):
    from restore.runtime import Restorer
    from restore.runtime.artifact import resolve_model
    from restore.runtime.backends import backend_class
    from restore.runtime.backends.base import physical_cores
    from restore.runtime.tiler import seam_ratio

    from .esrgan_tiler import cells, restore_esrgan_style, seam_ratio_at
    from .suite import device_info

    exe = ensure_venv(python, log)
    model = resolve_model("default")
    if model.estimator is not None:  # peers run single-input graphs: the same weights, estimating per tile
        model = self_contained(model, Path(tempfile.mkdtemp(prefix="restore-peer-graph-")))
    threads = physical_cores()
    ours = {"restore onnxruntime": Restorer("default", backend="onnxruntime", device="cpu")}
    peers = [("ort", "fp32", 1), ("ort", "fp32", threads), ("ov", "fp32", threads)]  # (plugin, precision, num_streams)
    if backend_class("openvino").unavailable_reason(model, "cpu") is None:
        ours["restore openvino"] = Restorer("default", backend="openvino", device="cpu", precision="fp32")
        from restore.runtime.backends.openvino import cpu_capabilities

        if "BF16" in cpu_capabilities():
            ours["restore openvino bf16"] = Restorer("default", backend="openvino", device="cpu", precision="bf16")
            peers += [("ov", "bf16", 1), ("ov", "bf16", threads)]
    single = backend_class("onnxruntime")(model, device="cpu").activate()  # batch 1 on every core: Real-ESRGAN's loop
    tiler = ours["restore onnxruntime"].tiler
    esrgan_cell = PEER_TILE - 2 * ESRGAN_PAD

    def esrgan(frame):
        return restore_esrgan_style(single.infer, frame, esrgan_cell, ESRGAN_PAD, multiple=PEER_TILE)

    rows, peer_info = [], {}
    with tempfile.TemporaryDirectory(prefix="restore-vsmlrt-") as workdir:
        for width, height in sizes:
            frames = sample_frames(width, height, frames_per_size)
            for restorer in ours.values():  # warm-up: sessions, arenas, lazy kernel choices
                restorer.restore(frames[0])
            esrgan(frames[0])
            best, outputs = {}, {}
            for round_ in range(rounds):
                contenders = [*((name, lambda f, r=r: r.restore(f)) for name, r in ours.items()), ("Real-ESRGAN-style tiler (onnxruntime)", esrgan)]
                for name, fn in contenders:
                    ms, outs = time_ours(fn, frames)
                    best[name] = min(best.get(name, ms), ms)
                    outputs[name] = outs
                for plugin, precision, streams in peers:
                    name = f"vs-mlrt {plugin} {precision} (num_streams={streams})"
                    ms, outs, peer_info[plugin] = run_peer(exe, frames, model.onnx, threads, streams, workdir, plugin, precision)
                    best[name] = min(best.get(name, ms), ms)
                    outputs[name] = outs
                log(f"{width}x{height} round {round_ + 1}: " + ", ".join(f"{k} {v:.0f} ms" for k, v in best.items()))
            reference = [np.clip(o, 0, 1) for o in outputs["restore onnxruntime"]]
            peer_ort = min(v for k, v in best.items() if k.startswith("vs-mlrt ort"))  # the comparison
            peer_any = min(v for k, v in best.items() if k.startswith("vs-mlrt"))
            for name, ms in best.items():
                outs = [np.clip(o, 0, 1) for o in outputs[name]]
                mse = np.mean([np.mean((o.astype(np.float64) - r) ** 2) for o, r in zip(outs, reference)])
                residual = outs[0] - frames[0]
                if name.startswith("restore"):
                    seams = seam_ratio(residual, tiler.tile, tiler.overlap)
                elif name.startswith("vs-mlrt"):
                    seams = seam_ratio_at(residual, peer_lines(height), peer_lines(width))
                else:
                    seams = seam_ratio_at(residual, [s for s, _ in cells(height, esrgan_cell)[1:]], [s for s, _ in cells(width, esrgan_cell)[1:]])
                rows.append({"size": f"{width}x{height}", "contender": name, "ms_per_frame": ms, "fps": 1e3 / ms,
                             "fps_vs_vsmlrt_ort": peer_ort / ms, "fps_vs_vsmlrt_any": peer_any / ms,
                             "psnr_vs_restore_onnxruntime_db": None if mse == 0 else float(10 * np.log10(1 / mse)),
                             "seam_ratio": seams})
    for r in ours.values():
        r.close()
    single.deactivate()
    return {"format": "restore-vsmlrt/1", "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": device_info("cpu"), "threads": threads, "rounds": rounds, "frames_per_size": frames_per_size,
            "model": str(model.onnx.name), "descriptions": {k: r.description for k, r in ours.items()},
            "peer": {"tilesize": PEER_TILE, "overlap": PEER_OVERLAP, "device": "CPU", **peer_info},
            "esrgan_style": {"cell": esrgan_cell, "tile_pad": ESRGAN_PAD}, "shared_machine_load": os.getloadavg()[0],
            "results": rows}


def table(report):
    lines = [f"{'size':9}  {'contender':40}  {'ms/frame':>9}  {'fps':>7}  {'x vs-mlrt ort':>13}  {'x vs-mlrt any':>13}  {'PSNR dB':>8}  {'seams':>6}"]
    for r in report["results"]:
        psnr = "same" if r["psnr_vs_restore_onnxruntime_db"] is None else f"{r['psnr_vs_restore_onnxruntime_db']:.1f}"
        lines.append(f"{r['size']:9}  {r['contender']:40}  {r['ms_per_frame']:9.0f}  {r['fps']:7.3f}  {r['fps_vs_vsmlrt_ort']:13.2f}  "
                     f"{r['fps_vs_vsmlrt_any']:13.2f}  {psnr:>8}  {r['seam_ratio']:6.2f}")
    lines.append(f"CPU: {report['device']['name']}, {report['threads']} threads each; load average {report['shared_machine_load']:.1f} (shared machine)")
    return "\n".join(lines)


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from restore.runtime.atomic import atomic_path

    rows = report["results"]
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    names = list(dict.fromkeys(r["contender"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(sizes))]
        pick = [next(r for r in rows if r["size"] == s and r["contender"] == name) for s in sizes]
        axes[0].bar(xs, [r["fps_vs_vsmlrt_ort"] for r in pick], width, label=name)
        axes[1].bar(xs, [r["seam_ratio"] for r in pick], width, label=name)
    for ax, label in zip(axes, ("frames/s over vs-mlrt ORT's best (higher is better)", "seam ratio of output - input (1 = no seam)")):
        ax.set_xticks(range(len(sizes)), sizes)
        ax.set_ylabel(label)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"shipped model.onnx on {report['device']['name']}, {report['threads']} threads, shared machine ({report['created'][:10]})")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def write(report, out_dir):
    from restore.runtime.atomic import atomic_write_text

    out_dir = Path(out_dir)
    cpu = re.sub(r"[^a-z0-9]+", "-", re.sub(r"\(r\)|\(tm\)|processor", "", report["device"]["name"].lower())).strip("-")
    stem = f"vsmlrt-cpu-{report['created'][:10]}-{cpu}"  # the CPU changes between machines, and with it the answer
    atomic_write_text(out_dir / f"{stem}.json", json.dumps(report, indent=2) + "\n")
    plot(report, out_dir / f"{stem}.png")
    return out_dir / f"{stem}.json", out_dir / f"{stem}.png"


def run(sizes, rounds, out_dir, python=None):
    report = compare(sizes, rounds=rounds, python=python, log=lambda m: click.echo(m, err=True))
    click.echo(table(report))
    for path in write(report, out_dir):
        click.echo(f"wrote {path}")


@click.command()
@click.option("--sizes", default="640x360,1280x720", show_default=True, help="Frame sizes WIDTHxHEIGHT, comma-separated.")
@click.option("--rounds", default=2, show_default=True, type=click.IntRange(1), help="Interleaved rounds; the best of each contender is kept.")
@click.option("--out", "out_dir", default="benchmarks/results", show_default=True, type=click.Path(file_okay=False), help="Folder for vsmlrt-cpu-DATE-CPU.json/.png.")
@click.option("--python", help="A Python >= 3.12 for vs-mlrt's venv. [default: found on PATH or in pyenv]")
def main(sizes, rounds, out_dir, python):
    """restore vs vs-mlrt's ONNX Runtime plugin on the shipped model, same frames and threads."""
    from .harness import parse_size

    run([parse_size(s) for s in sizes.split(",") if s.strip()], rounds, out_dir, python)


if __name__ == "__main__":
    sys.exit(main())
