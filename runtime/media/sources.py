"""Where video comes from and goes to: files, ``-`` (stdin/stdout), URLs and capture devices.

A URL (http, https, rtsp, rtmp, udp, rtp, srt, tcp) or ``/dev/videoN`` is handed to FFmpeg as
the user wrote it; only local files are paths. Live sources (udp, rtp, rtsp, srt, capture
devices) do not wait for a slow reader, so they run in live mode (see decode.py). Raw frames on
stdin (``--raw WIDTHxHEIGHT[:PIXFMT[:FPS]]``) are read by FFmpeg's rawvideo demuxer.
"""
import dataclasses
import os
import re
import select
import sys
import threading
from fractions import Fraction
from pathlib import Path

from ..errors import ConfigError, InputError

STDIO = "-"
URL_SCHEMES = {"http", "https", "rtsp", "rtsps", "rtmp", "rtmps", "udp", "rtp", "srt", "tcp"}
LIVE_SCHEMES = {"udp", "rtp", "rtsp", "rtsps", "srt"}
INPUT_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".m2ts", ".mts", ".mpg", ".mpeg", ".wmv", ".flv",
                  ".3gp", ".ogv", ".mxf", ".y4m", ".vob"}
# output suffix -> FFmpeg muxer
OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi", ".ts": "mpegts"}
STDOUT_FORMAT = "matroska"  # takes every codec and audio/subtitle kind; streamable without seeking
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_RAW = re.compile(r"^(\d+)x(\d+)(?::([^:]*))?(?::([^:]*))?$")


@dataclasses.dataclass(frozen=True)
class RawFormat:
    """Headerless frames on stdin: their size, FFmpeg pixel format and frame rate."""
    width: int
    height: int
    pix_fmt: str = "rgb24"
    fps: Fraction = Fraction(25)

    def options(self):
        """The rawvideo demuxer's options."""
        return {"video_size": f"{self.width}x{self.height}", "pixel_format": self.pix_fmt,
                "framerate": f"{self.fps.numerator}/{self.fps.denominator}"}


def parse_raw(text):
    """RawFormat from ``WIDTHxHEIGHT[:PIXFMT[:FPS]]``; ConfigError (exit 7) naming what is wrong."""
    import av

    option = f"--raw {text}"
    match = _RAW.match(text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise ConfigError(option, "not a frame size", "give WIDTHxHEIGHT[:PIXFMT[:FPS]], e.g. 640x480:rgb24:25")
    width, height, pix_fmt, fps = int(match.group(1)), int(match.group(2)), match.group(3) or "rgb24", match.group(4) or "25"
    try:
        av.VideoFormat(pix_fmt)
    except ValueError:
        raise ConfigError(option, f"unknown pixel format {pix_fmt!r}", "give an FFmpeg pixel format, e.g. rgb24, yuv420p, gray") from None
    try:
        rate = Fraction(fps).limit_denominator(1001)  # "25", "29.97" or "30000/1001"; nan and inf are refused
    except (ValueError, ZeroDivisionError):
        rate = None
    if rate is None or not 0 < rate <= 1000:
        raise ConfigError(option, f"{fps!r} is not a frame rate", "give a number above 0 and at most 1000, or a ratio such as 30000/1001")
    return RawFormat(width, height, pix_fmt, rate)


def scheme(src):
    match = _SCHEME.match(str(src))
    return match.group(1).lower() if match else None


def is_device(src):
    return str(src).startswith("/dev/video")


def is_stream(src):
    """``-``, a URL FFmpeg opens, or a capture device: not a file the runtime lists or checks."""
    return str(src) == STDIO or scheme(src) in URL_SCHEMES or is_device(src)


def is_live(src):
    return scheme(src) in LIVE_SCHEMES or is_device(src)


def is_video(path):
    return is_stream(path) or Path(path).suffix.lower() in INPUT_SUFFIXES


def display_name(src):
    """A short name for progress bars and messages."""
    if str(src) == STDIO:
        return "stdin"
    return str(src) if is_stream(src) else Path(src).name


def output_format(dst):
    """The FFmpeg muxer for an output path (``-``: stdout), or None when the suffix is not one."""
    return STDOUT_FORMAT if str(dst) == STDIO else OUTPUT_FORMATS.get(Path(dst).suffix.lower())


_stop_signals = 0  # SIGINT/SIGTERM received (``stop_signal``)


def stop_signal(signum, frame):
    """``restore run``'s SIGINT and SIGTERM handler: a KeyboardInterrupt, counted. A signal that
    ends an FFmpeg call on the main thread (PyAV's interrupt callback) surfaces only as FFmpeg's
    "Immediate exit requested", the same error as a read timeout; the count tells them apart."""
    global _stop_signals
    _stop_signals += 1
    raise KeyboardInterrupt


def open_source(src, live_timeout=5.0, raw=None):
    """An opened PyAV input container for ``src`` (``raw``: a RawFormat, for raw frames on stdin);
    InputError (one line) when FFmpeg cannot."""
    import av

    src_text = str(src)
    if not is_stream(src):
        path = Path(src)
        if not path.is_file():
            raise InputError(path, "no such file", "check the path")
        if path.stat().st_size == 0:
            raise InputError(path, "empty file (0 bytes)", "re-create or remove it")
    if src_text == STDIO and sys.stdin is None:  # started with stdin closed (a shell's <&-)
        raise InputError(display_name(src), "standard input is closed", "pipe a video in, or give a file")
    signals = _stop_signals
    try:
        if src_text == STDIO and raw is not None:
            return av.open(_STDIN, "r", format="rawvideo", options=raw.options())
        if src_text == STDIO:
            return av.open(_STDIN, "r")
        if is_device(src):
            return av.open(src_text, "r", format="v4l2")
        if is_stream(src):  # a network source that stops sending ends the run instead of hanging it
            return av.open(src_text, "r", timeout=(max(live_timeout, 10.0), live_timeout))
        return av.open(src_text, "r")
    except av.FFmpegError as e:
        raise_pending_interrupt()
        if _stop_signals != signals:
            raise KeyboardInterrupt from None
        raise InputError(display_name(src) if is_stream(src) else src, f"cannot open this video ({_reason(e)})",
                         "check the file, URL or device") from None


def _reason(error):
    return getattr(error, "strerror", None) or str(error)


class _InterruptibleStdin:
    """stdin as FFmpeg reads it, in short waits. A blocking read could outlast a Ctrl-C: the signal
    may land on another thread, and PyAV swallows an exception raised in its read callback. So the
    read waits 0.2 s at a time (Python handles the signal in between), a Ctrl-C ends the input and
    is kept for ``raise_pending_interrupt``, and ``stop`` ends the wait of the decode thread."""

    interrupt = None

    def __init__(self):
        self.stop = threading.Event()

    def read(self, size=-1):
        fd = sys.stdin.fileno()
        try:
            while not select.select([fd], [], [], 0.2)[0]:
                if self.stop.is_set() or self.interrupt is not None:  # FFmpeg reads on after an end
                    return b""
            return os.read(fd, size if size > 0 else 1 << 16)
        except KeyboardInterrupt as e:
            self.interrupt = e
            return b""


_STDIN = _InterruptibleStdin()


def raise_pending_interrupt():
    """Raise the Ctrl-C that arrived while FFmpeg was reading stdin, if one did."""
    interrupt, _STDIN.interrupt = _STDIN.interrupt, None
    if interrupt is not None:
        raise interrupt


def stop_reading_stdin():
    """End any wait for stdin (the reader is closing)."""
    _STDIN.stop.set()

