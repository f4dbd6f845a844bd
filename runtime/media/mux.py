"""Write a video: the encode thread, the streams copied from the source, atomic finals.

``VideoWriter`` takes restored RGB frames with their timestamps, encodes them on its own thread
(bounded queue: a slow encoder makes the restorer wait) and muxes them with the packets of the
source's other streams. Stream policy (``plan_streams``): audio, subtitles and chapters/metadata
are copied packet for packet; an audio stream the container cannot hold is transcoded (AAC, or
Opus for WebM), a text subtitle stream converted (to mov_text for MP4/MOV, WebVTT for WebM), and
a bitmap subtitle or data stream it cannot hold is dropped -- each with a one-line notice on
stderr. ``--audio none`` leaves audio out, ``--audio aac`` transcodes it.

Outputs are atomic. A file is written to a hidden, unique ``.NAME.XXXXXXXX.partial.EXT`` made by
this run (runtime/atomic.py) and renamed when done, after checking that every encoded frame is in
it. On Ctrl-C/SIGTERM the encoder is flushed and the container finished (so its index is written)
and the file is kept as ``NAME.partial.EXT`` when that name is free (runtime/outputs.py): a
playable video of the frames restored so far, whose name says it is incomplete -- also when the
signal lands while the file is being finished (then with every frame). On any other
error it is removed. No run deletes a partial file it did not make, a resumed one included. ``-`` writes the container (Matroska) to stdout, nothing else goes there.
"""
import contextlib
import dataclasses
import math
import os
import queue
import sys
import threading
import time
from pathlib import Path

from .. import outputs
from ..atomic import output_error, unique_temp
from ..errors import ConfigError, InputError, OutputError, RestoreError
from .encode import EncoderSettings, add_video_stream, encode_frame, open_encoder
from .probe import count_video_packets
from .queues import DONE, get, put
from .sources import OUTPUT_FORMATS, STDIO, output_format

AUDIO_MODES = ("copy", "none", "aac")
_REUSE = object()  # queue item: copy the next packet of the partial being resumed
_DROPPED_METADATA = {"major_brand", "minor_version", "compatible_brands", "encoder"}  # the muxer writes its own


def notice(message):
    print(f"restore: note: {message}", file=sys.stderr, flush=True)


DEFAULT_CODECS = {"webm": "vp9"}  # muxer -> the codec when none is given; else H.264


def default_codec(dst):
    """The codec for output ``dst`` when the user names none: what its container holds."""
    return DEFAULT_CODECS.get(output_format(dst), "h264")


def check_container(settings, dst):
    """ConfigError when the output ``dst``'s container cannot hold the chosen codec."""
    fmt = output_format(dst)
    if fmt is None:
        raise ConfigError(dst, f"cannot write {Path(str(dst)).suffix or 'extensionless'} video", f"use one of {', '.join(sorted(OUTPUT_FORMATS))}")
    if not _holds(supported_codecs(fmt), settings.spec.family):
        raise ConfigError(dst, f"{fmt} cannot hold {settings.codec} video", "choose another --codec or output suffix (.mkv holds them all)")
    return fmt


_UNLISTED = {"mpegts"}  # muxers without a codec table: PyAV lists only their default codecs


def supported_codecs(fmt):
    """What the muxer ``fmt`` takes; empty when it does not say (see _holds)."""
    import io

    import av

    if fmt in _UNLISTED:
        return set()
    with av.open(io.BytesIO(), "w", format=fmt) as probe:
        return probe.supported_codecs


def _holds(supported, codec):
    """Whether a muxer takes ``codec``; one that lists no codecs (mpegts) is given the chance."""
    return not supported or codec in supported


@dataclasses.dataclass
class Route:
    """One copied or transcoded stream: the source stream, the output stream, and how."""
    source: object
    out: object
    transcode: bool

    def packets(self, packet):
        """The output packets for one packet of the source stream."""
        if not self.transcode:
            packet.stream = self.out
            return [packet]
        if self.source.type == "subtitle":
            cues = self.source.codec_context.decode2(packet)
            if cues is None:
                return []
            encoded = self.out.codec_context.encode_subtitle(cues)
            encoded.stream, encoded.time_base = self.out, packet.time_base
            encoded.pts, encoded.dts, encoded.duration = packet.pts, packet.pts, packet.duration
            return [encoded]
        encoded = []
        for frame in self.source.decode(packet):
            frame.pts = None  # the encoder's own sample count: transcoded audio starts where the source's does
            encoded.extend(self.out.encode(frame))
        return encoded

    def flush(self):
        """The packets a transcoding encoder still holds at the end."""
        return self.out.encode(None) if self.transcode and self.source.type == "audio" else []


TEXT_SUBTITLES = ("mov_text", "webvtt")  # what text subtitles become where their own codec cannot go


