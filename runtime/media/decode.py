"""Decode a video on its own thread into a bounded queue of RGB frames with their timestamps.

Each ``Frame`` carries its picture (uint8 RGB, or uint16 RGB for sources above 8 bits), its
presentation timestamp in the stream's time base (passed to the encoder untouched, so VFR stays
VFR), and the packets of other streams (audio, subtitles) that came before it in the file, for
the writer to copy in order.

Policies, stated once:
- back-pressure: a file or pipe is decoded at most ``queue_size`` frames ahead of the restorer;
- live sources (``live=True``, automatic for udp/rtp/rtsp/srt and capture devices) never wait:
  when the queue to the restorer is full the newly decoded frame is dropped and counted (its
  audio is kept), so latency stays under ``queue_size`` frames of restoration; a file read in
  live mode is paced by its timestamps, a network source or device paces itself;
- a frame whose size differs from the first is refused (TruncatedVideo, exit 3): the output has
  one size, and rescaling silently would be a wrong result;
- a file that stops decoding before its container's frame count (or fails to decode after the
  first frame) is a TruncatedVideo: the frames before the damage are kept as a partial output;
  so is raw input (``raw``) whose byte count is not a whole number of frames.
"""
import collections
import dataclasses
import queue
import threading
import time

from ..errors import InputError, RestoreError
from .mux import notice
from .probe import video_info, video_stream
from .queues import DONE, get, put
from .sources import STDIO, display_name, is_live, is_stream, open_source, raise_pending_interrupt, stop_reading_stdin


class TruncatedVideo(InputError):
    """The video stops decoding (or changes size) before its end."""


@dataclasses.dataclass
class Frame:
    image: object  # (H, W, 3) uint8 or uint16 RGB
    pts: int  # in the source stream's time base
    packets: list  # packets of copied streams demuxed before this frame
    arrival: float  # time.monotonic() when decoded (latency)


