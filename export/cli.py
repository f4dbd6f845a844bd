"""``restore-export CHECKPOINT -o OUTDIR`` (also ``restore export``): checkpoint -> ONNX graphs,
TensorRT engine, metadata.json. Everything about the model comes from the checkpoint."""
import click

from restore.runtime.cli import run_main

from .onnx_export import DEFAULT_OPSET


@click.command("export", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False), help="Artifact directory to write.")
@click.option("--fp16", is_flag=True, help="Also write model.fp16.onnx (and build an fp16 engine).")
@click.option("--tile", type=int, default=None, help="Tile size H=W of the graphs [256, or the model's fixed size].")
@click.option("--batch", default="1..8", show_default=True, help="Batch range MIN..MAX of the graphs and engine profile.")
@click.option("--opset", type=int, default=DEFAULT_OPSET, show_default=True, help="ONNX opset.")
@click.option("--target", type=click.Choice(["onnx", "trt", "all"]), default="all", show_default=True,
              help="onnx: graphs only; trt: graphs and engine (fails without a builder); all: engine when a builder is installed.")
@click.option("--validate/--no-validate", default=True, show_default=True, help="Check the graphs against the torch model.")
def export(checkpoint, outdir, fp16, tile, batch, opset, target, validate):
    """Export CHECKPOINT to ONNX (portable and plugin graphs) and a TensorRT engine in OUTDIR."""
    from .exporter import ExportOptions, export_checkpoint, parse_batch

    options = ExportOptions(tile=tile, batch=parse_batch(batch), opset=opset, fp16=fp16, target=target, validate=validate)
    export_checkpoint(checkpoint, outdir, options, log=lambda message: click.echo(message, err=True))


def main():
    run_main(export, "restore-export")
