"""Video encoder choice and settings: codec, quality, speed, pixel format, raw encoder options.

Defaults (``EncoderSettings()``): H.264 through libx264, CRF 18, preset veryfast -- visually
lossless (luma PSNR above 42 dB against the frames before encoding), 1.25x the bitrate of a CRF 23
source, and 1.4-2x the speed of preset medium, so the encoder stays off the critical path of a
GPU restorer (benchmarks/media.py has the figures). Pixel format, when not given: 4:2:0 (what
every player takes) when the output size is even in both directions, else 4:4:4, so an odd size
such as 161x121 is kept exactly instead of cropped; sources above 8 bits get 10 bits (yuv420p10le,
p010le for NVENC), 12-bit sources 12 bits where the codec has them (HEVC, FFV1). Options are
checked when the command line is parsed (ConfigError, exit 7).
"""
import dataclasses
import os

from ..errors import BackendError, ConfigError
from ..image_meta import captured_stderr

X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@dataclasses.dataclass(frozen=True)
class Codec:
    encoder: str  # FFmpeg's encoder name
    family: str  # the codec as muxers know it
    crf: tuple = None  # (option name, default, max) or None when the encoder has no CRF
    presets: tuple = ()  # accepted --preset values
    preset: str = None  # default preset
    formats: dict = None  # (depth, even size) -> pixel format
    notes: str = ""
    fixed: dict = None  # options always passed: the encoder's banner off stderr (the CLI's one-line policy), its mode


def _formats(p8_even, p8_odd, p10_even, p10_odd, p12_even=None, p12_odd=None):
    """(depth, even size) -> pixel format; depth 8, 10, or 12 where the encoder has it."""
    formats = {(8, True): p8_even, (8, False): p8_odd, (10, True): p10_even, (10, False): p10_odd}
    if p12_even:
        formats.update({(12, True): p12_even, (12, False): p12_odd})
    return formats


CODECS = {
    "h264": Codec("libx264", "h264", ("crf", 18, 51), X26X_PRESETS, "veryfast", _formats("yuv420p", "yuv444p", "yuv420p10le", "yuv444p10le")),
    "hevc": Codec("libx265", "hevc", ("crf", 20, 51), X26X_PRESETS, "veryfast",
                  _formats("yuv420p", "yuv444p", "yuv420p10le", "yuv444p10le", "yuv420p12le", "yuv444p12le"),
                  fixed={"x265-params": "log-level=error"}),
    "av1": Codec("libsvtav1", "av1", ("crf", 30, 63), tuple(str(i) for i in range(14)), "8", _formats("yuv420p", None, "yuv420p10le", None),
                 "SVT-AV1 takes 4:2:0 only: even sizes"),
    # libvpx-vp9 CRF 24, cpu-used 4, row-mt (640x360, AMD EPYC, 2 cores): luma PSNR 47.4 dB against the
    # frames before encoding (x264 CRF 18 veryfast: 46.2) at 0.9x its size, 2.3x faster than libvpx's default speed.
    "vp9": Codec("libvpx-vp9", "vp9", ("crf", 24, 63), (), None, _formats("yuv420p", "yuv444p", None, None),
                 "this FFmpeg's libvpx-vp9 is 8-bit only", fixed={"deadline": "good", "cpu-used": "4", "row-mt": "1"}),
    "prores": Codec("prores_ks", "prores", None, (), None, _formats("yuv422p10le", "yuv444p10le", "yuv422p10le", "yuv444p10le")),
    "ffv1": Codec("ffv1", "ffv1", None, (), None, _formats("yuv444p", "yuv444p", "yuv444p10le", "yuv444p10le", "yuv444p16le", "yuv444p16le")),
    "nvenc": Codec("h264_nvenc", "h264", ("cq", 19, 51), tuple(f"p{i}" for i in range(1, 8)), "p5", _formats("yuv420p", "yuv444p", "p010le", "yuv444p16le"),
                   "needs an NVIDIA GPU with NVENC"),
}


