"""Image size from the file header, read before any pixel is decoded.

A 900-byte JPEG can claim 30000 x 30000 pixels; OpenCV would then allocate (and, for a truncated
stream, fill) 2.7 GB before anyone looks at the size. ``check_image_file`` reads only the header
of the formats the runtime accepts (PNG, JPEG, TIFF/BigTIFF, BMP, WebP) and refuses an image
above ``max_image_pixels()`` -- 2**28 pixels (16384 x 16384) unless the environment variable
``RESTORE_MAX_IMAGE_PIXELS`` says otherwise -- or a file that is none of those formats. It also
refuses a PNG whose chunks are cut short or fail their CRC and a JPEG with no end marker after
its scan: decoders fill such images up with grey or garbage instead of failing, and a TIFF whose
samples the runtime cannot take (float16, more than 4 channels), so it is not called corrupt.
"""
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import InputError

DEFAULT_MAX_IMAGE_PIXELS = 2**28  # 16384 x 16384: the largest size the runtime is measured on
MAX_PIXELS_ENV = "RESTORE_MAX_IMAGE_PIXELS"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_FORMATS = "PNG, JPEG, TIFF, BMP or WebP"
_TRUNCATED = "truncated"
_TIFF_SAMPLE_FORMATS = {1: "uint", 2: "int", 3: "float"}
# TIFF samples OpenCV decodes into what the runtime takes (read_image: uint8, uint16, float32)
_TIFF_SUPPORTED = {("uint", 8), ("uint", 16), ("float", 32), ("int", 8), ("int", 16), ("int", 32), ("float", 64)}


class Unsupported(str):
    """What ``read_image_size`` returns for a readable header of pixels the runtime cannot take."""


def max_image_pixels():
    value = os.environ.get(MAX_PIXELS_ENV)
    if not value:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise InputError(f"{MAX_PIXELS_ENV}={value}", "not a positive whole number of pixels", f"unset it to use {DEFAULT_MAX_IMAGE_PIXELS}")
    return limit


def not_a_file(path):
    """Why ``path`` is not a readable regular file, in words (a missing file, a dangling symbolic
    link, a named pipe, a folder...), or None when it is one."""
    path = Path(path)
    try:
        if path.is_file():
            return None
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return "no such file or folder"
    except OSError as e:
        return f"cannot look at it: {e.strerror}"
    if stat.S_ISLNK(mode):
        return f"a symbolic link to {os.readlink(path)!r}, which does not exist"
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a named pipe (FIFO)", stat.S_ISSOCK: "a socket",
             stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    kind = next((name for test, name in kinds.items() if test(mode)), "not a regular file")
    return f"{kind}, not a regular file"


def check_image_file(path):
    """(width, height) of the image file at ``path`` after checking it is a non-empty file of a
    known format within the pixel limit; InputError naming the file otherwise."""
    path = Path(path)
    problem = not_a_file(path)
    if problem:
        raise InputError(path, problem, "give a regular image file")
    try:
        if path.stat().st_size == 0:
            raise InputError(path, "empty file (0 bytes)", "re-create or remove it")
        with open(path, "rb") as f:
            size = read_image_size(f)
    except OSError as e:
        raise InputError(path, f"cannot read: {e.strerror}", "check the file's permissions") from None
    if size is None:
        raise InputError(path, f"not a readable {_FORMATS} image (corrupt, truncated or another format)", "check the file or remove it")
    if size is _TRUNCATED:
        raise InputError(path, "truncated or damaged image (the file ends early or fails its checksums)", "copy it again or remove it")
    if isinstance(size, Unsupported):
        raise InputError(path, f"unsupported {size}", "convert it to 8- or 16-bit integers or float32 with 1 to 4 channels")
    return check_pixel_count(path, *size, "split or downscale it")


def check_pixel_count(subject, width, height, remedy):
    """(width, height) of a picture or video frame from its header, or InputError: no pixels, or
    more than the limit (``RESTORE_MAX_IMAGE_PIXELS``); ``remedy`` says what the user can do."""
    if width < 1 or height < 1:
        raise InputError(subject, f"header says {width}x{height} pixels", "the file is corrupt; re-create or remove it")
    limit = max_image_pixels()
    if width * height > limit:
        raise InputError(subject, f"{width}x{height} is {_pixels(width * height)}, above the limit of {_pixels(limit)}",
                         f"{remedy}, or raise {MAX_PIXELS_ENV}")
    return width, height


def _pixels(count):
    """A pixel count in words that never round to 0 or make two counts look equal: 268 Mpixel,
    2.5 Mpixel, 1,600 pixels."""
    if count >= 10**7:
        return f"{count / 1e6:.0f} Mpixel"
    return f"{count / 1e6:.1f} Mpixel" if count >= 10**6 else f"{count:,} pixels"


def read_image_size(f):
    """(width, height) from an open binary file's header, or None if the format is not known or
    the header is broken."""
    head = f.read(32)
    try:
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            return _png(f, head)
        if head.startswith(b"\xff\xd8"):
            return _jpeg(f)
        if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return _tiff(f, head)
        if head.startswith(b"BM"):
            return _bmp(head)
        if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
            return _webp(head)
    except (struct.error, ValueError, OverflowError, IndexError):  # the header ends early or points past any file
        return None
    return None


def _png(f, head):
    if head[12:16] != b"IHDR":  # IHDR must be the first chunk
        return None
    size = struct.unpack(">II", head[16:24])
    return size if _png_chunks_intact(f) else _TRUNCATED


