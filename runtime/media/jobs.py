"""Whole video jobs: video -> video, video -> PNG frames, folder of frames -> video.

The restorer runs in the calling thread between the decode thread and the encode thread
(decode.py, mux.py), so the three overlap. On Ctrl-C/SIGTERM the partial video is kept (see
mux.py), on other errors removed; the exception propagates.
"""
import statistics
import sys
import time
from pathlib import Path

from ..sequence import Sequence
from .decode import Frame, TruncatedVideo, VideoReader
from .mux import VideoWriter, notice
from .probe import VideoInfo
from .queues import prefetched
from .resume import Reuse
from .sources import STDIO, display_name, is_live

LIVE_QUEUE = 2  # frames between decoder and restorer in live mode: the latency bound, in frames


class Progress:
    """A frames/s bar; in live mode also input fps, output fps, dropped frames and latency."""

    def __init__(self, total, name, enabled, reader=None):
        from tqdm import tqdm

        self.reader = reader if reader is not None and reader.live else None
        self.bar = tqdm(total=total, unit="frame", desc=name, disable=not enabled, leave=False, delay=1.0)
        self.start = self.shown = time.monotonic()
        self.done = 0  # tqdm counts nothing when disabled
        self.latencies = []

    def update(self, frame):
        now = time.monotonic()
        self.done += 1
        self.bar.update()
        if self.reader is None:
            return
        self.latencies.append(now - frame.arrival)
        if now - self.shown > 0.5:
            self.shown = now
            self.bar.set_postfix_str(self.summary(now), refresh=False)

    def summary(self, now=None):
        elapsed = max((now or time.monotonic()) - self.start, 1e-9)
        latency = f"{1000 * self.latencies[-1]:.0f} ms" if self.latencies else "n/a"
        return (f"in {self.reader.decoded / elapsed:.1f} fps, out {self.done / elapsed:.1f} fps, "
                f"dropped {self.reader.dropped}, latency {latency}")

    def close(self):
        self.bar.close()
        if self.reader is not None and self.latencies:
            print(f"restore: live: {self.reader.decoded} frames in, {self.done} out, {self.reader.dropped} dropped; "
                  f"latency median {1000 * statistics.median(self.latencies):.0f} ms, max {1000 * max(self.latencies):.0f} ms",
                  file=sys.stderr, flush=True)


def restore_frames(restorer, frames, writer, total=None, name="", skip_tiles=None, progress=True, reader=None):
    """Restore ``frames`` (``Frame``s) into ``writer``, copying the packets they carry. When the
    writer continues a partial output (``writer.reuse``), its first frames come from there."""
    bar = Progress(total, name, progress, reader)
    reused = writer.reuse.frames if writer.reuse is not None else 0
    sequence = Sequence()
    try:
        for i, frame in enumerate(frames):
            writer.copy(frame.packets)
            if i < reused:
                writer.reuse_packet()
                restorer.follow(frame.image, sequence)
            else:
                writer.write(restorer.restore(frame.image, skip_tiles=skip_tiles, sequence=sequence), frame.pts)
            bar.update(frame)
        if reader is not None:
            writer.copy(reader.leftover)
    except KeyboardInterrupt:
        bar.close()
        _keep_interrupted(writer)
        raise
    except TruncatedVideo as e:  # the frames before the damage are worth keeping, as a partial
        bar.close()
        kept = writer.abort(keep_partial=True)
        hint = f"kept the {writer.frames} frames restored so far as {kept}" if kept else "nothing was written"
        raise TruncatedVideo(e.subject, e.problem, hint) from None
    except BaseException:
        bar.close()
        writer.abort(keep_partial=False)
        raise
    bar.close()
    try:
        return writer.close()
    except KeyboardInterrupt:  # while the file was being finished: every frame is in it
        _keep_interrupted(writer)
        raise


def _keep_interrupted(writer):
    """After a Ctrl-C: the frames restored so far, kept as a playable NAME.partial.EXT."""
    kept = writer.abort(keep_partial=True)
    if kept is not None:
        print(f"interrupted: kept the {writer.frames} frames restored so far as {kept}", file=sys.stderr, flush=True)


