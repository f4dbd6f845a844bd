"""Continue an interrupted video from its ``NAME.partial.EXT`` (``restore run --resume``).

The partial's video packets up to its last keyframe are copied into the new output unchanged
(complete GOPs: restored frames are not restored again, nor re-encoded); the source is restored
from that frame on. Copied packets and newly encoded ones share one stream, so this is done only
when the new encoder's parameter sets are byte-identical to the partial's (same codec, settings,
size and depth) and the partial's first frame matches this run's restored first frame (so a
partial of another clip, or from another model, is not continued); otherwise the video is
restored from the start, with a notice.
"""
from .probe import video_stream

MATCH_PSNR_DB = 35.0  # luma; a CRF 18 encode of the same frame is above 40 dB, another model's or clip's far below


class Reuse:
    """The reusable head of a partial output: ``frames`` video packets in decode order."""

    def __init__(self, path):
        import av

        self.path = path
        self.frames, self.start_time = 0, None  # packets before the last keyframe; the first's time
        with av.open(str(path)) as container:
            packets = (p for p in container.demux(video_stream(container, path)) if p.size)
            for i, packet in enumerate(packets):
                if self.start_time is None:  # the first keyframe, shown first
                    self.start_time = packet.pts * packet.time_base
                if packet.is_keyframe:
                    self.frames = i
        self.container = av.open(str(path))
        self.stream = video_stream(self.container, path)
        self._packets = (p for p in self.container.demux(self.stream) if p.size)
        self._shift = 0  # seconds to take off reused timestamps (set by align)
        # MP4 and Matroska hold H.264 as length-prefixed units (avcC); encoders give Annex B
        self.length_prefixed = bytes(self.stream.codec_context.extradata or b"")[:1] == b"\x01"

    def shows(self, first, min_psnr=MATCH_PSNR_DB):
        """Whether the partial's first frame is ``first`` (this run's restored first frame) up to
        encoding loss: a partial from another source or model is not continued."""
        import av
        import numpy as np

        with av.open(str(self.path)) as container:
            frame = next(container.decode(video_stream(container, self.path)))
            shown = frame.to_ndarray(format="rgb48le" if first.dtype == np.uint16 else "rgb24")
        if shown.shape[:2] != first.shape[:2]:
            return False
        top = 65535.0 if first.dtype == np.uint16 else 255.0
        expected = first[..., :3] if first.ndim == 3 else np.repeat(first[..., None], 3, axis=2)
        luma = np.array([0.299, 0.587, 0.114])  # luma: 4:2:0 chroma loss would blur the verdict
        mse = np.mean((shown.astype(np.float64) @ luma - expected.astype(np.float64) @ luma) ** 2)
        return mse == 0 or 10 * np.log10(top**2 / mse) >= min_psnr

    def align(self, source_start):
        """Match the partial's timeline to the source's: Matroska and MPEG-TS muxers shift all
        streams to avoid negative times (an AAC encoder delay), and would shift again."""
        self._shift = self.start_time - source_start

    def next_packet(self):
        packet = next(self._packets)
        if self._shift:
            ticks = round(self._shift / packet.time_base)
            packet.pts -= ticks
            if packet.dts is not None:
                packet.dts -= ticks
        return packet

    def in_stream_layout(self, packet):
        """A new encoder's packet in this stream's layout (start codes -> 4-byte lengths if need be)."""
        if not self.length_prefixed:
            return packet
        import av

        data = bytes(packet)
        units = [u for u in data.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01").split(b"\x00\x00\x01") if u]
        out = av.Packet(b"".join(len(u).to_bytes(4, "big") + u for u in units))
        out.pts, out.dts, out.duration, out.time_base = packet.pts, packet.dts, packet.duration, packet.time_base
        out.is_keyframe = packet.is_keyframe
        return out

    def matches(self, ctx):
        """Whether packets of this partial can continue in a stream encoded by ``ctx`` (opened)."""
        mine = self.stream.codec_context
        sets = _parameter_sets(mine.extradata)
        return (mine.width, mine.height) == (ctx.width, ctx.height) and sets is not None and sets == _parameter_sets(ctx.extradata)

    def close(self):
        self.container.close()


def _parameter_sets(extradata):
    """H.264 parameter sets as Annex B bytes, whether stored that way (an encoder's) or as an avcC
    record (MP4/Matroska's). Other layouts (HEVC's hvcC) do not compare equal: no resume there."""
    data = bytes(extradata or b"")
    if data.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01")):
        return data.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01")
    if len(data) < 7 or data[0] != 1:  # not avcC
        return None
    units, i = [], 6

    def take(count, i):
        for _ in range(count):
            size = int.from_bytes(data[i : i + 2], "big")
            units.append(data[i + 2 : i + 2 + size])
            i += 2 + size
        return i

    i = take(data[5] & 0x1F, i)  # sequence parameter sets
    take(data[i], i + 1)  # picture parameter sets
    return b"".join(b"\x00\x00\x01" + unit for unit in units)
