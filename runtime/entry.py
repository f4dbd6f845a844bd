"""The console scripts. Each imports its command inside the Ctrl-C guard, so an interrupt while
click and the command's modules load (the first ~100 ms) ends like one later on: one line,
exit 130, no traceback (``cli.run_main`` takes over once the command has loaded)."""
import importlib
import sys

from .errors import EXIT_INTERRUPTED


def _launch(module, prog_name):
    try:
        main = importlib.import_module(module).main
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog_name}: interrupted\n")
        sys.exit(EXIT_INTERRUPTED)
    main()


def restore():
    _launch("restore.runtime.cli", "restore")


def restore_export():
    _launch("restore.export.cli", "restore-export")
