"""Image and video I/O for the runtime: OpenCV decode/encode on their own threads.

Pixels leave this module as RGB(A) or gray NumPy arrays (OpenCV's BGR is converted here), the
layout ``Restorer`` expects.

Video: decoding and encoding each run on a thread with a bounded queue, so a slow model makes
the decoder wait (back-pressure) instead of buffering the whole video, and a slow encoder makes
the model wait. Frame rate and frame size (times the model scale) are kept. OpenCV reads and
writes pictures only: the audio track is dropped.

Outputs are atomic. A video is written to a hidden, unique ``.NAME.XXXXXXXX.partial.EXT`` made by
this run (runtime/outputs.py) and renamed when done. On Ctrl-C/SIGTERM the writer is finished
properly (so the container index is written) and the file is kept as ``NAME.partial.EXT`` (when
that name is free): a playable video of the frames restored so far, whose name says it is
incomplete. On any other error it is removed.
"""
import contextlib
import io
import os
import queue
import struct
import sys
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np

from .atomic import atomic_path, output_error, unique_temp
from .errors import InputError, OutputError
from .pixels import check_float_pixels
from . import image_meta
from .image_header import check_image_file
from . import outputs

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
# What this OpenCV build can write (checked: mp4v, MJPG, XVID, FFV1; no H.264 encoder).
VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "FFV1"}
VIDEO_SUFFIXES = set(VIDEO_FOURCC) | {".webm", ".mpg", ".mpeg", ".wmv", ".flv"}
DEFAULT_FPS = 25.0
_DONE = object()


def is_image(path):
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_video(path):
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


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
    return image_meta.upright(_swap_rb(image), info.orientation), info


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


DEFAULT_QUALITY = 95  # JPEG and WebP, as OpenCV wrote them before
_PILLOW_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}


def write_image(path, image, info=None, quality=None):
    """Write an RGB(A)/gray(+alpha) array atomically, with ``info``'s profile, EXIF and DPI where
    the format holds them. ``quality`` (1..100) for JPEG and WebP. ``image`` may be converted to
    BGR in place (it is the caller's output buffer; copying a 16k x 16k image would double the
    memory)."""
    path = Path(path)
    info = info or image_meta.ImageInfo()
    suffix = path.suffix.lower()
    image = _fit_depth(image, suffix)
    if suffix == ".png" and image.dtype in (np.uint8, np.uint16):
        writer = PngStripWriter(path, image.shape, image.dtype, info=info)
        try:
            writer[0 : image.shape[0]] = image
            return writer.close()
        except BaseException:
            writer.abort()
            raise
    fmt = _PILLOW_FORMATS.get(suffix)
    if fmt is not None and image.dtype == np.uint8:
        buffer = io.BytesIO()  # encoded in memory, written from Python: a full disk is a real OSError
        try:
            image_meta.save_with_pillow(image, buffer, fmt, info, quality or DEFAULT_QUALITY)
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


def _fit_depth(image, suffix):
    """``image`` in a depth the format holds, scaled. OpenCV would saturate instead: 16-bit into a
    JPEG comes out almost white, float [0, 1] into a PNG black (every value 0 or 1)."""
    suffix = suffix.lower()
    if image.dtype.kind == "f" and suffix not in (".tif", ".tiff"):
        top, dtype = (65535, np.uint16) if suffix == ".png" else (255, np.uint8)
        return np.rint(np.clip(image, 0, 1) * top).astype(dtype)
    if image.dtype == np.uint16 and suffix in _EIGHT_BIT_SUFFIXES:
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return image


class PngStripWriter:
    """Write a PNG row strip by row strip (``writer[r0:r1] = rows``, in order), so a huge output
    is never held whole: rows are filtered and deflated as they arrive. Atomic like
    ``atomic_path``: written under a temporary name, renamed by ``close()``, removed by ``abort()``.

    ``shape`` (H, W[, C]) with C = 1..4 (gray, gray+alpha, RGB, RGBA), dtype uint8 or uint16,
    RGB(A) order (PNG's own, no swap). ``info`` (an ImageInfo): its ICC profile, EXIF and DPI go
    into iCCP, eXIf and pHYs chunks."""

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
    """PNG chunks (before the pixels) for an ImageInfo's profile, resolution and EXIF."""
    if info is None:
        return []
    chunks = []
    if info.icc_profile:
        chunks.append((b"iCCP", b"ICC profile\x00\x00" + zlib.compress(info.icc_profile)))
    if info.dpi:
        per_metre = [max(1, min(2**31 - 1, round(d / 0.0254))) for d in info.dpi]
        chunks.append((b"pHYs", struct.pack(">IIB", *per_metre, 1)))
    if info.exif:
        chunks.append((b"eXIf", info.exif))
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


# --- video in -----------------------------------------------------------------------------------
class TruncatedVideo(InputError):
    """The video stops decoding before its container says it ends."""