def restore_video(restorer, src, dst, skip_tiles=None, progress=True, settings=None, audio="copy", live=None, resume=False, raw=None):
    """Video -> video: frame size x model scale; timestamps, rotation, colour, audio, subtitles,
    chapters and metadata kept (mux.py says what happens to a stream the container cannot hold).
    ``resume``: continue from ``NAME.partial.EXT`` where an interrupted run left one (resume.py).
    ``raw``: a sources.RawFormat when ``src`` is raw frames on stdin."""
    live = is_live(src) if live is None else live
    with VideoReader(src, queue_size=LIVE_QUEUE if live else 8, live=live, raw=raw) as reader:
        reuse = _partial_to_resume(dst, restorer, reader, skip_tiles) if resume and not live else None
        try:
            writer = VideoWriter(dst, reader.info.scaled(restorer.scale), settings, source=reader, audio=audio, reuse=reuse)
        except BaseException:
            if reuse is not None:
                reuse.close()
            raise
        if writer.reuse is not None:
            print(f"restore: --resume: {writer.reuse.frames} restored frames reused from {writer.reuse.path}", file=sys.stderr, flush=True)
        try:
            restore_frames(restorer, reader, writer, reader.frame_count, display_name(src), skip_tiles, progress, reader)
        except BaseException:  # also an interrupt before restore_frames took charge of the writer
            writer.abort(keep_partial=False)
            raise
    return dst


def _partial_to_resume(dst, restorer, reader, skip_tiles):
    """The reusable head of ``dst``'s partial output, or None (none there, none reusable, or not
    made from this source by this model: its first frame must match ours, see resume.py)."""
    if str(dst) == STDIO:
        return None
    dst = Path(dst)
    partial = dst.with_name(f"{dst.stem}.partial{dst.suffix}")
    if not partial.is_file():
        return None
    try:
        reuse = Reuse(partial)
    except Exception:  # noqa: BLE001 -- unreadable: restored from the start, and replaced at the end
        print(f"restore: note: {partial}: cannot be read: restoring the video from the start", file=sys.stderr, flush=True)
        return None
    if reuse.frames == 0:  # one GOP only: nothing complete to keep
        reuse.close()
        return None
    if not reuse.shows(restorer.restore(reader.first_image(), skip_tiles=skip_tiles)):
        reuse.close()
        print(f"restore: note: {partial}: not this video restored by this model: restoring the video from the start", file=sys.stderr, flush=True)
        return None
    reuse.align(reader.start_time)
    return reuse


def restore_video_to_frames(restorer, src, folder, skip_tiles=None, progress=True, raw=None):
    """Video -> folder of PNG frames (000000.png, ...), each written atomically."""
    from ..streams import write_image

    folder = Path(folder)
    with VideoReader(src, raw=raw) as reader:
        bar = Progress(reader.frame_count, display_name(src), progress)
        sequence = Sequence()
        try:
            for i, frame in enumerate(reader):
                write_image(folder / f"{i:06d}.png", restorer.restore(frame.image, skip_tiles=skip_tiles, sequence=sequence))
                bar.update(frame)
        finally:
            bar.close()
    return folder


def restore_folder_to_video(restorer, folder, dst, fps=None, skip_tiles=None, progress=True, settings=None):
    """Folder of image frames (sorted by name) -> one video at ``fps`` (default 25)."""
    import numpy as np

    from ..errors import InputError
    from ..streams import is_image, list_media, read_image

    paths = [p for p in list_media(folder) if is_image(p)]
    if not paths:
        raise InputError(folder, "no image frames in this folder")
    first = read_image(paths[0])
    h, w = first.shape[:2]
    if first.ndim == 3 and first.shape[2] in (2, 4):  # the encoder takes RGB: say so, never drop it silently
        notice(f"{folder}: the frames have an alpha channel; the video is opaque: alpha dropped")
    info = VideoInfo.constant_rate(w * restorer.scale, h * restorer.scale, fps or 25.0, 16 if first.dtype == np.uint16 else 8)
    writer = VideoWriter(dst, info, settings)

    def frames():
        yield Frame(first, 0, [], time.monotonic())
        for i, p in enumerate(paths[1:], 1):
            frame = read_image(p)
            if frame.shape[:2] != (h, w):
                raise InputError(p, f"frame is {frame.shape[1]}x{frame.shape[0]}, the first frame is {w}x{h}")
            yield Frame(frame, i, [], time.monotonic())

    try:
        return restore_frames(restorer, prefetched(frames()), writer, len(paths), Path(folder).name, skip_tiles, progress)
    except BaseException:  # also an interrupt before restore_frames took charge of the writer
        writer.abort(keep_partial=False)
        raise
