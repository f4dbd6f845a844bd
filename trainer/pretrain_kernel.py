"""Pre-train fourier-unet's blur-kernel estimator on its own, before the whole model trains with it.

    python -m restore.trainer.pretrain_kernel CONFIG --init WEIGHTS -o OUT.safetensors [--minutes 15]

The estimator (``models/deconv.py``) costs a small fraction of a U-Net step, so alone it sees
many more pairs per minute (batch 16 at a few steps per second on 2 CPU cores, against 6 pairs a
step inside the whole model). CONFIG gives the model (with ``deconv: true``) and the training
pairs (``data.train``: same pictures, blurs and noise); WEIGHTS (e.g. the previous stage's) fill
the rest of the model, whose front end joins through zero-initialised paths, so OUT computes
exactly what WEIGHTS did, with a trained estimator inside: the ``train.init`` of the next stage.
"""
import json
import time
from pathlib import Path

import click
import numpy as np
import torch
from tqdm import tqdm

from restore.runtime.errors import ConfigError

from .checkpoint import init_weights, load_checkpoint, save_checkpoint
from .config import load_config
from .datasets import build_dataset
from .models import build_model
from .models.deconv import seed_sharp_class
from .train import lr_factor

COSINE = {"lr": "cosine", "min_lr_ratio": 0.02}


def pretrain(cfg, init, out, *, minutes, batch=16, lr=1e-3, progress=True):
    model = build_model(cfg["model"])
    if getattr(model, "deconv", None) is None:
        raise ConfigError("model.deconv", "the model has no kernel estimator", "use a config with model.deconv: true")
    init_weights(model, init)
    estimator = model.deconv.estimator
    seeded = None
    if estimator.bank != 1 and load_checkpoint(init)["config"].get("bank", 1) == 1:  # grown: the identity is new
        sharp = build_dataset({**cfg["data"]["train"], "degradation": {"noise": {"sigma": [0.0, 0.01]}},
                               "rescale": None, "length": 64, "seed": int(cfg["seed"]) + 2000})
        seeded = seed_sharp_class(estimator.eval(), torch.stack([sharp[i]["lq"] for i in range(len(sharp))]))
    estimator.train()
    data = build_dataset({**cfg["data"]["train"], "kernel_size": model.deconv.estimator.kernel_size, "seed": int(cfg["seed"]) + 1000})
    loader = torch.utils.data.DataLoader(data, batch_size=batch, num_workers=1, persistent_workers=True)
    opt = torch.optim.AdamW(estimator.parameters(), lr=lr, weight_decay=1e-2)
    budget, start, step, recent = 60.0 * minutes, time.time(), 0, []
    bar = tqdm(desc="kernel estimator", unit="step", disable=not progress)
    for item in loader:
        fraction = (time.time() - start) / budget
        if fraction >= 1.0:
            break
        for group in opt.param_groups:  # cosine over the time budget, as restore train's
            group["lr"] = lr * lr_factor(step, 1, COSINE, fraction)
        estimator(item["lq"])
        loss = estimator.loss(item["kernel"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        recent = (recent + [float(loss.detach())])[-200:]
        bar.update(1)
        bar.set_postfix({"ce": f"{np.mean(recent):.3f}"})
    bar.close()
    summary = {"init": str(init), "identity_seeded_from_class": seeded, "steps": step, "batch": batch, "lr": lr, "minutes": round((time.time() - start) / 60, 1),
               "cross_entropy_last_200": round(float(np.mean(recent)), 4) if recent else None}
    save_checkpoint(out, model.eval(), extra={"pretrain_kernel": summary})
    return summary


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--init", "init", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Weights for the rest of the model (e.g. the previous stage's final.safetensors).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the model (.safetensors or .pt).")
@click.option("--minutes", default=15.0, show_default=True, help="Wall-clock budget.")
@click.option("--batch", default=16, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
def main(config, init, output, minutes, batch, lr):
    """Train the kernel estimator of CONFIG's model alone and write the whole model to OUTPUT."""
    torch.set_num_threads(int(load_config(config)["train"].get("threads") or torch.get_num_threads()))
    summary = pretrain(load_config(config), init, output, minutes=minutes, batch=batch, lr=lr)
    click.echo(json.dumps(summary, indent=2))


if __name__ == "__main__":
    from restore.runtime.cli import run_main

    run_main(main, "restore.trainer.pretrain_kernel")
