"""User-facing errors: each names the input, what is wrong and what to do, and has its own exit code.

The CLI prints ``restore: error: <message>`` and exits with ``exit_code``; no traceback is shown for
these. Anything else that escapes is a bug and keeps its traceback. A message is one line: control
characters in what it quotes (a file name, a hostile config key) are shown escaped.
"""
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(text):
    return None if text is None else _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(text))


class RestoreError(Exception):
    exit_code = 1

    def __init__(self, subject, problem, hint=None):
        self.subject, self.problem, self.hint = _one_line(subject), _one_line(problem), _one_line(hint)
        message = f"{self.subject}: {self.problem}"
        if hint:
            message += f" ({self.hint})"
        super().__init__(message)


class InputError(RestoreError):
    """An input file is missing, empty, truncated, corrupt or of an unsupported kind."""

    exit_code = 3


class ModelError(RestoreError):
    """A checkpoint, ONNX file or engine cannot be used (corrupt, other model, other TensorRT/GPU)."""

    exit_code = 4


class OutputError(RestoreError):
    """An output cannot be written (unwritable path, disk full)."""

    exit_code = 5


class BackendError(RestoreError):
    """The requested inference backend or builder is not installed or cannot start."""

    exit_code = 6


class ConfigError(RestoreError):
    """A configuration value or option combination is invalid (tile size, unknown model name...)."""

    exit_code = 7


class PartialFailure(RestoreError):
    """A run over several inputs finished, but some of them failed."""

    exit_code = 8


EXIT_NOT_AVAILABLE = 2  # same as click's usage errors
EXIT_INTERRUPTED = 130