@dataclasses.dataclass(frozen=True)
class EncoderSettings:
    codec: str = "h264"
    crf: int = None
    preset: str = None
    pix_fmt: str = None
    options: tuple = ()  # (key, value) pairs passed to the encoder as they are (parse_encoder_options)

    def __post_init__(self):
        codec = CODECS.get(self.codec)
        if codec is None:
            raise ConfigError(f"--codec {self.codec}", "unknown codec", f"use one of {', '.join(CODECS)}")
        try:
            import av

            formats = {f.name for f in av.codec.Codec(codec.encoder, "w").video_formats or ()}
            supported = av.codec.context.CodecContext.create(codec.encoder, "w").supported_options
        except Exception:  # noqa: BLE001 -- any failure means: not in this FFmpeg build
            raise BackendError(f"--codec {self.codec}", f"this FFmpeg build has no {codec.encoder} encoder", "choose another --codec") from None
        known = {o.name for o in supported.generic} | {o.name for o in supported.private}
        for key, _ in self.options:  # FFmpeg would ignore an unknown one without a word
            if key not in known:
                raise ConfigError(f"--encoder-opt {key}", f"not an option of {codec.encoder}", f"see `ffmpeg -h encoder={codec.encoder}`")
        if self.crf is not None:
            if codec.crf is None:
                raise ConfigError(f"--crf {self.crf}", f"{self.codec} has no CRF", "leave --crf out, or pass --encoder-opt")
            if not 0 <= self.crf <= codec.crf[2]:
                raise ConfigError(f"--crf {self.crf}", f"out of range for {self.codec}", f"give 0 to {codec.crf[2]}; lower is better quality")
        if self.preset is not None and self.preset not in codec.presets:
            hint = f"use one of {', '.join(codec.presets)}" if codec.presets else "leave --preset out"
            raise ConfigError(f"--preset {self.preset}", f"not a preset of {self.codec}", hint)
        if self.pix_fmt is not None and self.pix_fmt not in formats:
            raise ConfigError(f"--pix-fmt {self.pix_fmt}", f"{codec.encoder} cannot encode this pixel format", f"use one of {', '.join(sorted(formats))}")

    @property
    def spec(self):
        return CODECS[self.codec]

    def pixel_format(self, width, height, bits):
        """The pixel format for a ``width`` x ``height`` output from a ``bits``-deep source."""
        if self.pix_fmt:
            import av

            chroma = [c for c in av.VideoFormat(self.pix_fmt, 2, 2).components if c.is_chroma]  # a 2x2 frame's chroma planes
            if chroma and ((chroma[0].width < 2 and width % 2) or (chroma[0].height < 2 and height % 2)):
                raise ConfigError(f"--pix-fmt {self.pix_fmt}", f"subsamples chroma: cannot hold {width}x{height} exactly", "use a 4:4:4 format such as yuv444p")
            return self.pix_fmt
        even = width % 2 == 0 and height % 2 == 0
        depth = 8 if bits <= 8 else 12 if bits > 10 and (12, even) in self.spec.formats else 10
        chosen = self.spec.formats[(depth, even)]
        if chosen is None:
            what = f"{width}x{height}" if depth == 8 else f"{width}x{height} at {depth} bits"
            raise ConfigError(f"--codec {self.codec}", f"cannot encode {what} ({self.spec.notes})", "choose another --codec, or a --pix-fmt it has")
        return chosen

    def encoder_options(self):
        options = dict(self.spec.fixed or {})
        if self.spec.crf is not None:
            name, default, _ = self.spec.crf
            options[name] = str(default if self.crf is None else self.crf)
        if self.spec.presets:
            options["preset"] = self.preset or self.spec.preset
        options.update(dict(self.options))
        return options


def parse_encoder_options(pairs):
    """``--encoder-opt KEY=VALUE`` strings -> ((key, value), ...); ConfigError for a malformed one."""
    parsed = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--encoder-opt {pair}", "not KEY=VALUE", "e.g. --encoder-opt tune=film")
        parsed.append((key.strip(), value))
    return tuple(parsed)


