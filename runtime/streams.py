"""Image I/O for the runtime (OpenCV; 8-bit TIFFs through Pillow), and which files are images or videos.

Pixels leave this module as RGB(A) or gray NumPy arrays (OpenCV's BGR is converted here), the
layout ``Restorer`` expects. Video is FFmpeg's: see runtime/media/.

Outputs are atomic (runtime/atomic.py); a PNG is streamed strip by strip (``PngStripWriter``).
"""
import contextlib
import dataclasses
import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

from .atomic import atomic_path, output_error
from .errors import InputError, OutputError
from .pixels import check_float_pixels
from . import image_meta
from .image_header import check_image_file, tiff_layout
from .media.mux import notice
from .media.sources import is_video

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}


def is_image(path):
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def list_media(folder):
    """Images and videos directly in ``folder``, sorted by name (hidden files skipped)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and (is_image(p) or is_video(p)))


# --- images -------------------------------------------------------------------------------------
def read_image(path):
    """RGB(A), gray or gray+alpha array in the file's bit depth (uint8, uint16, or float32 in
    [0, 1]), turned upright as its EXIF orientation says. See ``read_image_info``."""
    return read_image_info(path)[0]


def read_image_info(path):
    """(pixels, ImageInfo): the pixels as ``read_image`` gives them and what an output should
    carry over (runtime/image_meta.py). InputError for a file that is not one whole picture:
    damaged, several frames, non-finite or out-of-range float pixels."""
    path = Path(path)
    check_image_file(path)  # size from the header first: no allocation for a forged 30000x30000
    info = image_meta.read_info(path)
    tiff = tiff_layout(path)
    if tiff is not None and tiff[1] <= 8:
        image = _read_8bit_tiff(path)
    else:
        image = image_meta.upright(_read_with_opencv(path, tiff, info), info.orientation)
    return image, _fit_profile(path, info, image)


def _read_with_opencv(path, tiff, info):
    if tiff is not None and tiff[0] == 2:  # OpenCV decodes it as 8-bit gray: alpha and depth would be lost silently
        raise InputError(path, "gray+alpha TIFF, which this reader cannot decode whole", "save it as a gray+alpha PNG")
    if tiff is not None and info.orientation != 1:  # OpenCV's TIFF reader turns 2-4 itself and fails on 5-8
        raise InputError(path, f"{tiff[1]}-bit TIFF with an EXIF orientation ({info.orientation}), which this reader cannot turn upright reliably",
                         "save it upright (orientation 1), or as a 16-bit PNG")
    dst, gray_alpha = _png_buffer(path)
    with image_meta.captured_stderr() as messages:  # libjpeg reports damage only there
        image = cv2.imread(str(path), dst, cv2.IMREAD_UNCHANGED) if dst is not None else cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise InputError(path, "cannot decode this image (corrupt, truncated or not an image)", "check the file or remove it")
    image_meta.check_decoder_messages(path, messages)
    if image.dtype not in (np.uint8, np.uint16, np.float32):
        raise InputError(path, f"unsupported pixel type {image.dtype}", "convert it to 8- or 16-bit")
    if image.dtype == np.float32:
        check_float_pixels(image, path)
    if gray_alpha:  # OpenCV expands gray+alpha to BGRA: back to 2 channels, so LA stays LA
        image = np.ascontiguousarray(image[..., [0, 3]])
    return _swap_rb(image)


# Pillow modes of 8-bit TIFFs -> the mode they are restored in (the rest are refused)
_TIFF_MODES = {"L": "L", "LA": "LA", "La": "LA", "RGB": "RGB", "RGBA": "RGBA", "RGBa": "RGBA", "1": "L", "P": "RGB", "PA": "RGBA", "CMYK": "RGB"}


def _read_8bit_tiff(path):
    """An 8-bit TIFF, upright (RGB order), through Pillow: OpenCV reads these through libtiff's
    RGBA interface, which premultiplies an ordinary alpha (darker colours) and turns the picture
    by its orientation tag itself (and fails on the tags that transpose it). Pillow turns some
    TIFFs on loading (then drops the tag) and not others; ``exif_transpose`` turns what is left."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            mode = _TIFF_MODES.get(image.mode)
            if mode is None:
                raise InputError(path, f"unsupported TIFF pixel layout (Pillow mode {image.mode})", "convert it to 8- or 16-bit RGB or gray")
            if image.mode == "P" and "transparency" in image.info:
                mode = "RGBA"
            image = ImageOps.exif_transpose(image)
            return np.array(image if image.mode == mode else image.convert(mode))
    except (OSError, ValueError, SyntaxError):
        raise InputError(path, "cannot decode this image (corrupt, truncated or not an image)", "check the file or remove it") from None


