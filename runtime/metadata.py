"""The one schema check of an export's metadata.json: metadata is untrusted input.

``read_metadata(path)`` reads at most MAX_BYTES, refuses JSON nested deeper than MAX_DEPTH, and
checks every field the runtime uses against the table FIELDS (type, range, finite numbers,
bounded sizes) plus the rules between fields; every file the metadata names must resolve inside
the artifact folder (no absolute path, no '..', no symlink leading out). Fields the runtime does
not use (validation figures, exporter versions) are kept as they are. Anything wrong is one
ModelError naming the file and the field.
"""
import json
import math
from pathlib import Path, PurePosixPath

from .errors import ModelError
from .tiler import max_overlap

ARTIFACT_FORMAT = "restore-artifact/1"
MAX_BYTES = 1 << 20  # the shipped metadata.json is 3.4 kB
MAX_DEPTH = 32
MAX_TEXT = 256
HINT = "re-export the model with restore-export"


class Invalid(Exception):
    """A field's problem, turned into a ModelError naming the file by ``read_metadata``."""


# --- checks: each returns None or raises Invalid with what is wrong -----------------------------
def _shown(value):
    return "null" if value is None else f"{type(value).__name__} {repr(value)[:40]}"


def integer(low, high):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise Invalid(f"expected a whole number {low}..{high}, got {_shown(value)}")
    return check


def numbers(low, high, positive=False):
    """A list of finite numbers in [low, high] (> 0 when ``positive``), at most 64 long."""
    def check(value):
        if not isinstance(value, list) or not 1 <= len(value) <= 64:
            raise Invalid(f"expected a list of numbers, got {_shown(value)}")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item) or not low <= item <= high:
                raise Invalid(f"expected finite numbers {low}..{high}, got {_shown(item)}")
            if positive and item <= 0:
                raise Invalid(f"expected numbers above 0, got {_shown(item)}")
    return check


def text(value):
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise Invalid(f"expected a string of at most {MAX_TEXT} characters, got {_shown(value)}")


def obj(value):
    if not isinstance(value, dict):
        raise Invalid(f"expected an object, got {_shown(value)}")


def file_name(value):
    """A relative path inside the artifact: no '..', not absolute, no empty or odd parts."""
    text(value)
    parts = PurePosixPath(value).parts
    if not value or "\x00" in value or "\\" in value or value.startswith("/") or not parts or ".." in parts:
        raise Invalid(f"{value!r} is not a file name inside the artifact folder")


def file_names(value):
    obj(value)
    if len(value) > 64:
        raise Invalid(f"{len(value)} entries, more than 64")
    for key, name in value.items():
        try:
            if name is not None:
                file_name(name)
        except Invalid as e:
            raise Invalid(f"{key}: {e}") from None


# field path -> (check, null allowed). A missing field takes the runtime's default.
FIELDS = {
    ("model",): (obj, False),
    ("model", "arch"): (text, True),
    ("model", "checkpoint"): (file_name, True),
    ("io",): (obj, False),
    ("io", "in_channels"): (integer(1, 64), False),
    ("io", "out_channels"): (integer(1, 64), False),
    ("io", "scale"): (integer(1, 16), False),
    ("io", "size_multiple"): (integer(1, 4096), False),
    ("io", "fixed_size"): (integer(1, 16384), True),
    ("io", "value_range"): (numbers(-1e6, 1e6), True),
    ("io", "normalisation"): (obj, True),
    ("io", "normalisation", "mean"): (numbers(-1e6, 1e6), True),
    ("io", "normalisation", "std"): (numbers(1e-6, 1e6, positive=True), True),
    ("io", "layout"): (text, True),
    ("io", "color"): (text, True),
    ("io", "input"): (text, True),
    ("io", "output"): (text, True),
    ("tiling",): (obj, False),
    ("tiling", "tile"): (integer(1, 8192), False),
    ("tiling", "overlap"): (integer(0, 4096), False),
    ("shapes",): (obj, False),
    ("shapes", "tile"): (integer(1, 16384), True),
    ("shapes", "batch"): (obj, False),
    ("shapes", "batch", "min"): (integer(1, 1024), False),
    ("shapes", "batch", "opt"): (integer(1, 1024), False),
    ("shapes", "batch", "max"): (integer(1, 1024), False),
    ("files",): (file_names, False),
    ("plugin",): (obj, True),
    ("plugin", "name"): (text, True),
    ("plugin", "version"): (text, True),
    ("plugin", "namespace"): (text, True),
    ("plugin", "count"): (integer(0, 100000), True),
    ("estimate",): (obj, True),
    ("estimate", "tiles"): (integer(1, 1024), False),
    ("estimate", "classes"): (integer(1, 1 << 20), False),
}