class VideoReader:
    """Iterate RGB frames of a video, decoded ahead on a thread into a bounded queue."""

    def __init__(self, path, queue_size=8):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(self.path, "no such file", "check the path")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise InputError(self.path, "cannot open this video (empty, corrupt or unsupported codec)", "check the file or remove it")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and np.isfinite(fps) and fps > 0 else DEFAULT_FPS
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.frame_count = max(int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0) or None  # an estimate
        self._queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._error = None
        self._thread = None

    def _decode(self):
        try:
            while not self._stop.is_set():
                ok, frame = self._cap.read()
                if not ok:
                    break
                if not _put(self._queue, _swap_rb(frame), self._stop):
                    return
        except Exception as e:  # handed to the consumer thread, which raises it
            self._error = e
        _put(self._queue, _DONE, self._stop)

    def __iter__(self):
        self._thread = threading.Thread(target=self._decode, name=f"decode {self.path.name}", daemon=True)
        self._thread.start()
        decoded = 0
        try:
            while True:
                frame = _get(self._queue)
                if frame is _DONE:
                    break
                decoded += 1
                yield frame
        finally:  # also when the consumer stops early: the decode thread must not linger
            self.close()
        if self._error is not None:
            raise InputError(self.path, f"decoding failed ({self._error})")
        # OpenCV ends a video quietly at the first frame it cannot decode; the container's frame
        # count tells a cut-off file (one frame of slack: some containers only estimate it).
        if self.frame_count and decoded < self.frame_count - 1:
            raise TruncatedVideo(self.path, f"only the first {decoded} of {self.frame_count} frames decode (truncated or corrupt)")

    def close(self):
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        if self._thread is not None and self._thread.ident is not None:  # started (an interrupt can fall in between)
            self._thread.join()
        self._cap.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- video out ----------------------------------------------------------------------------------
