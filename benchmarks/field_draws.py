"""The shipped model on fresh draws of the field protocol (trainer/holdout.py): the same kinds of
blur, drawn again with other seeds, on the holdout pictures and on the training pictures. The
field holdout is one draw; a rule or a model tuned until that draw passes can still fail the next.

    python -m restore.benchmarks.field_draws [CHECKPOINT] [--seeds 1,2,3,4] [--out FILE]

Per set of pictures and kind: crops, mean and worst PSNR gain over the input, and how many crops
come out worse than their input by more than the field's bound (``holdout.FIELD_WORST``), each
named with its blur. Crops of ``holdout.CROP`` on the holdout pictures, 384 on the training ones
(as ``kernel_choice``). Results: JSON and a PNG (every crop's gain, per kind and set).
"""
import datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .media import cpu_model
from .report import checkpoint_parser, command_line, save_figure, write_results

RESULTS = Path(__file__).parent / "results"
SETS = {"holdout": None, "train": 384}  # pictures -> crop side (None: the field holdout's)


def measure(checkpoint, seeds):
    from restore.trainer.checkpoint import load_checkpoint, model_from_checkpoint
    from restore.trainer.datasets import builtin_images
    from restore.trainer.holdout import CROP, field_crops
    from restore.trainer.inference import restore_array
    from restore.trainer.metrics import psnr

    model = model_from_checkpoint(load_checkpoint(checkpoint)).eval()
    rows = []
    for pictures, side in SETS.items():
        drawn = [(seed, c) for seed in seeds for c in field_crops(builtin_images(pictures), crop=side or CROP, seed=seed)]
        for seed, crop in tqdm(drawn, desc=f"{pictures} pictures", unit="crop"):
            base = psnr(crop.gt, crop.lq)
            gain = psnr(crop.gt, restore_array(model, crop.lq)) - base
            rows.append({"pictures": pictures, "seed": seed, "name": crop.name, "blur": crop.blur,
                         "input_db": round(base, 2), "gain_db": round(gain, 3)})
    return rows


def summary(rows):
    from restore.trainer.holdout import FIELD_WORST

    out = {}
    for pictures in dict.fromkeys(r["pictures"] for r in rows):
        kinds = {}
        for row in rows:
            if row["pictures"] == pictures:
                kinds.setdefault(row["blur"]["kind"], []).append(row)
        out[pictures] = {kind: {"crops": len(group), "mean_gain_db": round(float(np.mean([r["gain_db"] for r in group])), 3),
                                "worst_gain_db": round(float(min(r["gain_db"] for r in group)), 3),
                                "worse_than_bound": [f"{r['name']} seed {r['seed']} ({r['gain_db']:+.2f} dB, input {r['input_db']} dB)"
                                                     for r in group if r["gain_db"] < FIELD_WORST]}
                         for kind, group in kinds.items()}
    return out


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(report["summary"])
    fig, axes = plt.subplots(1, len(sets), figsize=(7 * len(sets), 4.5), squeeze=False)
    for ax, pictures in zip(axes[0], sets):
        kinds = list(report["summary"][pictures])
        for j, kind in enumerate(kinds):
            gains = [r["gain_db"] for r in report["crops"] if r["pictures"] == pictures and r["blur"]["kind"] == kind]
            ax.scatter(np.full(len(gains), j) + np.linspace(-0.25, 0.25, len(gains)), gains, s=9, color="k")
            ax.bar(j, np.mean(gains), 0.6, color="C0", alpha=0.5)
        ax.axhline(report["bound_db"], color="C3", ls="--", lw=1, label=f"bound {report['bound_db']} dB")
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set_xticks(range(len(kinds)), [f"{k}\n({len(report['summary'][pictures][k]['worse_than_bound'])} below)" for k in kinds], fontsize=8)
        ax.set_ylabel("PSNR gain over the input (dB)")
        ax.set_title(f"{pictures} pictures, seeds {report['seeds']}", fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle(f"{report['checkpoint']} on fresh draws of the field protocol, {report['cpu']}, {report['date']}", fontsize=9)
    save_figure(fig, path)


def main(argv=None):
    from restore.trainer.holdout import FIELD_WORST

    parser = checkpoint_parser(__doc__)
    parser.add_argument("--seeds", default="1,2,3,4", help="the draws, comma-separated (the field holdout's own is 20261201)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    date = datetime.date.today().isoformat()
    out = args.out or RESULTS / f"field-draws-{date}.json"
    rows = measure(args.checkpoint, seeds)
    report = {"command": command_line("field_draws", argv), "checkpoint": args.checkpoint,
              "seeds": seeds, "cpu": cpu_model(), "date": date, "bound_db": FIELD_WORST, "summary": summary(rows), "crops": rows}
    write_results(report, out, plot, report["summary"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
