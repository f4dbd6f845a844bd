"""Calibrate a trained model's backoff on training pictures, never on the holdout:

    python -m restore.trainer.calibrate RUN_DIR [-o OUT_RUN_DIR]

fourier-unet with kernel bank 2 scales its whole correction by its blur confidence
c = 1 - P(no blur), mapped linearly from 0 at ``backoff[0]`` to 1 at ``backoff[1]``
(models/fourier_unet.py). The mapping has no weights, so it is chosen after training: on the
field protocol (``holdout.field_crops``) applied to the *training* pictures (256 px crops, seed
``SEED``), the mapping with the highest mean PSNR gain among those that leave no crop worse than
its input by more than 0.1 dB (else the one whose worst crop is best). The correction is linear in
the scale, so every mapping is scored from one restore per crop.

OUT_RUN_DIR (default RUN_DIR + "-calibrated") is a run folder ``restore.trainer.ship`` takes: the
same weights with ``backoff`` set, the run's curves and config, and calibration.json.
"""
import json
import shutil
from pathlib import Path

import click
import numpy as np
import torch

from restore.runtime.atomic import atomic_write_text
from restore.runtime.errors import ConfigError

from . import holdout
from .checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from .datasets import builtin_images
from .inference import restore_array
from .metrics import psnr
from .models import build_model
from .run_dir import final_weights

SEED = 20261202
CROP = 256
LOWS = np.round(np.arange(0.0, 0.96, 0.05), 2)
WIDTHS = (0.02, 0.05, 0.1, 0.2, 0.3)


def scale(confidence, low, high):
    return np.clip((confidence - low) / (high - low), 0.0, 1.0)


def full_strength(model, image, kernel=None):
    """``model``'s output for ``image`` (H, W, C) with its backoff left out: the correction at
    full strength, whatever the blur confidence (``kernel``: as ``restore_array``)."""
    backoff, model.backoff = model.backoff, None
    try:
        return restore_array(model, image, kernel=kernel)
    finally:
        model.backoff = backoff


def measure(model):
    """Per calibration crop: (gt, input, the correction at full strength, the blur confidence)."""
    from .models.deconv import SHARP

    rows = []
    for crop in holdout.field_crops(builtin_images("train"), crop=CROP, seed=SEED):
        with torch.no_grad():
            posterior = model.estimate(torch.from_numpy(crop.lq.transpose(2, 0, 1).copy())[None])[0]
        rows.append((crop.name, crop.gt, crop.lq, full_strength(model, crop.lq) - crop.lq, float(1 - posterior[SHARP])))
    return rows


def choose(rows):
    """(the chosen (low, high), the table of every candidate's mean and worst gain)."""
    table = []
    inputs = [psnr(gt, lq) for _, gt, lq, _, _ in rows]
    candidates = [(0.0, 1.0)] + [(float(low), float(round(low + w, 2))) for low in LOWS for w in WIDTHS if low + w <= 1.0]
    for low, high in candidates:
        gains = [psnr(gt, np.clip(lq + float(scale(c, low, high)) * d, 0, 1)) - before
                 for (_, gt, lq, d, c), before in zip(rows, inputs)]
        table.append({"backoff": [low, high], "mean_gain_db": round(float(np.mean(gains)), 3), "worst_gain_db": round(float(min(gains)), 3)})
    safe = [t for t in table if t["worst_gain_db"] >= holdout.FIELD_WORST]
    best = max(safe, key=lambda t: t["mean_gain_db"]) if safe else max(table, key=lambda t: t["worst_gain_db"])
    return tuple(best["backoff"]), table


def calibrate(run_dir, out_dir=None, log=print):
    run_dir = Path(run_dir)
    final = final_weights(run_dir)
    ckpt = load_checkpoint(final)
    model = model_from_checkpoint(ckpt).eval()
    if getattr(model, "backoff", None) is None:
        raise ConfigError(final, "this model does not back off (it needs fourier-unet with deconv: true and bank: 2)")
    rows = measure(model)
    backoff, table = choose(rows)
    chosen = next(t for t in table if tuple(t["backoff"]) == backoff)
    log(f"calibrated on {len(rows)} crops of the training pictures: backoff {list(backoff)}, "
        f"mean gain {chosen['mean_gain_db']:+.2f} dB, worst {chosen['worst_gain_db']:+.2f} dB")
    out_dir = Path(out_dir or f"{run_dir}-calibrated")
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    calibrated = build_model({"type": ckpt["arch"], **ckpt["config"], "backoff": list(backoff)})
    calibrated.load_state_dict(model.state_dict())
    save_checkpoint(out_dir / "checkpoints" / "final.safetensors", calibrated, metrics=ckpt.get("metrics"),
                    extra={"calibrated_from": str(final)})
    for name in ("curves.png", "config.yaml", "metrics.jsonl"):
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, out_dir / name)
    report = {"run": str(run_dir), "crops": len(rows), "seed": SEED, "crop": CROP, "chosen": chosen,
              "confidence": {name: round(c, 4) for name, _, _, _, c in rows}, "candidates": table}
    atomic_write_text(out_dir / "calibration.json", json.dumps(report, indent=2) + "\n")
    return report


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), default=None, help="The calibrated run folder (default RUN_DIR-calibrated).")
def main(run_dir, out_dir):
    """Choose RUN_DIR's backoff mapping on training pictures and write the calibrated run."""
    calibrate(run_dir, out_dir, log=lambda m: click.echo(m, err=True))


if __name__ == "__main__":
    from restore.runtime.cli import run_main

    run_main(main, "restore.trainer.calibrate")