def _text_subtitle_stream(out, stream, supported):
    """An output stream converting the text subtitle ``stream`` to a codec ``out`` holds, or None."""
    import av

    codec = stream.codec_context.codec if stream.codec_context else None
    target = next((c for c in TEXT_SUBTITLES if c in supported), None)
    if codec is None or target is None or not codec.properties & av.codec.codec.Properties.TEXT_SUB.value:
        return None
    decoder = stream.codec_context
    decoder.open()  # its ASS header is what the encoder starts from
    encoded = out.add_stream(target)
    encoded.time_base = stream.time_base
    encoded.codec_context.subtitle_header = decoder.subtitle_header
    return encoded


def plan_streams(src, out, audio, skip_index, subject):
    """Routes for the source's streams other than the restored video (see the module doc)."""
    supported = supported_codecs(out.format.name)
    target = "aac" if _holds(supported, "aac") else "libopus" if _holds(supported, "opus") else None
    routes = {}
    for stream in src.streams:
        if stream.index == skip_index:
            continue
        name = stream.codec_context.name if stream.codec_context else stream.type
        if stream.type == "audio":
            if audio == "none":
                continue
            if audio == "copy" and _holds(supported, name):
                routes[stream.index] = Route(stream, out.add_stream_from_template(stream), False)
            elif target is None:
                notice(f"{subject}: {out.format.name} holds no audio this build can encode: audio stream {stream.index} ({name}) dropped")
                continue
            else:
                if audio == "copy":
                    notice(f"{subject}: {out.format.name} cannot hold {name} audio: stream {stream.index} transcoded to {target.removeprefix('lib')}")
                ctx = stream.codec_context
                encoded = out.add_stream(target, rate=ctx.sample_rate, layout=ctx.layout.name)
                routes[stream.index] = Route(stream, encoded, True)
        elif stream.type == "subtitle" and _holds(supported, name):
            routes[stream.index] = Route(stream, out.add_stream_from_template(stream), False)
        elif stream.type == "subtitle" and (converted := _text_subtitle_stream(out, stream, supported)) is not None:
            notice(f"{subject}: {out.format.name} cannot hold {name} subtitles: stream {stream.index} converted to {converted.codec_context.name}")
            routes[stream.index] = Route(stream, converted, True)
        elif stream.type == "video":
            notice(f"{subject}: only the first video stream is restored: video stream {stream.index} ({name}) dropped")
            continue
        else:
            notice(f"{subject}: {out.format.name} cannot hold {stream.type} stream {stream.index} ({name}): dropped")
            continue
        routes[stream.index].out.metadata.update(stream.metadata)
    return routes


def copy_container_info(src, out):
    """The source container's metadata (less what the muxer writes itself) and chapters."""
    out.metadata.update({k: v for k, v in src.metadata.items() if k not in _DROPPED_METADATA})
    chapters = src.chapters()
    if chapters:
        out.set_chapters(chapters)