def add_video_stream(container, settings, info):
    """Add the encoded video stream for ``info`` (output size, time base, colour, rotation)."""
    import av

    pix_fmt = settings.pixel_format(info.width, info.height, info.bits)
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration to stderr unless told: errors only
    options = settings.encoder_options()
    if container.format.name == "avi":  # AVI stores no presentation times: no frame reordering
        options.setdefault("bf", "0")
    try:
        stream = container.add_stream(settings.spec.encoder, rate=info.rate, options=options)
    except (av.FFmpegError, ValueError) as e:
        raise BackendError(f"--codec {settings.codec}", f"cannot start {settings.spec.encoder} ({e})", settings.spec.notes or "choose another --codec") from None
    _configure(stream.codec_context, info, pix_fmt)
    stream.time_base = info.time_base
    if info.rotation:
        stream.set_display_rotation(info.rotation)
    # Opened now, not at the first frame on the encode thread: NVENC without a GPU is a one-line
    # exit 6. What the encoder prints on failure (SVT-AV1 does) goes into that line, not on stderr.
    with captured_stderr() as messages:
        try:
            stream.codec_context.open()
            return stream
        except av.FFmpegError as e:
            failure = e
    said = "; ".join(line.strip() for line in "".join(messages).splitlines() if line.strip())
    reason = said or getattr(failure, "strerror", None) or failure
    if settings.options and _opens(dataclasses.replace(settings, options=()), info, pix_fmt):  # the user's values are at fault
        given = " ".join(f"{key}={value}" for key, value in settings.options)
        raise ConfigError(f"--encoder-opt {given}", f"{settings.spec.encoder} refuses these values ({reason})",
                          f"see `ffmpeg -h encoder={settings.spec.encoder}`")
    if min(info.width, info.height) < SMALL and _opens(settings, dataclasses.replace(info, width=SMALL, height=SMALL), pix_fmt):
        raise ConfigError(f"--codec {settings.codec}", f"{settings.spec.encoder} cannot encode {info.width}x{info.height} frames ({reason})",
                          "use --codec h264 for frames this small")
    raise BackendError(f"--codec {settings.codec}", f"cannot start {settings.spec.encoder} ({reason})",
                       settings.spec.notes or "check the --encoder-opt values")


SMALL = 64  # a frame size every encoder here opens for: a failure below it is the size's


def _opens(settings, info, pix_fmt):
    """Whether an encoder with ``settings`` opens for ``info`` (to tell a bad option value from a missing encoder)."""
    import av

    ctx = av.CodecContext.create(settings.spec.encoder, "w")
    ctx.options = settings.encoder_options()
    _configure(ctx, info, pix_fmt)
    ctx.framerate = info.rate
    try:
        with captured_stderr():
            ctx.open()
        return True
    except av.FFmpegError:
        return False


def open_encoder(settings, info, global_header):
    """A standalone, opened encoder for ``info``, for a stream copied from elsewhere (resume.py).
    ``global_header``: parameter sets in extradata, not in the stream (what MP4/Matroska hold)."""
    import av

    ctx = av.CodecContext.create(settings.spec.encoder, "w")
    ctx.options = settings.encoder_options()
    _configure(ctx, info, settings.pixel_format(info.width, info.height, info.bits))
    ctx.framerate = info.rate
    if global_header:
        ctx.flags |= av.codec.context.Flags.global_header
    ctx.open()
    return ctx


def _configure(ctx, info, pix_fmt):
    ctx.width, ctx.height, ctx.pix_fmt = info.width, info.height, pix_fmt
    ctx.time_base = info.time_base
    for field, value in info.colour.items():
        if value:
            setattr(ctx, field, value)


def encode_frame(ctx, image, pts, info):
    """The av.VideoFrame for an RGB ``image`` (uint8 or uint16) in the encoder ``ctx``'s pixel format,
    converted with the source's matrix and range and tagged with its colour metadata."""
    import av
    import numpy as np

    if image.dtype != np.uint8 and image.dtype != np.uint16:  # float [0, 1] from the Python API
        image = np.rint(np.clip(image, 0, 1) * 65535).astype(np.uint16)
    if image.ndim == 3 and image.shape[2] == 2:  # gray+alpha frames: the video is opaque (jobs.py says so)
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = np.ascontiguousarray(image[..., :3])
    rgb = av.VideoFrame.from_ndarray(image, format="rgb48le" if image.dtype == np.uint16 else "rgb24")
    colour = info.colour
    # Tagged on the RGB side too: swscale would otherwise convert between gamuts/transfers
    # (unspecified -> BT.2020 PQ darkened a 10-bit HDR frame); only the matrix and range change.
    for field in ("color_primaries", "color_trc"):
        if colour.get(field):
            setattr(rgb, field, colour[field])
    frame = rgb.reformat(format=ctx.pix_fmt, dst_colorspace=colour.get("colorspace") or None,
                         dst_color_range=colour.get("color_range") or None)
    frame.pts = pts
    frame.time_base = info.time_base
    return frame
