"""Cut a video into keyframe-aligned pieces and join restored pieces back, both by stream copy.

For the cluster runner (runtime/cluster.py): every piece starts at a keyframe, so it decodes on
its own and can be restored by any worker with ``restore_video``. Pieces are MP4 where it holds the codec
(it keeps the time base and the decode timestamps), MKV otherwise. A piece's container can move
its timestamps a little (MP4's edit list counts in 1/1000 s, MKV's clock is 1/1000 s), so the
cut records the source's own timestamps and the join puts them back, frame for frame: the joined
video has exactly the source's presentation times. Decode timestamps move with their piece; the
encoder's decode delay is the same in every piece, so they stay increasing across a join. The other streams (audio, subtitles, metadata, chapters) are copied once, from the
source, with the same stream policy as a local run (``mux.plan_streams``); rotation travels in
the video stream's own parameters, which stream copy keeps.
"""
import dataclasses
import heapq
import os
from pathlib import Path

from ..atomic import atomic_path
from ..errors import InputError, OutputError
from .mux import copy_container_info, plan_streams, supported_codecs
from .probe import count_video_packets, video_stream
from .sources import output_format


@dataclasses.dataclass
class Segment:
    path: Path
    pts: list  # the source's timestamps of its frames, in presentation order

    @property
    def frames(self):
        return len(self.pts)


def piece_suffix(codec_name):
    """.mp4 where MP4 holds ``codec_name`` (time base and decode timestamps kept), else .mkv."""
    return ".mp4" if codec_name in supported_codecs("mp4") else ".mkv"


def cut_at_keyframes(src, folder, min_frames):
    """Copy the video stream of ``src`` into ``folder``/cut-NNNN.EXT pieces of at least
    ``min_frames`` frames, each starting at a keyframe; returns the Segments in order."""
    import av

    folder = Path(folder)
    segments, out, count = [], None, 0
    with av.open(str(src)) as container:
        stream = video_stream(container, src)
        suffix = piece_suffix(stream.codec_context.name)

        def close():
            out.close()
            os.replace(tmp, segments[-1].path)  # a piece that exists is whole
            segments[-1].pts.sort()

        for packet in container.demux(stream):
            if not packet.size:
                continue
            if packet.pts is None:
                raise InputError(src, "the video has frames without timestamps", "cannot be cut into segments; run it without --cluster")
            if out is None and not packet.is_keyframe:
                raise InputError(src, "the video does not start with a keyframe", "cannot be cut into segments; run it without --cluster")
            if out is None or (packet.is_keyframe and count >= min_frames):
                if out is not None:
                    close()
                path = folder / f"cut-{len(segments):04d}{suffix}"
                tmp = path.with_name(f".{path.stem}.partial{suffix}")
                out = av.open(str(tmp), "w")
                copy = out.add_stream_from_template(stream)
                copy.time_base = stream.time_base
                segments.append(Segment(path, []))
                count = 0
            segments[-1].pts.append(packet.pts)
            packet.stream = copy
            out.mux(packet)
            count += 1
        if out is None:
            raise InputError(src, "no video frames to cut", "check the file or remove it")
        close()
    return segments


def _packet_time(packet):
    stamp = packet.dts if packet.dts is not None else packet.pts
    return float((stamp or 0) * packet.time_base)


def join_pieces(source, pieces, dst, audio="copy"):
    """Remux the restored ``pieces`` ((path, Segment it was restored from), in order) into
    ``dst``, atomically, with the streams of ``source`` copied once (``audio``: copy/none/aac,
    as for a local run). Returns ``dst``."""
    import av

    dst = Path(dst)
    frames = sum(segment.frames for _, segment in pieces)
    with av.open(str(source)) as src, av.open(str(pieces[0][0])) as first:
        src_video = video_stream(src, source)
        with atomic_path(dst) as tmp:
            with av.open(str(tmp), "w", format=output_format(dst)) as out:
                video = out.add_stream_from_template(video_stream(first, pieces[0][0]))
                video.time_base = src_video.time_base
                routes = plan_streams(src, out, audio, src_video.index, source)
                copy_container_info(src, out)
                copied = (p for p in src.demux([r.source for r in routes.values()]) if p.size) if routes else iter(())
                restored = _video_packets(pieces, src_video.time_base)
                for packet in heapq.merge(restored, copied, key=_packet_time):
                    if packet.stream.type == "video":
                        packet.stream = video
                        out.mux(packet)
                        continue
                    out.mux(routes[packet.stream.index].packets(packet))
                for route in routes.values():
                    out.mux(route.flush())
            written = count_video_packets(tmp)
            if written != frames:
                raise OutputError(dst, f"the joined video holds {written} of the {frames} restored frames", "run again (with --resume)")
    return dst


def _video_packets(pieces, time_base):
    """The pieces' video packets in order, re-stamped with the source's timestamps."""
    import av

    for path, segment in pieces:
        with av.open(str(path)) as container:
            stream = video_stream(container, path)
            stamps = sorted(p.pts for p in container.demux(stream) if p.size)
            if len(stamps) != segment.frames:
                raise OutputError(path, f"the restored piece holds {len(stamps)} of its {segment.frames} frames", "run again (with --resume)")
            to_source = dict(zip(stamps, segment.pts))
            scale = stream.time_base / time_base
            shift = segment.pts[0] - round(stamps[0] * scale)
        with av.open(str(path)) as container:
            for packet in container.demux(container.streams.video[0]):
                if not packet.size:
                    continue
                pts = to_source[packet.pts]
                dts = None if packet.dts is None else min(pts, round(packet.dts * scale) + shift)
                packet.time_base = time_base
                packet.pts, packet.dts = pts, dts
                yield packet