def _fit_profile(path, info, image):
    """``info`` without its colour profile when that is for other colours than the output's (a
    CMYK or Lab profile on an RGB output is invalid); says so."""
    space = info.icc_profile[16:20] if info.icc_profile and len(info.icc_profile) >= 20 else None
    if space in (None, b"RGB ", b"GRAY"):
        return info
    notice(f"{path}: its colour profile is for {space.decode('latin-1').strip()} colours; the output is "
           f"{'gray' if image.ndim == 2 or image.shape[2] == 2 else 'RGB'}, written without it (colours converted without the profile)")
    return dataclasses.replace(info, icc_profile=None)


def _png_buffer(path):
    """(an empty array shaped like the PNG's decoded pixels, whether it is gray+alpha), or (None,
    False) for other files.

    OpenCV decodes into a given array in place; without one it holds the image twice while
    decoding (1.6 GB peak instead of 0.8 GB for 16384 x 16384 RGB). A wrong guess only costs
    that memory: OpenCV reallocates when the shape does not match."""
    with open(path, "rb") as f:
        head = f.read(29)
    if len(head) < 29 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None, False
    width, height, bits, color_type = struct.unpack(">IIBB", head[16:26])
    channels = {0: 1, 2: 3, 4: 4, 6: 4}.get(color_type)  # OpenCV reads gray+alpha as BGRA
    if channels is None or not width or not height or width * height > 2**30:
        return None, color_type == 4
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.empty(shape, np.uint16 if bits == 16 else np.uint8), color_type == 4


def write_restored_image(restorer, image, path, skip_tiles=None, on_tiles=None, info=None, quality=None):
    """Restore ``image`` straight into ``path`` with ``info`` (from ``read_image_info``) carried
    over. PNG output is streamed strip by strip (no full-size output array); other formats get
    one array, at x1 the input buffer itself."""
    path = Path(path)
    info = (info or image_meta.ImageInfo()).scaled(restorer.scale)
    shape = restorer.tiler.output_shape(image.shape)
    if path.suffix.lower() == ".png" and image.dtype in (np.uint8, np.uint16):
        writer = PngStripWriter(path, shape, image.dtype, info=info)
        try:
            restorer.restore(image, out=writer, skip_tiles=skip_tiles, on_tiles=on_tiles)
            return writer.close()
        except BaseException:  # an interrupt inside close() included
            writer.abort()
            raise
    out = image if restorer.scale == 1 else None  # safe in place, see Tiler.restore
    return write_image(path, restorer.restore(image, out=out, skip_tiles=skip_tiles, on_tiles=on_tiles), info, quality)


_PILLOW_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}


def write_image(path, image, info=None, quality=None):
    """Write an RGB(A)/gray(+alpha) array atomically, with ``info``'s profile, EXIF and DPI where
    the format holds them. ``quality`` (1..100) for JPEG and WebP. ``image`` may be converted to
    BGR in place (it is the caller's output buffer; copying a 16k x 16k image would double the
    memory)."""
    path = Path(path)
    info = info or image_meta.ImageInfo()
    suffix = path.suffix.lower()
    image = _fit_depth(image, path)
    if suffix == ".png" and image.dtype in (np.uint8, np.uint16):
        writer = PngStripWriter(path, image.shape, image.dtype, info=info)
        try:
            writer[0 : image.shape[0]] = image
            return writer.close()
        except BaseException:
            writer.abort()
            raise
    fmt = _PILLOW_FORMATS.get(suffix) if image.dtype == np.uint8 else None
    if fmt == "JPEG" and image.ndim == 3 and image.shape[2] in (2, 4):  # said, never dropped silently
        notice(f"{path}: JPEG holds no alpha: the alpha channel is dropped (write .png, .webp or .tif to keep it)")
    dropped = image_meta.dropped(info, image_meta.KEPT[fmt or "OpenCV"])
    if dropped:  # said, never dropped silently
        kind = f"{image.dtype.itemsize * 8}-bit TIFF" if fmt is None and suffix in (".tif", ".tiff") else suffix[1:].upper()
        notice(f"{path}: a {kind} cannot hold the input's {'; '.join(dropped)}: "
               f"{'it is' if len(dropped) == 1 else 'they are'} dropped (write .png to keep {'it' if len(dropped) == 1 else 'them'})")
    if fmt is not None:
        buffer = io.BytesIO()  # encoded in memory, written from Python: a full disk is a real OSError
        try:
            image_meta.save_with_pillow(image, buffer, fmt, info, quality)
        except (ValueError, KeyError, OSError) as e:
            raise OutputError(path, f"cannot write {image.dtype} {image.shape} as {path.suffix} ({e})", "try .png or .tif") from None
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(buffer.getbuffer())
        return path
    if image.ndim == 3 and image.shape[2] == 2:  # OpenCV has no gray+alpha: write it as RGBA
        image = np.ascontiguousarray(image[..., [0, 0, 0, 1]])
    image = _swap_rb(image)
    params = []
    if info.dpi and suffix in (".tif", ".tiff"):
        params = [cv2.IMWRITE_TIFF_RESUNIT, 2, cv2.IMWRITE_TIFF_XDPI, round(info.dpi[0]), cv2.IMWRITE_TIFF_YDPI, round(info.dpi[1])]
    with atomic_path(path) as tmp:
        try:
            ok = cv2.imwrite(str(tmp), image, params)
        except cv2.error as e:
            raise OutputError(path, f"OpenCV cannot write this image ({str(e).strip().splitlines()[-1]})", "try .png or .tif") from None
        if not ok:
            # imwrite only says False. Encoding in memory and writing from Python tells a full
            # disk (a real OSError, reported by atomic_path) from a format OpenCV cannot write.
            ok, data = cv2.imencode(path.suffix, image, params)
            if ok:
                Path(tmp).write_bytes(data)
        if not ok:
            raise OutputError(path, f"OpenCV cannot write {image.dtype} {image.shape} as {path.suffix}", "try .png or .tif")
    return path


