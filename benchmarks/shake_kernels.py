"""What it would take to undo curved camera shake: the Wiener filter's gain on the field holdout's
shake crops (trainer/holdout.py) with the kernel in each form a model could hold.

    python -m restore.benchmarks.shake_kernels [CHECKPOINT] [--out benchmarks/results/shake-kernels-DATE.json]

Kernels, for each crop:
- ``true``: the crop's own PSF (non-blind, phase and all);
- ``point reflection``: the true PSF turned by 180 degrees, as likely as the truth to an estimate
  read off the power spectrum (|K| is the same);
- ``point-symmetrised``: (k + its point reflection) / 2, the best a point-symmetric kernel can be
  (the shipped model's bank holds only point-symmetric kernels: its Wiener filter is real);
- ``zero phase``: the PSF whose spectrum is |K|, all a power spectrum tells;
- ``nearest in bank N``: the entry of the model's bank closest (L2) to the point-symmetrised truth,
  what a perfect classifier over that bank would pick;
- ``nearest of N curves``: the same over N point-symmetrised random shake paths (a richer bank);
- ``model's estimate``: CHECKPOINT's (default: the shipped model's) posterior mean kernel for the crop.
The filter is scikit-image's Wiener on the mirrored crop (trainer/baselines.py), its balance the
best of six (0.001-1) per crop and kernel (an oracle choice: this bounds what a kernel form allows).
Results: JSON and a PNG (mean and per-crop gain per form).
"""
import argparse
import datetime
import json
from pathlib import Path

import numpy as np

from restore.runtime.atomic import atomic_path, atomic_write_text

from .media import cpu_model

RESULTS = Path(__file__).parent / "results"
BALANCES = (1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)


def point_reflection(k):
    return k[::-1, ::-1]


def zero_phase(k):
    return np.fft.fftshift(np.real(np.fft.ifft2(np.abs(np.fft.fft2(np.fft.ifftshift(k))))))


def curve_bank(n, size, seed=7):
    from restore.trainer.degradations import trajectory_kernel

    rng = np.random.default_rng(seed)
    curves = [trajectory_kernel(rng, size=size, length=rng.uniform(9, 33), anxiety=rng.uniform(0.05, 0.6)) for _ in range(n)]
    return np.stack([(k + point_reflection(k)).ravel() / 2 for k in curves])


def nearest(bank, kernel):
    return bank[np.argmin(((bank - kernel.ravel()) ** 2).sum(1))].reshape(kernel.shape)


def measure(checkpoint, curves):
    import torch

    from restore.trainer.baselines import wiener
    from restore.trainer.checkpoint import load_checkpoint, model_from_checkpoint
    from restore.trainer.degradations import centred_kernel
    from restore.trainer.holdout import field_crops
    from restore.trainer.metrics import psnr
    from restore.trainer.models.deconv import kernel_bank, kernel_size

    model = model_from_checkpoint(load_checkpoint(checkpoint)).eval()
    size = kernel_size(model.deconv.estimator.bank)
    bank = kernel_bank(model.deconv.estimator.bank).astype(np.float64)
    many = curve_bank(curves, size)
    rows = []
    for crop in (c for c in field_crops() if c.blur["kind"] == "shake"):
        true = centred_kernel(crop.kernel, size).astype(np.float64)
        symmetric = (true + point_reflection(true)) / 2
        with torch.no_grad():
            posterior = model.estimate(torch.from_numpy(crop.lq.transpose(2, 0, 1).copy())[None])
            estimate = model.deconv.estimator.kernel(posterior)[0].double().numpy()
        forms = {"true": true, "point reflection": point_reflection(true), "point-symmetrised": symmetric,
                 "zero phase": zero_phase(true), f"nearest in bank {model.deconv.estimator.bank}": nearest(bank, symmetric),
                 f"nearest of {curves} curves": nearest(many, symmetric), "model's estimate": estimate}
        base = psnr(crop.gt, crop.lq)
        gains = {name: round(max(psnr(crop.gt, np.clip(wiener(crop.lq, k, b), 0, 1)) for b in BALANCES) - base, 3)
                 for name, k in forms.items()}
        rows.append({"name": crop.name, "blur": crop.blur, "gain_db": gains})
        print(crop.name, " ".join(f"{n}: {g:+.2f}" for n, g in gains.items()), flush=True)
    return rows


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["mean_gain_db"])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.bar(range(len(names)), [report["mean_gain_db"][n] for n in names], color="C0", alpha=0.6, label="mean")
    for row in report["crops"]:
        ax.scatter(range(len(names)), [row["gain_db"][n] for n in names], color="k", s=10, zorder=3)
    ax.axhline(0, color="0.4", lw=0.8)
    ax.axhline(1.5, color="C3", ls="--", lw=0.8, label="issue 16's target for the model (+1.5 dB)")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("Wiener filter's PSNR gain over the input (dB)")
    ax.set_title(f"curved camera shake, {len(report['crops'])} field crops: the kernel's form against the gain", fontsize=10)
    ax.legend(fontsize=8)
    fig.suptitle(f"{Path(report['checkpoint']).name}, {report['cpu']}, {report['date']}", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)


def main(argv=None):
    from restore.runtime.artifact import DEFAULT_MODEL_DIR

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", default=str(DEFAULT_MODEL_DIR / "model.safetensors"))
    parser.add_argument("--curves", type=int, default=1000, help="random shake paths in the richer bank")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    date = datetime.date.today().isoformat()
    out = args.out or RESULTS / f"shake-kernels-{date}.json"
    rows = measure(args.checkpoint, args.curves)
    mean = {name: round(float(np.mean([r["gain_db"][name] for r in rows])), 3) for name in rows[0]["gain_db"]}
    report = {"command": " ".join(["python -m restore.benchmarks.shake_kernels", *(argv or [])]), "checkpoint": args.checkpoint,
              "cpu": cpu_model(), "date": date, "balances": BALANCES, "mean_gain_db": mean, "crops": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    plot(report, out.with_suffix(".png"))
    print(json.dumps(mean, indent=2))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
