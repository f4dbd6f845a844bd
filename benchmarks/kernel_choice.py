"""When to give the model the blind kernel estimate with phase (runtime/kernel_estimate.py) instead
of its own bank estimate: on every field crop, the model as shipped against the model at full
strength given the blind kernel, and a rule that picks between them from what the runtime would
know (no ground truth).

    python -m restore.benchmarks.kernel_choice [CHECKPOINT] [--pictures train|holdout] [--seed N] [--out FILE]

The rule (``choose``): the blind kernel at full strength where its estimate is ``trusted``, the
bank's blur confidence c = 1 - P(no blur) is in ``BAND`` (the bank is unsure, but the picture is
not sharp: a sharp picture's blind kernel is a trusted point, and the correction at full strength
on it costs 10-15 dB), and the picture deconvolved by the blind kernel has gradients no less sparse
than by the bank's, within ``SPARSER`` (``kernel_estimate.sparsity``: a wrong kernel that the two
halves agree on still rings); else the model as shipped. The band was read off the training
pictures (``--pictures train``: the field protocol on them, crops of 384) before the holdout was
run; ``SPARSER`` off the same crops, then checked on a fresh draw of them (``--seed``) before the
holdout was run again.
Results: JSON (per crop and per kind, shipped / chosen mean and worst gain) and a PNG.
"""
import datetime
from pathlib import Path

import numpy as np

from .media import cpu_model
from .report import checkpoint_parser, command_line, save_figure, write_results

RESULTS = Path(__file__).parent / "results"
BAND = (0.5, 0.99)
# On the training pictures' chosen crops, the blind/bank sparsity ratio was <= 1.08 where the blind
# kernel gained and 1.15 on the one where it lost 3.7 dB (a JPEG of the moon, trusted wrongly)
SPARSER = 1.10


def choose(trusted, confidence, sparser):
    """``sparser``: sparsity with the blind kernel over sparsity with the bank's (lower is sparser)."""
    return bool(trusted and BAND[0] <= confidence < BAND[1] and sparser <= SPARSER)


def measure(checkpoint, pictures, seed=None):
    import torch

    from restore.runtime.kernel_estimate import estimate_kernel, sparsity
    from restore.trainer.calibrate import full_strength
    from restore.trainer.checkpoint import load_checkpoint, model_from_checkpoint
    from restore.trainer.datasets import builtin_images
    from restore.trainer.holdout import CROP, field_crops
    from restore.trainer.inference import restore_array
    from restore.trainer.metrics import psnr
    from restore.trainer.models.deconv import SHARP

    model = model_from_checkpoint(load_checkpoint(checkpoint)).eval()
    images, crop = (builtin_images("holdout"), CROP) if pictures == "holdout" else (builtin_images("train"), 384)
    crops = field_crops(images, crop=crop, **({} if seed is None else {"seed": seed}))
    rows = []
    for crop in crops:
        blind = estimate_kernel(crop.lq)
        with torch.no_grad():
            posterior = model.estimate(torch.from_numpy(crop.lq.transpose(2, 0, 1).copy())[None])
            bank = model.deconv.estimator.kernel(posterior)[0].double().numpy()
        confidence = float(1 - posterior[0, SHARP])
        sparser = sparsity(crop.lq, blind.kernel) / sparsity(crop.lq, bank)
        base = psnr(crop.gt, crop.lq)
        shipped = psnr(crop.gt, restore_array(model, crop.lq)) - base
        with_blind = psnr(crop.gt, full_strength(model, crop.lq, blind.kernel)) - base
        chosen = choose(blind.trusted, confidence, sparser)
        rows.append({"name": crop.name, "kind": crop.blur["kind"], "confidence": round(confidence, 4),
                     "concentration": round(blind.concentration, 3), "agreement": round(blind.agreement, 3),
                     "sparser": round(sparser, 4),
                     "trusted": blind.trusted, "chosen": chosen, "gain_db": {
                         "as shipped": round(shipped, 3), "full strength, blind kernel": round(with_blind, 3),
                         "chosen": round(with_blind if chosen else shipped, 3)}})
        print(f"{crop.name:32s} c {confidence:.3f} trusted {blind.trusted!s:5s} sparser {sparser:.3f} shipped {shipped:+6.2f} "
              f"blind {with_blind:+6.2f} -> {'blind' if chosen else 'shipped'}", flush=True)
    return rows


def summary(rows):
    kinds = {}
    for row in rows:
        kinds.setdefault(row["kind"], []).append(row)
    return {kind: {"crops": len(group), "chosen": sum(r["chosen"] for r in group),
                   **{f"{stat} {name}": round(float(f([r["gain_db"][name] for r in group])), 3)
                      for name in group[0]["gain_db"] for stat, f in (("mean", np.mean), ("worst", np.min))}}
            for kind, group in kinds.items()}


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    kinds = list(report["kinds"])
    for i, (name, colour) in enumerate((("as shipped", "C0"), ("chosen", "C2"))):
        ax.bar(np.arange(len(kinds)) + (i - 0.5) * 0.38, [report["kinds"][k][f"mean {name}"] for k in kinds], 0.38,
               color=colour, alpha=0.7, label=f"{name} (mean)")
        for j, kind in enumerate(kinds):
            gains = [r["gain_db"][name] for r in report["crops"] if r["kind"] == kind]
            ax.scatter(np.full(len(gains), j + (i - 0.5) * 0.38), gains, color="k", s=8, zorder=3)
    ax.axhline(0, color="0.4", lw=0.8)
    ax.set_xticks(range(len(kinds)), [f"{k}\n({report['kinds'][k]['chosen']}/{report['kinds'][k]['crops']} chosen)" for k in kinds], fontsize=8)
    ax.set_ylabel("the model's PSNR gain over the input (dB)")
    draw = "" if report.get("seed") is None else f" (seed {report['seed']})"
    ax.set_title(f"{report['pictures']} pictures{draw}: as shipped, or the blind kernel with phase where the rule picks it\n"
                 f"(trusted, confidence in {report['band']}, sparsity ratio <= {report['sparser']})", fontsize=9)
    ax.legend(fontsize=8)
    fig.suptitle(f"{Path(report['checkpoint']).name}, {report['cpu']}, {report['date']}", fontsize=8)
    save_figure(fig, path)


def main(argv=None):
    parser = checkpoint_parser(__doc__)
    parser.add_argument("--pictures", choices=("holdout", "train"), default="holdout")
    parser.add_argument("--seed", type=int, default=None, help="another draw of the field protocol (default: its own seed)")
    args = parser.parse_args(argv)
    date = datetime.date.today().isoformat()
    draw = "" if args.seed is None else f"-seed{args.seed}"
    out = args.out or RESULTS / f"kernel-choice-{args.pictures}{draw}-{date}.json"
    rows = measure(args.checkpoint, args.pictures, args.seed)
    report = {"command": command_line("kernel_choice", argv), "checkpoint": args.checkpoint,
              "pictures": args.pictures, "seed": args.seed, "cpu": cpu_model(), "date": date, "band": list(BAND),
              "sparser": SPARSER,
              "kinds": summary(rows), "crops": rows}
    write_results(report, out, plot, report["kinds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
