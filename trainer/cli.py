"""``restore train`` and ``restore eval`` (registered lazily in restore.runtime.cli)."""
import os
import sys
from pathlib import Path

import click

from restore.runtime.errors import ConfigError, InputError, OutputError
from restore.runtime.options import UserPath
from restore.runtime.outputs import finite_json, reusable_folder


@click.command("train")
@click.argument("config", type=UserPath(InputError))
@click.argument("overrides", nargs=-1)
@click.option("--run-dir", type=UserPath(OutputError), default=None,
              help="Run directory (default: runs/<config name>).")
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir from its latest checkpoint.")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs still go to metrics.jsonl).")
def train(config, overrides, run_dir, resume, no_progress):
    """Train a generator from a YAML CONFIG, with dotted OVERRIDES such as train.steps=100
    model.widths=[16,32]. Also runs under torchrun (DistributedDataParallel)."""
    # OpenMP threads that spin while waiting made a step 5x slower on a shared, busy CPU; this
    # must be set before torch (libgomp) loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from .config import load_config
    from .train import summary_json, train as run_training

    cfg = load_config(config, overrides)
    run_dir = run_dir or Path("runs") / cfg["name"]
    if resume:
        # A resumed run keeps its own config; overrides on the command line still apply on top.
        saved = Path(run_dir) / "config.yaml"
        if saved.is_file():
            cfg = load_config(saved, overrides)
    summary = run_training(cfg, run_dir, resume=resume, progress=not no_progress)
    if summary is not None:
        click.echo(summary_json(summary))


@click.command("eval")
@click.argument("checkpoint", type=UserPath(InputError))
@click.option("--data", default="builtin-holdout", show_default=True, type=UserPath(InputError, keep=("builtin-holdout", "builtin-field")),
              help="builtin-holdout, builtin-field (blurs like users' pictures: trainer/holdout.py), or a folder with "
                   "blur/ and sharp/ images of identical names.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("-o", "--out", type=UserPath(OutputError), default=None,
              help="Folder for report.json and the comparison grid PNG.")
@click.option("--no-baselines", is_flag=True, help="Skip the classical deconvolution baselines.")
def evaluate(checkpoint, data, as_json, out, no_baselines):
    """PSNR/SSIM of a CHECKPOINT's output and its input, and of classical baselines (unsharp mask,
    Wiener and Richardson-Lucy with the true kernel and blind), per image and averaged."""
    from .evaluate import evaluate_checkpoint, format_report

    if str(data) not in ("builtin-holdout", "builtin-field") and not Path(data).is_dir():
        raise ConfigError(f"--data {data}", "not builtin-holdout, builtin-field or a folder",
                          "give builtin-holdout, builtin-field or a folder with blur/ and sharp/")
    if out is not None:
        reusable_folder(out, "report.json", {"checkpoint", "arch", "mean"})
    report = evaluate_checkpoint(checkpoint, data, out_dir=out, baselines=not no_baselines, progress=not as_json)
    if as_json:
        click.echo(finite_json(report, indent=2))
    else:
        click.echo(format_report(report))
    sys.stdout.flush()