class VideoReader:
    """Iterate ``Frame``s of ``src`` (a path, ``-``, a URL or a device), decoded ahead on a thread."""

    def __init__(self, src, queue_size=8, live=None, raw=None):
        self.source = src
        self.subject = display_name(src) if is_stream(src) else src
        self.live = is_live(src) if live is None else live
        self.container = open_source(src, raw=raw)
        self._frame_bytes = None if raw is None else 0  # raw input: the first packet's size, one whole frame
        try:
            self.stream = video_stream(self.container, self.subject)
            self.info = video_info(self.stream, self.subject)
            fmt = self.stream.codec_context.format
            if fmt is not None and any(c.is_alpha for c in fmt.components):  # decoded to RGB: say so, never drop it silently
                notice(f"{self.subject}: the video has an alpha channel ({fmt.name}); the output is opaque: alpha dropped")
            self.stream.thread_type = "AUTO"  # frame threads: decoding keeps up with 1080p on two cores
            self._format = "rgb48le" if self.info.bits > 8 else "rgb24"
            self._demux = self.container.demux()
            self._decoded = collections.deque()
            self._carry = []  # copied-stream packets waiting for the next frame
            self._last_pts = None
            self._packets_end = 0  # the end of the last video packet demuxed, in the stream's time base
            self.decoded = self.dropped = 0
            self.busy_s = 0.0  # seconds the decode thread spent decoding, not waiting (benchmarks/media.py)
            self._first = self._next_frame()
            if self._first is None:
                raise InputError(self.subject, "no frame of this video decodes (empty, corrupt or unsupported codec)", "check the file or remove it")
            self.info.rotation = self._first_rotation
            self.start_time = (self._first[0].pts or 0) * self.info.time_base  # seconds, a Fraction
            raise_pending_interrupt()
        except BaseException:
            self.container.close()
            raise_pending_interrupt()  # a Ctrl-C is what ended the input, not a damaged file
            raise
        self.passthrough = set()  # indices of the streams the writer copies (VideoWriter sets it)
        self.leftover = []  # copied-stream packets after the last frame, once iteration ends
        self._queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._error = None
        self._thread = None

    def first_image(self):
        """The first frame's picture (decoded when the reader opened), before iterating."""
        return self._image(self._first[0])

    def _image(self, frame):
        return frame.to_ndarray(format=self._format, src_color_range=frame.color_range or None)

    @property
    def frame_count(self):
        return self.info.frames

    @property
    def fps(self):
        return float(self.info.rate)

    # --- decode thread ---------------------------------------------------------------------
    def _next_frame(self):
        """The next (av frame, arrival) of the video stream, None at the end; other streams'
        packets go to ``_carry``."""
        import av

        while not self._decoded:
            try:
                packet = next(self._demux, None)
                if packet is None:
                    return None
                if packet.stream.index != self.stream.index:
                    if packet.size:
                        self._carry.append(packet)
                    continue
                if self._frame_bytes is not None and packet.size:
                    self._check_raw_size(packet.size)
                if packet.pts is not None:  # a VFR video's last frame may last longer than a period
                    self._packets_end = max(self._packets_end, packet.pts + (packet.duration or 0))
                frames = packet.decode()
            except av.FFmpegError as e:
                if self.decoded == 0:
                    raise self._undecodable(e) from None
                if self.live:  # a live source that stops sending (read timeout) ends the run
                    return None
                raise TruncatedVideo(self.subject, f"decoding fails after frame {self.decoded} (truncated or corrupt)") from None
            now = time.monotonic()
            self._decoded.extend((frame, now) for frame in frames)
        frame, arrival = self._decoded.popleft()
        if self.decoded == 0:
            self._first_rotation = float(frame.rotation or 0)
            colour = {k: int(getattr(frame, k) or 0) for k in self.info.colour}
            self.info.colour.update({k: v for k, v in colour.items() if v})  # the frame's tags, where it has them
        elif (frame.width, frame.height) != (self.info.width, self.info.height):
            raise TruncatedVideo(self.subject, f"the frame size changes from {self.info.width}x{self.info.height} to {frame.width}x{frame.height} "
                                 f"at frame {self.decoded} (refused: one output size, no silent rescaling)", "split the video where the size changes")
        self.decoded += 1
        return frame, arrival

    def _undecodable(self, error):
        """The InputError for a video whose first frame fails to decode."""
        if str(self.source) == STDIO and "mp4" in self.container.format.name.split(","):
            # an MP4/MOV whose index (moov) follows the frames needs seeking back, which a pipe cannot
            return InputError(self.subject, f"cannot decode this MP4/MOV from a pipe ({getattr(error, 'strerror', None) or error}; "
                              "an MP4 whose index is at its end cannot be read from a pipe)",
                              "give the file's path instead, or pipe Matroska or MPEG-TS")
        return InputError(self.subject, f"cannot decode this video ({getattr(error, 'strerror', None) or error})", "check the file or remove it")

    def _check_raw_size(self, size):
        """The rawvideo demuxer cuts frame-sized packets; a shorter one is the stream's partial end."""
        if not self._frame_bytes:
            self._frame_bytes = size
        elif size < self._frame_bytes:
            raise TruncatedVideo(self.subject, f"the raw stream ends with {size} bytes of a partial frame after frame {self.decoded} "
                                 f"(a frame is {self._frame_bytes} bytes)", "check --raw's size and pixel format, and that the writer finished")

    def _to_frame(self, decoded):
        frame, arrival = decoded
        pts = frame.pts
        if pts is None:  # raw streams may lack timestamps: one frame period after the last
            pts = 0 if self._last_pts is None else self._last_pts + max(1, round(1 / (self.info.rate * self.info.time_base)))
        if self._last_pts is not None and pts <= self._last_pts:  # encoders need strictly increasing timestamps
            pts = self._last_pts + 1
        self._last_pts = pts
        image = self._image(frame)
        packets = [p for p in self._carry if p.stream.index in self.passthrough]
        self._carry = []
        return Frame(image, pts, packets, arrival)

    def _decode(self):
        try:
            decoded, pace = self._first, None
            while decoded is not None and not self._stop.is_set():
                if self.live and not is_stream(self.source):
                    pace = self._pace(decoded[0], pace)
                start = time.perf_counter()
                item = self._to_frame(decoded)
                self.busy_s += time.perf_counter() - start
                if self.live:
                    try:
                        self._queue.put_nowait(item)
                    except queue.Full:
                        self.dropped += 1
                        self._carry = item.packets + self._carry  # the audio of a dropped frame is kept
                elif not put(self._queue, item, self._stop):
                    return
                start = time.perf_counter()
                decoded = self._next_frame()
                self.busy_s += time.perf_counter() - start
            self.leftover = [p for p in self._carry if p.stream.index in self.passthrough]
        except Exception as e:  # handed to the consumer thread, which raises it
            self._error = e
        put(self._queue, DONE, self._stop)

    def _pace(self, frame, pace):
        """Sleep until ``frame`` is due by its timestamp (a file read as a live source)."""
        seconds = float((frame.pts or 0) * self.info.time_base)
        if pace is None:
            return time.monotonic() - seconds
        delay = pace + seconds - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return pace

    # --- consumer side ---------------------------------------------------------------------
    def __iter__(self):
        self._thread = threading.Thread(target=self._decode, name=f"decode {display_name(self.source)}", daemon=True)
        self._thread.start()
        try:
            while True:
                item = get(self._queue)
                if item is DONE:
                    break
                yield item
        finally:  # also when the consumer stops early: the decode thread must not linger
            self._stop_thread()  # the container stays open: the writer may still copy its packets
        if self._error is not None:
            if isinstance(self._error, RestoreError):
                raise self._error
            raise InputError(self.subject, f"decoding failed ({self._error})")
        # FFmpeg can end a damaged file quietly; the container's frame count tells a cut-off one,
        # else the stream's duration (Matroska has no count) against the last frame's end (one
        # frame of slack each: some containers only estimate them).
        frames, duration = self.info.frames, self.info.duration
        if self.live:
            return
        if frames and self.decoded < frames - 1:
            raise TruncatedVideo(self.subject, f"only the first {self.decoded} of {frames} frames decode (truncated or corrupt)")
        if not frames and duration and self._last_pts is not None:
            period = 1 / self.info.rate
            end = max(self._last_pts * self.info.time_base + period, self._packets_end * self.info.time_base) - self.start_time
            if end < duration - 2 * period:
                raise TruncatedVideo(self.subject, f"the frames decode only to {float(end):.2f} s of the stream's {float(duration):.2f} s "
                                     f"({self.decoded} frames; truncated or corrupt)")

    def close(self):
        self._stop_thread()
        self.container.close()

    def _stop_thread(self):
        self._stop.set()
        if self.source == STDIO:  # the decode thread may be waiting for stdin
            stop_reading_stdin()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not None and self._thread.ident is not None:  # started (an interrupt can fall in between)
            self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