class VideoWriter:
    """Encode RGB frames on a thread; atomic rename on ``close()``; ``abort()`` on failure.

    ``info``: the output picture (VideoInfo: size, time base, rate, depth, colour, rotation).
    ``source``: a VideoReader whose other streams, container metadata and chapters are copied."""

    def __init__(self, dst, info, settings=None, source=None, audio="copy", queue_size=8, reuse=None):
        self.to_stdout = str(dst) == STDIO
        self.path = STDIO if self.to_stdout else Path(dst)
        self.settings = settings or EncoderSettings(default_codec(dst))
        self.info = info
        fmt = check_container(self.settings, dst)
        if not self.to_stdout:
            self.tmp = unique_temp(self.path)
            self.partial = self.path.with_name(f"{self.path.stem}.partial{self.path.suffix}")
        self.frames = 0
        self.busy_s = 0.0  # seconds the encode thread spent encoding and muxing, not waiting
        self._queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._error = None
        self._ended = False  # closed or aborted: abort() is then a no-op
        self.container = None
        try:  # a Ctrl-C while the container is being opened must not leave the file behind
            import av

            if self.to_stdout and sys.stdout is None:  # started with stdout closed (a shell's >&-)
                raise OutputError(STDIO, "standard output is closed", "redirect it to a file or a pipe, or give -o FILE")
            try:
                target = sys.stdout.buffer if self.to_stdout else str(self.tmp)
                self.container = av.open(target, "w", format=fmt)
            except OSError as e:
                raise output_error(self.path, e) from None
            self.reuse = None  # a resume.Reuse whose packets head the video stream
            self._reused_until = None  # time of the last reused packet's dts: new packets must come after it
            if reuse is not None:
                encoder = open_encoder(self.settings, info, global_header=reuse.length_prefixed)
                if reuse.matches(encoder):  # the partial's stream, continued by a twin encoder
                    self.reuse, self.encoder = reuse, encoder
                    self.video = self.container.add_stream_from_template(reuse.stream)
                else:
                    reuse.close()
                    notice(f"{reuse.path}: made with other encoder settings: restoring the video from the start")
            if self.reuse is None:
                self.video = add_video_stream(self.container, self.settings, info)
                self.encoder = self.video.codec_context
            self._routes = {}
            if source is not None:
                subject = source.subject
                self._routes = plan_streams(source.container, self.container, audio, source.stream.index, subject)
                source.passthrough = set(self._routes)
                copy_container_info(source.container, self.container)
            self._thread = threading.Thread(target=self._encode, name="encode", daemon=True)
            self._thread.start()
        except BaseException:
            self._close_container()
            self._remove_tmp()
            raise

    # --- encode thread -----------------------------------------------------------------------
    def _encode(self):
        try:
            while True:
                item = get(self._queue)
                if item is DONE:
                    return
                start = time.perf_counter()
                if item is _REUSE:
                    packet = self.reuse.next_packet()
                    if packet.dts is not None:  # Matroska gives presentation times only
                        self._reused_until = packet.dts * packet.time_base
                    packet.stream = self.video
                    self.container.mux(packet)
                    self.frames += 1
                elif isinstance(item, tuple):
                    image, pts = item
                    self._mux_encoded(self.encoder.encode(encode_frame(self.encoder, image, pts, self.info)))
                    self.frames += 1
                else:
                    self._copy(item)
                self.busy_s += time.perf_counter() - start
        except Exception as e:
            self._error = e
            self._stop.set()

    def _mux_encoded(self, packets):
        for packet in packets:
            if self.reuse is not None:
                packet = self.reuse.in_stream_layout(packet)
                if self._reused_until is not None and packet.dts * packet.time_base <= self._reused_until:
                    # the new encoder's first decode timestamps can reach back into the reused packets'
                    packet.dts = min(packet.pts, math.floor(self._reused_until / packet.time_base) + 1)
            packet.stream = self.video
            self.container.mux(packet)

    def _copy(self, packet):
        self.container.mux(self._routes[packet.stream.index].packets(packet))

    # --- caller side ---------------------------------------------------------------------------
    def write(self, image, pts=None):
        """Queue one restored frame (``pts`` in ``info.time_base``; default: the frame number)."""
        if image.shape[1::-1] != (self.info.width, self.info.height):
            raise InputError(self.path, f"frame of size {image.shape[1]}x{image.shape[0]} in a {self.info.width}x{self.info.height} video",
                             "all frames must have one size")
        if not put(self._queue, (image, self.frames if pts is None else pts), self._stop):
            raise self._failure()

    def reuse_packet(self):
        """Queue the next reused packet of the partial output (one per source frame not restored)."""
        if not put(self._queue, _REUSE, self._stop):
            raise self._failure()

    def copy(self, packets):
        """Queue packets of copied streams (from ``Frame.packets``)."""
        for packet in packets:
            if not put(self._queue, packet, self._stop):
                raise self._failure()

    def _failure(self):
        error = self._error
        if isinstance(error, RestoreError):
            return error
        if isinstance(error, OSError) and error.errno:
            return output_error(self.path, error)
        return OutputError(self.path, f"video encoding failed ({error})")

    def _finish(self):
        """Drain the queue, flush the encoders and write the container's trailer (index)."""
        put(self._queue, DONE, self._stop)  # taken by the encoder; _stop is set only if it died
        self._thread.join()
        if self._error is None:
            try:
                self._mux_encoded(self.encoder.encode(None))
                for route in self._routes.values():
                    self.container.mux(route.flush())
            except Exception as e:  # noqa: BLE001 -- reported like an error in the thread
                self._error = e
        self._close_container()

    def _close_container(self):
        if getattr(self, "reuse", None) is not None:
            self.reuse.close()
            self.reuse = None
        if self.container is None:
            return
        container, self.container = self.container, None
        try:
            container.close()
        except Exception as e:  # noqa: BLE001
            self._error = self._error or e

    def close(self):
        self._ended = True
        try:
            self._finish()
            if self._error is not None:
                raise self._failure()
            if self.to_stdout:
                return self.path
            if count_video_packets(self.tmp) < self.frames:
                raise OutputError(self.path, f"the encoded video does not hold all {self.frames} frames (disk full or file size limit?)",
                                  "free some space and run again")
            with open(self.tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(self.tmp, self.path)
            if self.reuse is not None:
                notice(f"{self.partial}: continued into {self.path}; remove it once you have checked the result")
        except OSError as e:
            self._remove_tmp()
            raise output_error(self.path, e) from None
        except KeyboardInterrupt:  # while finishing: ``abort`` may still keep what plays
            self._ended = False
            raise
        except BaseException:
            self._remove_tmp()
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
            self._close_container()
        if self.to_stdout:
            return None
        if keep_partial and self.frames > 0 and self._error is None and _plays(self.tmp, self.frames):
            return outputs.keep_partial(self.tmp, self.partial)
        self._remove_tmp()
        return None

    def _remove_tmp(self):
        if not self.to_stdout:
            self._remove(self.tmp)

    @staticmethod
    def _remove(path):
        with contextlib.suppress(OSError):
            os.unlink(path)


def _plays(path, frames):
    try:
        return count_video_packets(path) >= frames
    except Exception:  # noqa: BLE001 -- unreadable: not worth keeping
        return False
