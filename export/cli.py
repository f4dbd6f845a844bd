"""``restore-export CHECKPOINT -o OUTDIR`` (also ``restore export``): checkpoint -> ONNX graphs,
TensorRT engine, metadata.json. Everything about the model comes from the checkpoint."""
import os
from pathlib import Path

import click

from restore.runtime.cli import run_main
from restore.runtime.errors import InputError, OutputError
from restore.runtime.options import OPSET, TILE, UserPath


@click.command("export", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=UserPath(InputError))
@click.option("-o", "--output", "outdir", required=True, type=UserPath(OutputError), help="Artifact directory to write.")
@click.option("--fp16", is_flag=True, help="Also write model.fp16.onnx (and build an fp16 engine).")
@click.option("--tile", type=TILE, default=None, help="Tile size H=W of the graphs [256, or the model's fixed size].")
@click.option("--batch", default="1..8", show_default=True, help="Batch range MIN..MAX of the graphs and engine profile.")
@click.option("--opset", type=OPSET, default=None, help="ONNX opset (default: the exporter's, see export/README.md).")
@click.option("--target", type=click.Choice(["onnx", "trt", "all"]), default="all", show_default=True,
              help="onnx: graphs only; trt: graphs and engine (fails without a builder); all: engine when a builder is installed.")
@click.option("--validate/--no-validate", default=True, show_default=True, help="Check the graphs against the torch model.")
def export(checkpoint, outdir, fp16, tile, batch, opset, target, validate):
    """Export CHECKPOINT to ONNX (portable and plugin graphs) and a TensorRT engine in OUTDIR."""
    from .exporter import ExportOptions, export_checkpoint, parse_batch
    from .onnx_export import DEFAULT_OPSET

    options = ExportOptions(tile=tile, batch=parse_batch(batch), opset=opset or DEFAULT_OPSET, fp16=fp16, target=target, validate=validate)
    export_checkpoint(checkpoint, artifact_dir(outdir), options, log=lambda message: click.echo(message, err=True))


def artifact_dir(outdir):
    """``outdir`` as an absolute path that can be swapped in whole at the end: not the current
    folder or one above it (``-o .``), which would be renamed under the user's feet."""
    path = Path(os.path.abspath(outdir))
    here = Path.cwd()
    if path == here or path in here.parents:
        raise OutputError(outdir, "is the current folder or one above it; an export is written as a folder of its own",
                          "give a new folder, e.g. -o artifact")
    return path


def main():
    run_main(export, "restore-export")
