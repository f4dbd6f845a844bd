"""Atomic file output: write to a temporary sibling, fsync, then rename over the target.

An interrupted run leaves either the previous file or no file, never a half-written one that
looks complete. Temporary files carry a ``.partial`` marker so they are easy to recognise.
"""
import contextlib
import errno
import os
import tempfile
from pathlib import Path

from .errors import OutputError


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    ``suffix`` defaults to the target's own suffix, so writers that pick a format from the file
    name (OpenCV, matplotlib) see the right one.
    """
    path = Path(path)
    tmp = unique_temp(path, suffix)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise output_error(path, e) from None
    except BaseException:
        _remove(tmp)
        raise


def unique_temp(path, suffix=None):
    """A new, empty, hidden file beside ``path`` (``.STEM.XXXXXXXX.partialSUFFIX``), created with
    O_EXCL by this process, so it can never be a user's file; it has a normal file's mode.
    ``suffix`` defaults to ``path``'s own (encoders pick the format from it)."""
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{fit_stem(path.stem, f'..XXXXXXXX.partial{suffix}')}.", suffix=f".partial{suffix}", dir=path.parent)
        os.fchmod(fd, new_file_mode())  # mkstemp makes 0600; an output gets a normal file's mode
        os.close(fd)
    except OSError as e:
        problem = "a part of this path is a file, not a folder" if e.errno in (errno.EEXIST, errno.ENOTDIR) else f"cannot write here: {e.strerror}"
        raise OutputError(path, problem, "choose a writable output path") from None
    return Path(tmp)


NAME_MAX = 255  # bytes in one file name (Linux, macOS; most file systems)


def fit_stem(stem, rest):
    """``stem`` cut (whole characters) so that it and ``rest``, the other characters of a file
    name, fit NAME_MAX bytes: a legal output name must not fail for its helper files' names."""
    room = NAME_MAX - len(os.fsencode(rest))
    while len(os.fsencode(stem)) > room:
        stem = stem[:-1]
    return stem


def _process_umask():
    mask = os.umask(0o022)  # the only way to read it is to set it; done once, at import
    os.umask(mask)
    return mask


_UMASK = _process_umask()


def new_file_mode(directory=False):
    """The mode open()/mkdir() would give a new file or directory (0666/0777 minus the umask), for
    outputs made through mkstemp/mkdtemp, which use 0600/0700."""
    return (0o777 if directory else 0o666) & ~_UMASK


def output_error(path, error):
    """The OutputError for an OSError met while writing ``path``. EFBIG (the file size limit,
    ``ulimit -f``) is reported like a full disk: either way the file could not be finished."""
    if error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return OutputError(path, f"disk full or file size limit reached while writing ({error.strerror})", "free some space and run again")
    return OutputError(path, f"cannot write: {error.strerror}", "choose a writable output path")


def atomic_write_bytes(path, data):
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def _remove(tmp):
    with contextlib.suppress(OSError):
        os.unlink(tmp)
