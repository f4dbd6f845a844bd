"""The run directory of one training run:

  config.yaml          the resolved experiment config
  metrics.jsonl        one JSON object per log line (training losses, validation, events)
  curves.png           loss and validation-PSNR curves
  samples/step_N.png   before | after | target of a few validation crops
  checkpoints/latest.pt      resumable (weights, optimizers, EMA, RNG, step)
  checkpoints/best.pt, best.safetensors   the best validation weights (EMA when enabled)
  checkpoints/final.safetensors           the weights at the end of the run (EMA when enabled)

Only rank 0 writes (``enabled``); every file is written atomically.
"""
import json
from pathlib import Path

import numpy as np

from restore.runtime.atomic import atomic_path, atomic_write_text
from restore.runtime.errors import InputError, OutputError

from .checkpoint import save_checkpoint

# What a run directory holds (the list above): a new run goes only where nothing else is.
RUN_DIR_NAMES = {"config.yaml", "metrics.jsonl", "curves.png", "samples", "checkpoints", "best.json"}


def final_weights(run_dir):
    """``run_dir``'s checkpoints/final.safetensors; InputError when the run has none."""
    final = Path(run_dir) / "checkpoints" / "final.safetensors"
    if not final.is_file():
        raise InputError(final, "no final weights in this run", "let the run finish (Ctrl-C also saves them)")
    return final


def check_new_run_dir(path):
    """OutputError (exit 5) when ``path`` holds anything a run does not write (a user's files, or
    it is a file): a new run would mix its files with them."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(path, "is a file, not a run directory", "choose another --run-dir")
    foreign = sorted(p.name for p in path.iterdir() if p.name not in RUN_DIR_NAMES) if path.is_dir() else []
    if foreign:
        raise OutputError(path, f"holds files that are not a training run's ({', '.join(foreign[:3])})", "choose a new or empty --run-dir")


class RunDir:
    def __init__(self, path, enabled=True):
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)

    @property
    def metrics_path(self):
        return self.path / "metrics.jsonl"

    def _append(self, record):
        if not self.enabled:
            return
        # Appending one line is the one write that is not atomic; a torn last line is skipped
        # by read_metrics.
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record, default=_jsonable) + "\n")

    def log_metrics(self, record):
        self._append(record)

    def log_event(self, record):
        self._append(record)

    def read_metrics(self):
        if not self.metrics_path.is_file():
            return []
        records = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def progress(self, total, start):
        from tqdm import tqdm

        if not self.enabled:
            return None
        return tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True, mininterval=5)

    def save_best(self, model, step, result, cfg):
        if not self.enabled:
            return
        metrics = {"step": step, **{f"val_{k}": v for k, v in result.items() if isinstance(v, (int, float))}}
        for suffix in (".pt", ".safetensors"):
            save_checkpoint(self.path / "checkpoints" / f"best{suffix}", model, metrics=metrics,
                            extra={"experiment": cfg} if suffix == ".pt" else None)
        atomic_write_text(self.path / "best.json", json.dumps(metrics, indent=2))

    def save_final(self, model, step, result, cfg, wall_s):
        """The end-of-run weights. Shipping these (not the best-on-validation ones) keeps model
        selection off the holdout."""
        if not self.enabled:
            return
        metrics = {"step": step, "wall_s": wall_s, **{f"val_{k}": v for k, v in result.items() if isinstance(v, (int, float))}}
        save_checkpoint(self.path / "checkpoints" / "final.safetensors", model, metrics=metrics, extra={"experiment": cfg})

    def save_samples(self, triplets, step):
        """``triplets``: list of (lq, out, gt) HxWxC float arrays in [0,1] (lq is upscaled for SR)."""
        if not self.enabled or not triplets:
            return
        import cv2

        rows = []
        for lq, out, gt in triplets:
            row = np.concatenate([_fit(lq, gt.shape), out, gt], axis=1)
            rows.append(row)
        width = max(r.shape[1] for r in rows)
        grid = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)
        u8 = np.round(np.clip(grid, 0, 1) * 255).astype(np.uint8)
        if u8.shape[2] == 3:
            u8 = u8[..., ::-1]
        with atomic_path(self.path / "samples" / f"step_{step:07d}.png") as tmp:
            if not cv2.imwrite(str(tmp), u8):
                raise OSError(f"OpenCV could not write {tmp}")

    def plot(self):
        if not self.enabled:
            return
        plot_curves(self.read_metrics(), self.path / "curves.png")


def plot_curves(records, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if "loss" in r or "d_loss" in r]
    val = [r for r in records if "val" in r]
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("loss", "d_loss"):
        points = [(r["step"], r[key]) for r in train if key in r]
        if points:
            steps, values = zip(*points)
            line, = ax_loss.plot(steps, values, linewidth=0.6, alpha=0.35)
            # each logged value is one batch: a running mean shows the trend
            window = max(1, len(values) // 30)
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax_loss.plot(steps[window - 1:], smooth, color=line.get_color(), label=f"{key} (mean of {window} logs)")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss")
    if train:
        ax_loss.set_yscale("log")
        ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    if val:
        steps = [r["step"] for r in val]
        ax_psnr.plot(steps, [r["val"]["psnr"] for r in val], "o-", label="output")
        if "input_psnr" in val[0]["val"]:
            ax_psnr.plot(steps, [r["val"]["input_psnr"] for r in val], "--", color="gray", label="input (blurred)")
        ax_psnr.legend()
    ax_psnr.set_xlabel("step")
    ax_psnr.set_ylabel("validation PSNR (dB)")
    ax_psnr.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def _fit(img, shape):
    """Nearest-neighbour upscale of a low-resolution input so it lines up with the target."""
    if img.shape[:2] == shape[:2]:
        return img
    fy, fx = shape[0] // img.shape[0], shape[1] // img.shape[1]
    return np.repeat(np.repeat(img, fy, axis=0), fx, axis=1)[: shape[0], : shape[1]]


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)
