"""Make a finished training run the shipped default model (runtime/models/default/):

    python -m restore.trainer.ship runs/fourier-unet-deblur

takes the run's final (EMA) weights as model.safetensors, exports them with the checks of
``restore-export --fp16`` and keeps model.onnx, model.fp16.onnx, estimator.onnx (the blur
estimate's own graph, for a model with one) and metadata.json beside them, so
``restore run`` and ``restore demo`` run the model on ONNX Runtime without torch. It also writes
the model card's figures: clock_motion.png (real blur, before | after), sharpness.json and the
run's loss and PSNR curves (training_curves.png), and keeps the run's resolved config
(training_config.yaml). The holdout figures are ``restore eval``'s
(see MODEL_CARD.md).

Everything is made in a temporary folder first; the files then replace the shipped ones one
rename each, so a failed export leaves the shipped model as it was.
"""
import json
import os
import shutil
import tempfile
from pathlib import Path

import click

from restore.runtime.artifact import DEFAULT_MODEL_DIR

from .checkpoint import model_from_checkpoint
from .datasets import real_blur_photo
from .run_dir import final_weights
from .sharpness import before_after

WEIGHTS = "model.safetensors"
EXPORTED = ("model.onnx", "model.fp16.onnx", "estimator.onnx", "metadata.json")
FILES = (WEIGHTS, *EXPORTED, "clock_motion.png", "sharpness.json", "training_curves.png", "training_config.yaml")


def ship(run_dir, dest=DEFAULT_MODEL_DIR, log=print):
    """Export ``run_dir``'s final weights into ``dest``; returns the export's metadata."""
    from restore.export.exporter import ExportOptions, export_checkpoint

    run_dir = Path(run_dir)
    final = final_weights(run_dir)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".ship.") as tmp:
        stage = Path(tmp)
        shutil.copyfile(final, stage / WEIGHTS)
        shutil.copyfile(run_dir / "curves.png", stage / "training_curves.png")
        shutil.copyfile(run_dir / "config.yaml", stage / "training_config.yaml")
        metadata = export_checkpoint(stage / WEIGHTS, stage / "export", ExportOptions(fp16=True, target="onnx"), log=log)
        for name in EXPORTED:
            if (stage / "export" / name).exists():  # estimator.onnx: only for a model with a blur estimate
                os.replace(stage / "export" / name, stage / name)
        _, sharpness = before_after(model_from_checkpoint(stage / WEIGHTS), real_blur_photo(), stage / "clock_motion.png")
        (stage / "sharpness.json").write_text(json.dumps({"clock_motion.png": sharpness}, indent=2) + "\n")
        for name in FILES:
            if (stage / name).exists():
                os.replace(stage / name, dest / name)
    log(f"shipped {final} to {dest}: sharpness of clock_motion.png {sharpness['before']:.5f} -> {sharpness['after']:.5f}")
    return metadata


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--dest", type=click.Path(path_type=Path), default=DEFAULT_MODEL_DIR, show_default=True)
def main(run_dir, dest):
    """Ship RUN_DIR's final weights as the default model (exported, with its real-blur figure)."""
    ship(run_dir, dest, log=lambda message: click.echo(message, err=True))


if __name__ == "__main__":
    from restore.runtime.cli import run_main

    run_main(main, "restore.trainer.ship")
