"""The ``restore`` command. Subcommands load lazily, so ``restore run`` never imports torch and a
missing optional part is reported, not crashed on."""
import importlib
import os
import sys
import warnings

import click

from .errors import EXIT_INTERRUPTED, EXIT_NOT_AVAILABLE, RestoreError

# name -> (module, attribute, one-line help shown in `restore --help`)
COMMANDS = {
    "train": ("restore.trainer.cli", "train", "Train a generator from a config file."),
    "eval": ("restore.trainer.cli", "evaluate", "PSNR/SSIM of a checkpoint and of classical baselines."),
    "export": ("restore.export.cli", "export", "Export a checkpoint to ONNX and TensorRT engines."),
    "run": ("restore.runtime.run_cli", "run", "Restore images, folders and videos."),
    "detect": ("restore.runtime.detect_cli", "detect", "Blur map and blur type of an image."),
    "bench": ("restore.benchmarks.cli", "bench", "Latency and throughput of models and backends."),
    "demo": ("restore.runtime.run_cli", "demo", "Restore the bundled blurry samples with the shipped model."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr, short_help = COMMANDS[name]
        if ctx.resilient_parsing or "--help" in sys.argv[1:2]:
            return click.Command(name, short_help=short_help, help=short_help)
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            return _unavailable(name, short_help, e)


def _unavailable(name, short_help, error):
    missing = getattr(error, "name", None)
    if missing and missing.split(".")[0] in {"torch", "onnx", "onnxscript", "safetensors", "skimage", "yaml"}:
        hint = f"needs '{missing}': pip install 'restore[train]'"
    else:
        hint = f"not available in this install ({error})"

    @click.command(name, short_help=short_help, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args):
        click.echo(f"restore {name}: {hint}", err=True)
        sys.exit(EXIT_NOT_AVAILABLE)

    return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="restore")
def cli():
    """Train, export and run image-restoration generators (deblurring first)."""


def run_main(command, prog_name):
    """Run a click command with the project's error policy: user errors as one line and their exit
    code, Ctrl-C as exit 130, no tracebacks for either."""
    # OpenCV and FFmpeg print their own complaints about a corrupt file to stderr; the command
    # reports the failure itself in one line. Read by OpenCV at import and by FFmpeg at first use,
    # both later than this; a user's own setting wins (e.g. OPENCV_LOG_LEVEL=INFO to debug).
    os.environ.setdefault("OPENCV_LOG_LEVEL", "FATAL")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "0")  # AV_LOG_PANIC
    # Library warnings (NumPy's RuntimeWarning with its source line, matplotlib's UserWarning)
    # are noise to a user: what matters is reported in the command's own line. -W or
    # PYTHONWARNINGS still show them.
    if not sys.warnoptions:
        warnings.simplefilter("ignore")
    try:
        command.main(prog_name=prog_name, standalone_mode=False)
    except RestoreError as e:
        click.echo(f"{prog_name}: error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo(f"{prog_name}: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        click.echo(f"{prog_name}: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except Exception as e:
        if not _caused_by_interrupt(e):
            raise
        # Ctrl-C inside a library that wraps what it catches (torch.export's TorchExportError)
        click.echo(f"{prog_name}: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(0)


def _caused_by_interrupt(error):
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def main():
    run_main(cli, "restore")


if __name__ == "__main__":
    main()
