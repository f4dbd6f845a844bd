"""Video and streams on FFmpeg through PyAV: one file per concern.

- ``sources``: files, ``-`` (stdin/stdout), URLs, capture devices; which are live
- ``probe``: the stream header (size, depth, timestamps, colour, rotation) and the pixel limit
- ``decode``: the decode thread and its bounded queue (live mode: timestamp pacing, drops)
- ``encode``: codec choice, CRF/preset/pixel format, RGB -> YUV with the source's colour
- ``mux``: the encode thread, streams copied from the source, atomic finals and partials
- ``resume``: continue an interrupted video from the complete GOPs of its partial output
- ``jobs``: video -> video, video -> frames, frames -> video with progress

Frames flow decode thread -> bounded queue -> restorer (caller's thread) -> bounded queue ->
encode thread; PyAV is imported only when a video is opened.
"""
from .decode import Frame, TruncatedVideo, VideoReader
from .encode import CODECS, EncoderSettings, parse_encoder_options
from .jobs import restore_folder_to_video, restore_frames, restore_video, restore_video_to_frames
from .mux import AUDIO_MODES, VideoWriter, check_container
from .probe import VideoInfo
from .queues import prefetched
from .sources import STDIO, is_live, is_stream, is_video, output_format

__all__ = ["AUDIO_MODES", "CODECS", "EncoderSettings", "Frame", "STDIO", "TruncatedVideo", "VideoInfo", "VideoReader", "VideoWriter",
           "check_container", "is_live", "is_stream", "is_video", "output_format", "parse_encoder_options", "prefetched",
           "restore_folder_to_video", "restore_frames", "restore_video", "restore_video_to_frames"]