def _png_chunks_intact(f):
    """Whether every chunk up to IEND is complete and matches its CRC. The runtime decodes PNGs
    into a preallocated array, and OpenCV then hands back that array even when libpng stopped
    half-way: a cut or damaged file must be caught before decoding."""
    f.seek(8)
    while True:
        head = f.read(8)
        if len(head) < 8:
            return False
        length, kind = struct.unpack(">I4s", head)
        crc = zlib.crc32(kind)
        left = length
        while left:
            block = f.read(min(left, 1 << 20))
            if not block:
                return False
            crc = zlib.crc32(block, crc)
            left -= len(block)
        tail = f.read(4)
        if len(tail) < 4 or struct.unpack(">I", tail)[0] != crc & 0xFFFFFFFF:
            return False
        if kind == b"IEND":
            return True


def _jpeg(f):
    size, scan = _jpeg_frame(f)
    if size is not None and not _jpeg_has_end(f, scan):
        return _TRUNCATED
    return size


def _jpeg_has_end(f, scan):
    """Whether an end-of-image marker follows the first scan. libjpeg decodes a truncated file
    without complaint, filling the missing rows with grey; only the missing marker tells."""
    f.seek(scan)
    data = np.frombuffer(f.read(), np.uint8)
    at = np.flatnonzero(data[:-1] == 0xFF)
    return bool(np.any(data[at + 1] == 0xD9))


def _jpeg_frame(f):
    """((width, height), offset of the first scan) from the segments before it."""
    f.seek(2)
    size = None
    while True:
        marker = f.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None, None
        kind = marker[1]
        if kind == 0xFF:  # fill byte: the marker code follows
            f.seek(-1, os.SEEK_CUR)
            continue
        if kind in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            continue
        if kind == 0xD9:
            return None, None
        (length,) = struct.unpack(">H", f.read(2))
        if kind == 0xDA:
            return size, f.tell() + length - 2
        if length < 2:
            return None, None
        if kind in _JPEG_SOF:
            _, height, width = struct.unpack(">BHH", f.read(5))
            size = (width, height) if height else None  # height 0: set later by a DNL marker
            f.seek(length - 7, os.SEEK_CUR)
        else:
            f.seek(length - 2, os.SEEK_CUR)


def _tiff(f, head):
    found = _tiff_tags(f, head)
    if 256 not in found or 257 not in found:
        return None
    samples, bits = found.get(277, 1), found.get(258, 1)
    sample_format = _TIFF_SAMPLE_FORMATS.get(found.get(339, 1), "unknown")
    if samples > 4:
        return Unsupported(f"channels: {samples} samples per pixel (at most 4)")
    if bits > 1 and (sample_format, bits) not in _TIFF_SUPPORTED:
        return Unsupported(f"pixel type {sample_format}{bits} ({sample_format} samples of {bits} bits)")
    return found[256], found[257]


def tiff_layout(path):
    """The first page's (SamplesPerPixel, BitsPerSample), 1 for an absent tag, or None for a
    file that is not a readable TIFF."""
    with open(path, "rb") as f:
        head = f.read(32)
        if head[:4] not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return None
        try:
            found = _tiff_tags(f, head)
        except (struct.error, ValueError, OverflowError):
            return None
        return found.get(277, 1), found.get(258, 1)


def _tiff_tags(f, head):
    """{tag: first value} of the first page's ImageWidth, ImageLength, BitsPerSample,
    SamplesPerPixel and SampleFormat (SHORT, LONG or LONG8)."""
    endian = "<" if head[:2] == b"II" else ">"
    big = head[2:4] in (b"+\x00", b"\x00+")
    if big:
        (offset,) = struct.unpack(endian + "Q", head[8:16])
        count_fmt, entry_size, value_fmt = "Q", 20, "Q"
    else:
        (offset,) = struct.unpack(endian + "I", head[4:8])
        count_fmt, entry_size, value_fmt = "H", 12, "I"
    f.seek(offset)
    (count,) = struct.unpack(endian + count_fmt, f.read(struct.calcsize(count_fmt)))
    entries = f.read(entry_size * min(count, 4096))
    found = {}
    for i in range(0, len(entries) - entry_size + 1, entry_size):
        tag, kind = struct.unpack(endian + "HH", entries[i : i + 4])
        # the first value, held in the entry when it fits, else at its offset
        if tag in (256, 257, 258, 277, 339) and kind in (3, 4, 16):
            (n,) = struct.unpack(endian + count_fmt, entries[i + 4 : i + 4 + struct.calcsize(count_fmt)])
            fmt = {3: "H", 4: "I", 16: "Q"}[kind]
            value = entries[i + (12 if big else 8) : i + entry_size]  # after tag, type, count
            if n * struct.calcsize(fmt) > len(value):
                f.seek(struct.unpack(endian + value_fmt, value)[0])
                value = f.read(struct.calcsize(fmt))
            (found[tag],) = struct.unpack(endian + fmt, value[: struct.calcsize(fmt)])
    return found


def _bmp(head):
    (header_size,) = struct.unpack("<I", head[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return struct.unpack("<HH", head[18:22])
    width, height = struct.unpack("<ii", head[18:26])
    return (width, abs(height)) if width >= 0 else None  # negative height: rows stored top-down


def _webp(head):
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and head[20] == 0x2F:
        (bits,) = struct.unpack("<I", head[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None
