"""Calibration of the shipped model's backoff: the kernel estimator's confidence that a picture
is blurred against what restoring it actually gained, on the field and the fixed holdout.

    python -m restore.benchmarks.calibration [CHECKPOINT] [--out benchmarks/results/calibration-DATE.json]

For every crop of ``builtin-field`` and ``builtin-holdout`` (trainer/holdout.py): the posterior of
the whole crop (``model.estimate``), its blur confidence 1 - P(no blur) (the factor the model scales
its whole correction by), the most probable kernel's probability, and the PSNR gain of the output
over the input, as shipped and with the correction at full strength (the backoff left out). A
calibrated backoff gives low confidence where the gain would be small or negative (sharp pictures)
and high confidence where there is blur to undo; the full-strength gain shows what the correction
does on its own where the confidence is wrong. Results: JSON and a PNG (both gains against
confidence, per category).
"""
import datetime
from pathlib import Path

import numpy as np
import torch

from .media import cpu_model
from .report import checkpoint_parser, command_line, save_figure, write_results

RESULTS = Path(__file__).parent / "results"


def measure(checkpoint):
    from restore.trainer import holdout
    from restore.trainer.calibrate import full_strength
    from restore.trainer.checkpoint import load_checkpoint, model_from_checkpoint
    from restore.trainer.inference import restore_array
    from restore.trainer.metrics import psnr
    from restore.trainer.models.deconv import SHARP

    model = model_from_checkpoint(load_checkpoint(checkpoint)).eval()
    if getattr(model, "backoff", None) is None:
        raise SystemExit(f"{checkpoint}: this model does not back off (fourier-unet with deconv and bank 2 does)")
    rows = []
    crops = [("field", c) for c in holdout.field_crops()] + [("holdout", c) for c in holdout.holdout_crops()]
    for data, crop in crops:
        with torch.no_grad():
            posterior = model.estimate(torch.from_numpy(crop.lq.transpose(2, 0, 1).copy())[None])[0]
        before = psnr(crop.gt, crop.lq)
        gain = psnr(crop.gt, restore_array(model, crop.lq)) - before
        full = psnr(crop.gt, full_strength(model, crop.lq)) - before
        rows.append({"data": data, "name": crop.name, "kind": crop.blur["kind"] if data == "field" else f"holdout {crop.blur['kind']}",
                     "confidence": round(float(1 - posterior[SHARP]), 4), "top_probability": round(float(posterior.max()), 4),
                     "gain_db": round(float(gain), 3), "gain_full_strength_db": round(float(full), 3)})
    return rows, list(model.backoff)


def summary(rows):
    confidence = np.array([r["confidence"] for r in rows])
    gain = np.array([r["gain_db"] for r in rows])
    full = np.array([r["gain_full_strength_db"] for r in rows])
    sharp = np.array([r["kind"] == "sharp" for r in rows])
    varied = confidence.std() > 0 and gain.std() > 0  # else no correlation to speak of
    return {"crops": len(rows), "pearson_confidence_gain": round(float(np.corrcoef(confidence, gain)[0, 1]), 3) if varied else None,
            "mean_confidence_sharp": round(float(confidence[sharp].mean()), 3) if sharp.any() else None,
            "mean_confidence_blurred": round(float(confidence[~sharp].mean()), 3),
            "mean_gain_full_strength_sharp_db": round(float(full[sharp].mean()), 3) if sharp.any() else None,
            "negative_gain_crops": [r["name"] for r in rows if r["gain_db"] < -0.1]}


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    kinds = sorted({r["kind"] for r in report["crops"]})
    low, high = report["backoff"]
    s = report["summary"]
    titles = {"gain_db": f"as shipped: {s['crops']} crops, Pearson r = {s['pearson_confidence_gain']}",
              "gain_full_strength_db": "the correction at full strength (no backoff)"}
    for ax, (key, title) in zip(axes, titles.items()):
        for i, kind in enumerate(kinds):
            rows = [r for r in report["crops"] if r["kind"] == kind]
            ax.scatter([r["confidence"] for r in rows], [r[key] for r in rows], label=kind, color=f"C{i}", s=28,
                       marker="x" if kind.startswith("holdout") else "o")
        ax.axhline(0, color="0.4", lw=0.8)
        ax.axhline(-0.1, color="C3", ls="--", lw=0.8, label="worst allowed (-0.1 dB)")
        ax.axvspan(low, high, color="0.85", zorder=0, label=f"backoff ramp: the correction scaled 0 -> 1 ({low:g}-{high:g})")
        ax.set_xlabel("estimator's blur confidence c = 1 - P(no blur), of the whole crop")
        ax.set_ylabel("PSNR gain over the input (dB)")
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"{Path(report['checkpoint']).name} on {report['cpu']}, {report['date']}", fontsize=8)
    save_figure(fig, path)


def main(argv=None):
    parser = checkpoint_parser(__doc__)
    args = parser.parse_args(argv)
    date = datetime.date.today().isoformat()
    out = args.out or RESULTS / f"calibration-{date}.json"
    rows, backoff = measure(args.checkpoint)
    report = {"command": command_line("calibration", argv), "checkpoint": args.checkpoint,
              "cpu": cpu_model(), "date": date, "backoff": backoff, "summary": summary(rows), "crops": rows}
    write_results(report, out, plot, report["summary"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