class VideoWriter:
    """Encode RGB frames on a thread; atomic rename on ``close()``; ``abort()`` on failure."""

    def __init__(self, path, fps, size, queue_size=8):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_FOURCC:
            raise OutputError(self.path, f"cannot write {suffix or 'extensionless'} video", f"use one of {', '.join(sorted(VIDEO_FOURCC))}")
        self.tmp = unique_temp(self.path)
        self.partial = self.path.with_name(f"{self.path.stem}.partial{self.path.suffix}")
        self.size = tuple(int(v) for v in size)  # (width, height)
        self.frames = 0
        self._queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._error = None
        self._ended = False  # closed or aborted: abort() is then a no-op
        try:  # a Ctrl-C while the container is being opened must not leave the file behind
            self._writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*VIDEO_FOURCC[suffix]), float(fps), self.size)
            if not self._writer.isOpened():
                raise OutputError(self.path, "OpenCV cannot open a video writer here", "check the folder is writable, or try .avi")
            self._thread = threading.Thread(target=self._encode, name=f"encode {self.path.name}", daemon=True)
            self._thread.start()
        except BaseException:
            _remove(self.tmp)
            raise

    def _encode(self):
        try:
            while True:
                frame = _get(self._queue)
                if frame is _DONE:
                    return
                self._writer.write(frame)
                self.frames += 1
        except Exception as e:
            self._error = e
            self._stop.set()

    def write(self, frame):
        if frame.shape[1::-1] != self.size:
            raise InputError(self.path, f"frame of size {frame.shape[1]}x{frame.shape[0]} in a {self.size[0]}x{self.size[1]} video", "all frames must have one size")
        frame = _to_bgr8(frame)
        if not _put(self._queue, frame, self._stop):
            raise OutputError(self.path, f"video encoding failed ({self._error})")

    def _finish(self):
        _put(self._queue, _DONE, self._stop)  # taken by the encoder; _stop is set only if it died
        self._thread.join()
        self._writer.release()

    def close(self):
        self._ended = True
        try:
            self._finish()
            if self._error is not None:
                raise OutputError(self.path, f"video encoding failed ({self._error})")
            if not _plays_to_the_end(self.tmp, self.frames):
                raise OutputError(self.path, f"the encoded video does not play back all {self.frames} frames (disk full or file size limit?)",
                                  "free some space and run again")
            with open(self.tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(self.tmp, self.path)
        except OSError as e:
            _remove(self.tmp)
            raise OutputError(self.path, f"cannot write: {e.strerror}") from None
        except BaseException:  # including Ctrl-C while finishing: no temporary file stays behind
            _remove(self.tmp)
            raise
        return self.path

    def abort(self, keep_partial):
        """Stop after the frames queued so far. ``keep_partial``: finish the file as a playable
        NAME.partial.EXT (if it has frames); otherwise remove it. Returns the kept path or None."""
        if self._ended:
            return None
        self._ended = True
        if self._thread.is_alive():
            self._finish()
        else:
            self._writer.release()
        if keep_partial and self.frames > 0 and self._error is None and _plays_to_the_end(self.tmp, self.frames):
            return outputs.keep_partial(self.tmp, self.partial)
        _remove(self.tmp)
        return None


def _plays_to_the_end(path, frames):
    """Whether the finished video at ``path`` holds ``frames`` frames and its last one decodes.
    OpenCV's writer drops failed writes silently (a full disk, ``ulimit -f``): this is the only
    way to learn that the file is cut short before it gets the final name."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened() or int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) < frames:
            return False
        cap.set(cv2.CAP_PROP_POS_FRAMES, frames - 1)
        return bool(cap.read()[0])
    finally:
        cap.release()


def _to_bgr8(frame):
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
    elif frame.dtype != np.uint8:
        frame = np.rint(np.clip(frame, 0, 1) * 255).astype(np.uint8)
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_RGBA2BGR)
    return cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)


def _get(q):
    """``q.get()`` that never waits without a timeout. Ctrl-C/SIGTERM raise KeyboardInterrupt in
    the main thread wherever it is, also inside ``Condition.notify`` of a queue, which can leave a
    stale waiter behind: the next notification then wakes nobody and a plain ``get()`` in another
    thread sleeps forever (seen: a SIGTERM at start-up hung ``restore run``). Polling survives it."""
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue


def _put(q, item, stop):
    """Put with back-pressure; give up (False) once ``stop`` is set so threads never hang."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _remove(path):
    with contextlib.suppress(OSError):
        os.unlink(path)


# --- whole jobs ---------------------------------------------------------------------------------
def restore_frames(restorer, frames, writer, total=None, name="", skip_tiles=None, progress=True):
    """Restore ``frames`` into ``writer`` with a frames/s progress bar. On Ctrl-C the partial video
    is kept (see module doc), on other errors removed; the exception propagates."""
    from tqdm import tqdm

    try:
        with tqdm(total=total, unit="frame", desc=name, disable=not progress, leave=False, delay=1.0) as bar:
            for frame in frames:
                writer.write(restorer.restore(frame, skip_tiles=skip_tiles))
                bar.update()
    except KeyboardInterrupt:
        kept = writer.abort(keep_partial=True)
        if kept is not None:
            print(f"interrupted: kept the {writer.frames} frames restored so far as {kept}", file=sys.stderr, flush=True)
        raise
    except TruncatedVideo as e:  # the frames before the damage are worth keeping, as a partial
        kept = writer.abort(keep_partial=True)
        hint = f"kept the {writer.frames} frames restored so far as {kept}" if kept else "nothing was written"
        raise TruncatedVideo(e.subject, e.problem, hint) from None
    except BaseException:
        writer.abort(keep_partial=False)
        raise
    return writer.close()


def restore_video(restorer, src, dst, skip_tiles=None, progress=True):
    """Video file -> video file with the same frame rate and frame size x model scale."""
    with VideoReader(src) as reader:
        size = (reader.width * restorer.scale, reader.height * restorer.scale)
        writer = VideoWriter(dst, reader.fps, size)
        try:
            restore_frames(restorer, reader, writer, reader.frame_count, Path(src).name, skip_tiles, progress)
        except BaseException:  # also an interrupt before restore_frames took charge of the writer
            writer.abort(keep_partial=False)
            raise
    return dst


def restore_video_to_frames(restorer, src, folder, skip_tiles=None, progress=True):
    """Video file -> folder of PNG frames (000000.png, ...), each written atomically."""
    from tqdm import tqdm

    folder = Path(folder)
    with VideoReader(src) as reader:
        with tqdm(total=reader.frame_count, unit="frame", desc=Path(src).name, disable=not progress, leave=False, delay=1.0) as bar:
            for i, frame in enumerate(reader):
                write_image(folder / f"{i:06d}.png", restorer.restore(frame, skip_tiles=skip_tiles))
                bar.update()
    return folder


def restore_folder_to_video(restorer, folder, dst, fps=None, skip_tiles=None, progress=True):
    """Folder of image frames (sorted by name) -> one video at ``fps`` (default 25)."""
    paths = [p for p in list_media(folder) if is_image(p)]
    if not paths:
        raise InputError(folder, "no image frames in this folder")
    first = read_image(paths[0])
    h, w = first.shape[:2]
    writer = VideoWriter(dst, fps or DEFAULT_FPS, (w * restorer.scale, h * restorer.scale))

    def frames():
        yield first
        for p in paths[1:]:
            frame = read_image(p)
            if frame.shape[:2] != (h, w):
                raise InputError(p, f"frame is {frame.shape[1]}x{frame.shape[0]}, the first frame is {w}x{h}")
            yield frame

    try:
        return restore_frames(restorer, prefetched(frames()), writer, len(paths), Path(folder).name, skip_tiles, progress)
    except BaseException:  # also an interrupt before restore_frames took charge of the writer
        writer.abort(keep_partial=False)
        raise


def prefetched(iterable, queue_size=8):
    """Run ``iterable`` (e.g. image decoding) on a thread, at most ``queue_size`` items ahead."""
    q, stop, failure = queue.Queue(maxsize=queue_size), threading.Event(), []

    def produce():
        try:
            for item in iterable:
                if not _put(q, item, stop):
                    return
        except BaseException as e:  # re-raised in the consumer
            failure.append(e)
        _put(q, _DONE, stop)

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = _get(q)
            if item is _DONE:
                break
            yield item
        if failure:
            raise failure[0]
    finally:
        stop.set()
        thread.join()
