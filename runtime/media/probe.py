"""What a video stream is, read from its header before any frame is decoded.

``VideoInfo`` is the description that travels from the decoder to the encoder: size, bit depth,
time base and rate (timestamps pass through, so VFR stays VFR), rotation and colour metadata.
The pixel limit of still images (``RESTORE_MAX_IMAGE_PIXELS``, runtime/image_header.py) applies
to each frame and is checked here, from the header.
"""
import dataclasses
from fractions import Fraction

from ..errors import InputError
from ..image_header import check_pixel_count

UNSPECIFIED = 2  # FFmpeg's AVCOL_*_UNSPECIFIED for primaries, transfer and matrix
COLOUR_FIELDS = ("color_primaries", "color_trc", "colorspace", "color_range")


@dataclasses.dataclass
class VideoInfo:
    width: int
    height: int
    time_base: Fraction
    rate: Fraction  # average frame rate (the encoder's rate-control hint; timestamps rule)
    bits: int = 8  # per component; > 8 is decoded to uint16 RGB
    frames: int = None  # the container's count, when it has one
    rotation: float = 0.0  # counter-clockwise degrees of the display matrix
    colour: dict = dataclasses.field(default_factory=dict)  # COLOUR_FIELDS -> FFmpeg's enum values
    duration: Fraction = None  # seconds, the video stream's own (not the container's), when it has one

    def scaled(self, scale):
        return dataclasses.replace(self, width=self.width * scale, height=self.height * scale)

    @classmethod
    def constant_rate(cls, width, height, fps, bits=8):
        """Frames numbered 0, 1, 2... at ``fps`` (a folder of images written as a video)."""
        rate = Fraction(fps).limit_denominator(1001)
        return cls(width, height, 1 / rate, rate, bits)


def video_stream(container, name):
    """The container's first video stream; InputError when there is none."""
    streams = container.streams.video
    if not streams:
        raise InputError(name, "no video stream in this file", "give a video")
    return streams[0]


def video_info(stream, name):
    """VideoInfo from the stream header; the pixel limit is checked before anything is decoded."""
    import av

    ctx = stream.codec_context
    width, height = check_pixel_count(name, ctx.width, ctx.height, "downscale the video")
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate or Fraction(25)
    bits = 8
    if ctx.format is not None:
        bits = max(c.bits for c in av.VideoFormat(ctx.format.name).components)
    colour = {field: int(getattr(ctx, field) or 0) for field in COLOUR_FIELDS}
    return VideoInfo(width, height, Fraction(stream.time_base), Fraction(rate), bits, stream.frames or None, 0.0, colour,
                     stream_duration(stream))


def stream_duration(stream):
    """The stream's own duration in seconds (a Fraction), from its header or, in Matroska, its
    DURATION tag ("HH:MM:SS.nnnnnnnnn"); None when it has neither."""
    if stream.duration:
        return stream.duration * Fraction(stream.time_base)
    tag = (stream.metadata or {}).get("DURATION", "")
    try:
        hours, minutes, seconds = tag.split(":")
        return Fraction(int(hours) * 3600 + int(minutes) * 60) + Fraction(seconds)
    except ValueError:
        return None


def count_video_packets(path):
    """Video packets in a finished file, read without decoding: what the encoder wrote must all be there."""
    import av

    with av.open(str(path)) as container:
        stream = video_stream(container, path)
        return sum(1 for packet in container.demux(stream) if packet.size)
