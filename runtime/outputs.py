"""Output safety: a run never destroys or overwrites what it did not create itself.

One policy for every command that writes (``restore run``/``demo``/``detect``/``eval``/``train``,
``restore-export``):

- an output that is one of the run's inputs (the same file by device and inode, so symlinks, hard
  links and case-insensitive names count) is refused unless the user passes ``--overwrite``, and
  then it is replaced atomically (runtime/atomic.py), never written in place;
- temporary files get unique names created with O_EXCL (``unique_temp``, in runtime/atomic.py), so they cannot be a
  user's file, and only those are removed or renamed;
- a partial result is kept under ``NAME.partial.EXT`` only if that name is free (``keep_partial``);
- one process at a time writes an output (``output_lock``: an flock on ``.NAME.restore-lock``
  beside it); a second one fails at once with exit 5 instead of mixing its frames in;
- a folder that receives a set of files (video frames) must be new or empty (``fresh_folder``).
"""
import contextlib
import fcntl
import hashlib
import os
from pathlib import Path

from .atomic import fitting_name, new_file_mode
from .errors import ConfigError, OutputError

LOCK_MARKER = b"restore output lock\n"


def same_file(a, b):
    """Whether paths ``a`` and ``b`` name one existing file or folder."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (or cannot be reached): not the same file
        return False


def refuse_input_as_output(output, inputs, overwrite=False):
    """ConfigError (exit 7) when ``output`` is one of ``inputs``, unless ``overwrite``."""
    if overwrite:
        return
    for src in inputs:
        if same_file(output, src):
            same = "" if Path(output) == Path(src) else f" ({src})"
            raise ConfigError(output, f"the output is an input of this run{same}",
                              "choose another output, or pass --overwrite to replace the input with its result")


def keep_partial(tmp, partial):
    """Give this run's temporary file ``tmp`` the name ``partial`` if nothing has it (a link, so an
    existing file is never replaced); else it keeps its own unique name. Returns where it is."""
    try:
        os.link(tmp, partial)
    except OSError:  # taken (or links unsupported): the unique temporary name stays
        return Path(tmp)
    os.unlink(tmp)
    return Path(partial)


def fresh_folder(folder):
    """OutputError (exit 5) when ``folder`` exists and holds anything: frames of two runs would mix."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        what = "is a file" if not folder.is_dir() else "already holds files (an earlier run's frames?)"
        raise OutputError(folder, f"{what}; frames are written only into a new or empty folder", "give another -o or empty the folder")


def reusable_folder(folder, report, keys, option="-o", writes=()):
    """OutputError (exit 5) unless ``folder`` is new, empty, or an earlier run's of the same command:
    its JSON ``report`` file holds ``keys``, or (a run stopped before its report) every entry in it
    matches a glob of ``writes``, the names the command writes. For commands that write fixed names
    (``restore demo``'s report.md, ``restore eval``'s grid.png): they never replace a user's file."""
    import fnmatch
    import json

    folder = Path(folder)
    if not folder.exists() or (folder.is_dir() and all(any(fnmatch.fnmatchcase(p.name, w) for w in writes) for p in folder.iterdir())):
        return
    try:
        earlier = json.loads((folder / report).read_text())
        if isinstance(earlier, dict) and set(keys) <= set(earlier):
            return
    except (OSError, ValueError):
        pass
    raise OutputError(folder, f"exists and is not an earlier run's output folder (no {report} of this command)", f"give a new folder with {option}")


@contextlib.contextmanager
def output_lock(path):
    """Hold an exclusive lock on writing ``path`` for the duration of the block.

    The lock is an flock on ``.NAME.restore-lock`` beside ``path`` (released by the kernel if the
    process dies, so a crash leaves no lock that blocks the next run); the file is removed on exit.
    A file of that name that is not such a lock is a user's and is left alone (OutputError)."""
    path = Path(path)
    lock = path.with_name(_lock_name(path.name))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(path, f"cannot create its folder: {e.strerror}", "choose a writable output path") from None
    fd = _acquire(path, lock)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)  # still holding it: a waiting process sees the inode go and retries
        os.close(fd)


def _lock_name(name):
    """``.NAME.restore-lock``; for a name too long for that, its cut stem and a digest of the whole
    name (every process must find the same lock for the same output)."""
    lock = f".{name}.restore-lock"
    if len(os.fsencode(lock)) <= 255:  # NAME_MAX
        return lock
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    return f".{fitting_name(name, f'..{digest}.restore-lock')}.{digest}.restore-lock"


def _acquire(path, lock):
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, new_file_mode())
            created = True
        except FileExistsError:
            try:
                fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
            except FileNotFoundError:  # removed by its holder in between: try again
                continue
            except OSError as e:
                raise OutputError(lock, f"exists and cannot be used as the lock of {path.name} ({e.strerror})", "remove it if it is not yours") from None
            created = False
        except OSError as e:
            raise OutputError(path, f"cannot write here: {e.strerror}", "choose a writable output path") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0)[len(LOCK_MARKER):].decode(errors="replace").strip()
            os.close(fd)
            raise OutputError(path, f"another restore process{' (' + holder + ')' if holder else ''} is writing this output",
                              "wait for it to finish or choose another output") from None
        if not created and not os.pread(fd, len(LOCK_MARKER), 0) == LOCK_MARKER:
            os.close(fd)
            raise OutputError(lock, f"exists and is not a restore lock file (it names the lock of {path.name})", "rename it or choose another output")
        try:
            same = os.fstat(fd).st_ino == os.stat(lock, follow_symlinks=False).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its previous holder removed it after we opened it: lock the new one
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, LOCK_MARKER + f"pid {os.getpid()}\n".encode(), 0)
        return fd


def finite_json(value, **kwargs):
    """``json.dumps`` that never writes NaN or Infinity (they are not JSON): non-finite numbers
    become null (e.g. the PSNR of two identical images)."""
    import json
    import math

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if hasattr(v, "item") and getattr(v, "ndim", None) == 0:  # a NumPy scalar
            return clean(v.item())
        return v

    return json.dumps(clean(value), allow_nan=False, **kwargs)
