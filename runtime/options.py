"""Click parameter types shared by every command: numbers, devices and paths are checked when the
command line is parsed, before any work, and a bad value is one RestoreError line (ConfigError,
exit 7, for an option; the path's own error class for a path) instead of click's usage text or a
traceback later on."""
import math
import os
import re
from pathlib import Path

import click

from .errors import ConfigError

PATH_MAX = 4096  # Linux's limits on a path and on one name in it, in bytes
NAME_MAX = 255


def _shorten(text, keep=40):
    return text if len(text) <= 2 * keep + 3 else f"{text[:keep]}...{text[-keep:]}"


def _option(param):
    return (param.opts[0] if param.opts else param.name) if param is not None else "value"


class Number(click.ParamType):
    """A whole (``kind`` int) or finite real (float) number within [low, high]."""

    def __init__(self, kind, low, high, unit=""):
        self.kind, self.low, self.high, self.unit = kind, low, high, unit
        self.name = "integer" if kind is int else "number"

    def convert(self, value, param, ctx):
        word = "a whole number" if self.kind is int else "a finite number"
        subject = f"{_option(param)} {_shorten(str(value))}"
        hint = f"give {word} from {self.low:g} to {self.high:g}{self.unit}"
        try:
            number = self.kind(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError, OverflowError):
            number = None
        if number is None or (self.kind is float and not math.isfinite(number)):
            raise ConfigError(subject, f"not {word}", hint)
        if not self.low <= number <= self.high:
            raise ConfigError(subject, f"out of range {self.low:g}..{self.high:g}", hint)
        return number


TILE = Number(int, 1, 16384, " pixels")
OVERLAP = Number(int, 0, 8192, " pixels")
BATCH = Number(int, 1, 1024, " tiles")
OPSET = Number(int, 1, 100)


class Device(click.ParamType):
    """cpu, cuda or cuda:N."""

    name = "device"

    def convert(self, value, param, ctx):
        return check_device(value, f"{_option(param)} {_shorten(str(value))}")


def check_device(value, subject):
    """``value`` when it is cpu, cuda or cuda:N, else a ConfigError naming ``subject``."""
    if isinstance(value, str) and re.fullmatch(r"cpu|cuda(:\d{1,3})?", value):
        return value
    raise ConfigError(subject, "not a device", "use cpu, cuda or cuda:N (N the GPU's index)")


DEVICE = Device()


class UserPath(click.ParamType):
    """A path within the system's limits (PATH_MAX bytes, NAME_MAX bytes per name), as a Path, or
    ``error`` (the path's error class: InputError, OutputError, ModelError) naming it. ``keep``:
    words passed through as they are (e.g. "default" for --model). ``text``: the text as given
    (a trailing / means a folder), and streams (``-``, URLs, devices) pass unchecked: FFmpeg's."""

    name = "path"

    def __init__(self, error, keep=(), text=False):
        self.error, self.keep, self.text = error, keep, text

    def convert(self, value, param, ctx):
        if value in self.keep or isinstance(value, Path) and str(value) in self.keep:
            return value
        if self.text:
            from .media.sources import is_stream

            if is_stream(value):
                return value
        data = os.fsencode(value)
        longest = max(data.split(b"/"), key=len)
        if len(data) >= PATH_MAX:
            raise self.error(_shorten(str(value)), f"the path is {len(data)} bytes long, longer than the system allows ({PATH_MAX - 1})",
                             "use a shorter path, e.g. from a folder nearer to it")
        if len(longest) > NAME_MAX:
            raise self.error(_shorten(str(value)), f"a name in this path is {len(longest)} bytes long, longer than a file name may be ({NAME_MAX})",
                             "use shorter names")
        return value if self.text else Path(value)