def _lookup(document, path):
    """(present, value) of a field; absent when a section above it is absent or null."""
    node = document
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _cross_checks(doc):
    """Rules between fields, after each field passed its own check."""
    _, io = _lookup(doc, ("io",))
    io = io or {}
    channels = io.get("in_channels")
    norm = io.get("normalisation") or {}
    for key in ("mean", "std"):
        if norm.get(key) is not None and channels is not None and len(norm[key]) != channels:
            raise Invalid(f"io.normalisation.{key}: {len(norm[key])} values for {channels} input channels")
    tiling = doc.get("tiling") or {}
    tile, overlap = tiling.get("tile"), tiling.get("overlap")
    if tile is not None and overlap is not None and overlap > max_overlap(tile):
        raise Invalid(f"tiling.overlap: {overlap} is more than half the tile ({tile})")
    batch = (doc.get("shapes") or {}).get("batch") or {}
    low, opt, high = batch.get("min", 1), batch.get("opt", batch.get("min", 1)), batch.get("max", 1024)
    if not low <= opt <= high:
        raise Invalid(f"shapes.batch: needs min <= opt <= max, got {low}, {opt}, {high}")


def check_metadata(doc):
    """Raise Invalid (with the field's dotted name) unless ``doc`` fits the schema."""
    if not isinstance(doc, dict):
        raise Invalid(f"top level: expected an object, got {_shown(doc)}")
    if doc.get("format") != ARTIFACT_FORMAT:
        raise Invalid(f"format: artifact format {_shown(doc.get('format'))} is not {ARTIFACT_FORMAT!r}")
    for path, (check, nullable) in FIELDS.items():
        present, value = _lookup(doc, path)
        if not present or (value is None and nullable):
            continue
        try:
            check(value)
        except Invalid as e:
            raise Invalid(f"{'.'.join(path)}: {e}") from None
    _cross_checks(doc)


def _depth(doc):
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def read_metadata(path):
    """The checked metadata document of ``path`` (a metadata.json), or ModelError."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise Invalid(f"the file is larger than {MAX_BYTES >> 10} KiB")
        try:
            doc = json.loads(data)
        except RecursionError:
            raise Invalid(f"JSON nested deeper than {MAX_DEPTH} levels") from None
        if _depth(doc) > MAX_DEPTH:
            raise Invalid(f"JSON nested deeper than {MAX_DEPTH} levels")
        check_metadata(doc)
    except OSError as e:
        raise ModelError(path, f"unreadable artifact metadata ({e.strerror})", HINT) from None
    except ValueError as e:  # json's errors (and UnicodeDecodeError) are ValueErrors
        raise ModelError(path, f"unreadable artifact metadata ({str(e)[:120]})", HINT) from None
    except Invalid as e:
        raise ModelError(path, f"invalid artifact metadata: {e}", HINT) from None
    return doc


def inside(directory, name, field):
    """``directory / name`` when it resolves (symlinks followed) inside ``directory``, else
    ModelError: an artifact's metadata can only point at its own files."""
    directory = Path(directory)
    target = directory / name
    try:
        target.resolve().relative_to(directory.resolve())
    except ValueError:
        raise ModelError(target, f"{field} leads outside the artifact folder {directory}", HINT) from None
    except (OSError, RuntimeError) as e:  # a symlink loop
        raise ModelError(target, f"{field} cannot be resolved ({e})", HINT) from None
    return target