_EIGHT_BIT_SUFFIXES = {".jpg", ".jpeg", ".bmp", ".webp"}


def _fit_depth(image, path):
    """``image`` in a depth the format of ``path`` holds, scaled. OpenCV would saturate instead:
    16-bit into a JPEG comes out almost white, float [0, 1] into a PNG black (every value 0 or 1).
    Going down to 8 bits is said (once, on stderr): the user's 16-bit or float picture loses depth."""
    suffix = path.suffix.lower()
    if image.dtype == np.uint8 or (image.dtype == np.uint16 and suffix not in _EIGHT_BIT_SUFFIXES) or suffix in (".tif", ".tiff"):
        return image
    if suffix in _EIGHT_BIT_SUFFIXES:
        depth = "16-bit" if image.dtype == np.uint16 else "float"
        notice(f"{path}: {suffix[1:].upper()} holds 8 bits per channel: the {depth} picture is written with 8 "
               "(write .png or .tif to keep its depth)")
    if image.dtype == np.uint16:
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    top, dtype = (65535, np.uint16) if suffix == ".png" else (255, np.uint8)
    return np.rint(np.clip(image, 0, 1) * top).astype(dtype)


class PngStripWriter:
    """Write a PNG row strip by row strip (``writer[r0:r1] = rows``, in order), so a huge output
    is never held whole: rows are filtered and deflated as they arrive. Atomic like
    ``atomic_path``: written under a temporary name, renamed by ``close()``, removed by ``abort()``.

    ``shape`` (H, W[, C]) with C = 1..4 (gray, gray+alpha, RGB, RGBA), dtype uint8 or uint16,
    RGB(A) order (PNG's own, no swap). ``info`` (an ImageInfo): its colour chunks as they were, its
    ICC profile, EXIF, DPI, XMP and text into iCCP, eXIf, pHYs and iTXt chunks."""

    _COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}

    def __init__(self, path, shape, dtype, level=1, info=None):
        self.path = Path(path)
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.height, self.width = self.shape[:2]
        self.channels = self.shape[2] if len(self.shape) == 3 else 1
        if self.dtype not in (np.uint8, np.uint16) or self.channels not in self._COLOR_TYPE:
            raise OutputError(self.path, f"cannot stream {self.dtype} x {self.channels} channels to PNG")
        self._deflate = zlib.compressobj(level)
        self._bpp = self.channels * self.dtype.itemsize  # bytes per pixel, PNG's filter unit
        self._previous = np.zeros(self.width * self._bpp, np.uint8)
        self.next_row = 0
        self._file, self._ended = None, False
        self._context = atomic_path(self.path)
        self._tmp = self._context.__enter__()
        try:  # from here on the temporary file exists: any failure (Ctrl-C too) removes it
            self._file = open(self._tmp, "wb")
            bits = 8 * self.dtype.itemsize
            self._file.write(b"\x89PNG\r\n\x1a\n")
            self._chunk(b"IHDR", struct.pack(">IIBBBBB", self.width, self.height, bits, self._COLOR_TYPE[self.channels], 0, 0, 0))
            for kind, data in _metadata_chunks(info):
                self._chunk(kind, data)
        except BaseException:
            self.abort()
            raise

    def _chunk(self, kind, data):
        try:
            self._file.write(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
        except OSError as e:  # disk full, file size limit
            raise output_error(self.path, e) from None

    def __setitem__(self, rows, block):
        if not isinstance(rows, slice) or rows.start != self.next_row:
            raise ValueError(f"PNG rows must be written in order from row {self.next_row}")
        block = np.asarray(block).astype(self.dtype.newbyteorder(">"), copy=False)  # PNG is big-endian
        raw = np.ascontiguousarray(block).reshape(block.shape[0], -1).view(np.uint8)
        compressed = self._deflate.compress(self._filtered(raw).tobytes())
        if compressed:
            self._chunk(b"IDAT", compressed)
        self._previous = raw[-1].copy()
        self.next_row = rows.stop

    def _filtered(self, raw):
        """Each row with the PNG filter (None, Sub or Up) that minimises the sum of absolute
        signed bytes (the usual heuristic), prefixed by the filter's number. uint8 arithmetic
        wraps modulo 256 exactly as PNG's filters do; min(b, -b) is |b| read as signed."""
        sub = raw.copy()
        sub[:, self._bpp :] -= raw[:, : -self._bpp]
        up = raw.copy()
        up[0] -= self._previous
        up[1:] -= raw[:-1]
        candidates = (raw, sub, up)
        costs = np.stack([np.minimum(c, -c).sum(axis=1, dtype=np.int64) for c in candidates])
        kinds = np.argmin(costs, axis=0).astype(np.uint8)
        chosen = np.where((kinds == 0)[:, None], raw, np.where((kinds == 1)[:, None], sub, up))
        return np.concatenate([kinds[:, None], chosen], axis=1)

    def close(self):
        if self.next_row != self.height:
            self.abort()
            raise OutputError(self.path, f"only {self.next_row} of {self.height} rows were written")
        tail = self._deflate.flush()
        if tail:
            self._chunk(b"IDAT", tail)
        self._chunk(b"IEND", b"")
        try:
            self._file.close()  # flushes the buffered tail: a full disk can show up here
        except OSError as e:
            self.abort()
            raise output_error(self.path, e) from None
        self._context.__exit__(None, None, None)
        self._ended = True
        return self.path

    def abort(self):
        """Remove the temporary file (the target is left as it was). Idempotent; a no-op after a
        successful ``close()``."""
        if self._ended:
            return
        self._ended = True
        with contextlib.suppress(OSError):  # the unflushed tail of a file being thrown away
            if self._file is not None:
                self._file.close()
        self._context.__exit__(OutputError, OutputError(self.path, "aborted"), None)


def _metadata_chunks(info):
    """PNG chunks (before the pixels) for an ImageInfo's colour encoding, profile, resolution, EXIF,
    XMP and text."""
    if info is None:
        return []
    chunks = list(info.colour)
    if info.icc_profile:
        chunks.append((b"iCCP", b"ICC profile\x00\x00" + zlib.compress(info.icc_profile)))
    if info.dpi:
        per_metre = [max(1, min(2**31 - 1, round(d / 0.0254))) for d in info.dpi]
        chunks.append((b"pHYs", struct.pack(">IIB", *per_metre, 1)))
    if info.exif:
        chunks.append((b"eXIf", info.exif))
    texts = [(image_meta.PNG_XMP, info.xmp.decode("utf-8", "replace"))] if info.xmp else []
    for keyword, text in texts + list(info.text):  # iTXt: keyword, no compression, no language, UTF-8
        chunks.append((b"iTXt", keyword.encode("latin-1", "replace")[:79] + b"\x00\x00\x00\x00\x00" + text.encode("utf-8", "replace")))
    return chunks


def _swap_rb(image):
    """BGR(A) <-> RGB(A) in place (the swap is its own inverse). OpenCV copies the source when
    converting in place, so a huge image is swapped in bands of rows to keep that copy small."""
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        return image
    code = cv2.COLOR_BGR2RGB if image.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
    band = max(1, (32 << 20) // max(image[0].nbytes, 1))
    for r0 in range(0, image.shape[0], band):
        rows = image[r0 : r0 + band]
        if rows.flags.c_contiguous:
            cv2.cvtColor(rows, code, dst=rows)
        else:  # OpenCV cannot write into a strided view
            rows[...] = cv2.cvtColor(np.ascontiguousarray(rows), code)
    return image
