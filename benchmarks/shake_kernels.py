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
- ``model's estimate``: CHECKPOINT's (default: the shipped model's) posterior mean kernel for the crop;
- ``blind, with phase``: ``runtime.kernel_estimate`` on the crop (no network; any shape).
The filter is scikit-image's Wiener on the mirrored crop (trainer/baselines.py), its balance the
best of six (0.001-1) per crop and kernel (an oracle choice: this bounds what a kernel form allows).

Then the model itself (``model_gain_db``): as shipped, and at full strength (its backoff left out)
with its own estimate, with the blind estimate with phase (``forward(x, kernel=...)``) and with
the true kernel, and with the blind kernel only where the estimate is ``trusted`` (its
``concentration`` and ``agreement``; else as shipped); and how like the truth the blind estimate is
(``similarity``: the best normalised correlation over shifts).

``--pictures train``: the same protocol on the training pictures (crops of 384), where
``runtime.kernel_estimate``'s constants were chosen; the default is the field holdout's 8 crops.
Results: JSON and a PNG (mean and per-crop gain per form).
"""
import datetime
from pathlib import Path

import numpy as np

from .media import cpu_model
from .report import checkpoint_parser, command_line, save_figure, write_results

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


def measure(checkpoint, curves, pictures):
    import torch

    from restore.runtime.kernel_estimate import estimate_kernel, similarity
    from restore.trainer.baselines import wiener
    from restore.trainer.calibrate import full_strength
    from restore.trainer.checkpoint import load_checkpoint, model_from_checkpoint
    from restore.trainer.datasets import builtin_images
    from restore.trainer.degradations import centred_kernel
    from restore.trainer.holdout import field_crops
    from restore.trainer.inference import restore_array
    from restore.trainer.metrics import psnr
    from restore.trainer.models.deconv import kernel_bank, kernel_size

    model = model_from_checkpoint(load_checkpoint(checkpoint)).eval()
    size = kernel_size(model.deconv.estimator.bank)
    bank = kernel_bank(model.deconv.estimator.bank).astype(np.float64)
    many = curve_bank(curves, size)
    crops = field_crops() if pictures == "holdout" else field_crops(builtin_images("train"), crop=384)
    rows = []
    for crop in (c for c in crops if c.blur["kind"] == "shake"):
        true = centred_kernel(crop.kernel, size).astype(np.float64)
        symmetric = (true + point_reflection(true)) / 2
        with torch.no_grad():
            posterior = model.estimate(torch.from_numpy(crop.lq.transpose(2, 0, 1).copy())[None])
            estimate = model.deconv.estimator.kernel(posterior)[0].double().numpy()
        forms = {"true": true, "point reflection": point_reflection(true), "point-symmetrised": symmetric,
                 "zero phase": zero_phase(true), f"nearest in bank {model.deconv.estimator.bank}": nearest(bank, symmetric),
                 f"nearest of {curves} curves": nearest(many, symmetric), "model's estimate": estimate}
        blind = estimate_kernel(crop.lq, size)
        forms["blind, with phase"] = blind.kernel
        base = psnr(crop.gt, crop.lq)
        gains = {name: round(max(psnr(crop.gt, np.clip(wiener(crop.lq, k, b), 0, 1)) for b in BALANCES) - base, 3)
                 for name, k in forms.items()}
        outputs = {"as shipped": restore_array(model, crop.lq), "full strength": full_strength(model, crop.lq),
                   "full strength, blind kernel with phase": full_strength(model, crop.lq, blind.kernel),
                   "full strength, true kernel": full_strength(model, crop.lq, true)}
        outputs["blind kernel where trusted, else as shipped"] = outputs[
            "full strength, blind kernel with phase" if blind.trusted else "as shipped"]
        model_gains = {name: round(psnr(crop.gt, out) - base, 3) for name, out in outputs.items()}
        rows.append({"name": crop.name, "blur": crop.blur, "gain_db": gains, "model_gain_db": model_gains,
                     "similarity": round(similarity(blind.kernel, true), 3), "concentration": round(blind.concentration, 3),
                     "agreement": round(blind.agreement, 3), "trusted": blind.trusted})
        print(crop.name, " ".join(f"{n}: {g:+.2f}" for n, g in {**gains, **model_gains}.items()), flush=True)
    return rows


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [8, 4]})
    for ax, key, ylabel in ((axes[0], "gain_db", "Wiener filter's PSNR gain over the input (dB)"),
                            (axes[1], "model_gain_db", "the model's PSNR gain over the input (dB)")):
        names = list(report["mean_" + key])
        ax.bar(range(len(names)), [report["mean_" + key][n] for n in names], color="C0", alpha=0.6, label="mean")
        for row in report["crops"]:
            ax.scatter(range(len(names)), [row[key][n] for n in names], color="k", s=10, zorder=3)
        ax.axhline(0, color="0.4", lw=0.8)
        ax.axhline(1.5, color="C3", ls="--", lw=0.8, label="issue 16's target for the model (+1.5 dB)")
        ax.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
    axes[0].legend(fontsize=8)
    axes[0].set_title(f"curved camera shake, {len(report['crops'])} crops of the {report['pictures']} pictures: "
                      "the kernel's form against the gain", fontsize=10)
    axes[1].set_title("the model given each kernel", fontsize=10)
    fig.suptitle(f"{Path(report['checkpoint']).name}, {report['cpu']}, {report['date']}; the blind estimate's "
                 f"similarity to the true kernel: mean {report['mean_similarity']:.2f}", fontsize=8)
    save_figure(fig, path)


def main(argv=None):
    parser = checkpoint_parser(__doc__)
    parser.add_argument("--curves", type=int, default=1000, help="random shake paths in the richer bank")
    parser.add_argument("--pictures", choices=("holdout", "train"), default="holdout",
                        help="the field holdout's shake crops, or the same protocol on the training pictures")
    args = parser.parse_args(argv)
    date = datetime.date.today().isoformat()
    out = args.out or RESULTS / f"shake-kernels{'-train' if args.pictures == 'train' else ''}-{date}.json"
    rows = measure(args.checkpoint, args.curves, args.pictures)

    def mean(key):
        return {name: round(float(np.mean([r[key][name] for r in rows])), 3) for name in rows[0][key]}

    report = {"command": command_line("shake_kernels", argv), "checkpoint": args.checkpoint,
              "pictures": args.pictures, "cpu": cpu_model(), "date": date, "balances": BALANCES,
              "mean_gain_db": mean("gain_db"), "mean_model_gain_db": mean("model_gain_db"),
              "worst_model_gain_db": {name: min(r["model_gain_db"][name] for r in rows) for name in rows[0]["model_gain_db"]},
              "mean_similarity": round(float(np.mean([r["similarity"] for r in rows])), 3), "crops": rows}
    write_results(report, out, plot, {k: report[k] for k in ("mean_gain_db", "mean_model_gain_db", "worst_model_gain_db", "mean_similarity")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
