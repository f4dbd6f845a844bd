"""NVENC encode and NVDEC decode through PyAV (FFmpeg's h264_nvenc and h264_cuvid), frames/s.

    python -m restore.benchmarks.gpu_video --out PATH.json [--size 1920x1080] [--frames 120] [--cpu]

Encodes a short generated clip (moving synthetic frames) with h264_nvenc into a scratch file,
decodes it with h264_cuvid, and reports frames/s of each and whether every frame came back.
``--cpu`` (the GPU script's dry run) uses libx264 and FFmpeg's software h264 decoder instead.
Where PyAV does not import (it is not in the GPU machine's image, and its 34 MiB wheel does not fit
the device call's carry beside the tree), the JSON says so instead of figures.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from restore.runtime.atomic import atomic_write_text

from .harness import parse_size, synthetic_frame

CODECS = {False: ("h264_nvenc", "h264_cuvid"), True: ("libx264", "h264")}


def encode_decode(size, frames, cpu):
    import av

    encoder, decoder = CODECS[cpu]
    width, height = size
    frame = synthetic_frame(width, height)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        start = time.perf_counter()
        with av.open(str(path), "w") as container:
            stream = container.add_stream(encoder, rate=30)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for i in range(frames):
                image = av.VideoFrame.from_ndarray(np.roll(frame, 4 * i, axis=1), format="rgb24")
                container.mux(stream.encode(image))
            container.mux(stream.encode())
        encode_s = time.perf_counter() - start
        start = time.perf_counter()
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            context = av.CodecContext.create(decoder, "r")
            context.extradata = stream.codec_context.extradata
            decoded = sum(len(context.decode(packet)) for packet in container.demux(stream))  # demux ends with the flushing packet
        decode_s = time.perf_counter() - start
    return {"size": f"{width}x{height}", "frames": frames, "encoder": encoder, "decoder": decoder,
            "encode_fps": frames / encode_s, "decode_fps": decoded / decode_s, "decoded_frames": decoded,
            "all_frames_back": decoded == frames, "pyav": av.__version__}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON path")
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--cpu", action="store_true", help="software codecs (dry run)")
    args = parser.parse_args(argv)
    try:
        import av  # noqa: F401
    except ImportError as e:
        result = {"skipped": f"PyAV does not import here ({e}): NVENC/NVDEC not tried"}
    else:
        try:
            result = encode_decode(parse_size(args.size), args.frames, args.cpu)
        except Exception as e:  # e.g. no NVENC session on this GPU: recorded, the script goes on
            result = {"error": f"{type(e).__name__}: {e}"}
    atomic_write_text(args.out, json.dumps(result, indent=1))
    print(json.dumps(result))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
