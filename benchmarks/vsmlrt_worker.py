"""Runs inside the vs-mlrt venv (Python >= 3.12, VapourSynth + vapoursynth-mlrt-ort and -ov; restore
is not installed there): times vs-mlrt's ONNX Runtime or OpenVINO plugin on frames given as a .npy file.

    python vsmlrt_worker.py FRAMES.npy MODEL.onnx OUT.npy THREADS STREAMS REPEATS [ort|ov [fp32|bf16]]

ov: vs-mlrt's OpenVINO plugin (``core.ov.Model``, device CPU) with the precision set through its
``config`` (OpenVINO's own default on a CPU with AMX would be bf16).

FRAMES.npy: (N, 3, H, W) float32 RGB in [0, 1]. The clip is one warm-up frame (session creation),
then the N frames REPEATS times (VapourSynth caches frames it has produced, so every timed frame
is a new frame number). Prints one JSON line; OUT.npy gets the first timed pass's outputs.
"""
import json
import sys
import time

import numpy as np
import vapoursynth as vs

TILE, OVERLAP = 256, 16  # vs-mlrt's tilesize is the network's input; overlap is cropped off each side


def main(frames_path, model_path, out_path, threads, streams, repeats, plugin="ort", precision="fp32"):
    frames = np.load(frames_path)
    n, _, height, width = frames.shape
    core = vs.core
    core.num_threads = threads
    blank = core.std.BlankClip(format=vs.RGBS, width=width, height=height, length=1 + n * repeats, keep=False)

    def fill(n, f):  # ModifyFrame passes these by name
        out = f.copy()
        for plane in range(3):
            np.asarray(out[plane])[:] = frames[max(n - 1, 0) % len(frames), plane]
        return out

    clip = core.std.ModifyFrame(blank, blank, fill)
    tiling = {"network_path": model_path, "overlap": [OVERLAP, OVERLAP], "tilesize": [TILE, TILE], "num_streams": streams}
    if plugin == "ov":
        hint = {"fp32": "f32", "bf16": "bf16"}[precision]
        clip = core.ov.Model(clip, device="CPU", config=lambda: {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads}, **tiling)
    else:
        clip = core.ort.Model(clip, provider="CPU", **tiling)
    clip.get_frame(0)  # warm-up, alone, before any timed frame is requested
    outputs = []
    start = time.perf_counter()
    for number, frame in enumerate(clip.frames()):
        if 1 <= number <= n:
            outputs.append(np.stack([np.asarray(frame[p]).copy() for p in range(3)]))
    seconds = time.perf_counter() - start
    np.save(out_path, np.stack(outputs))
    print(json.dumps({"ms_per_frame": seconds * 1e3 / (n * repeats), "frames_timed": n * repeats,
                      f"{plugin}_plugin": {k: str(v) for k, v in getattr(core, plugin).Version().items() if k != "path"},
                      "vapoursynth": str(vs.__version__), "python": sys.version.split()[0]}))


if __name__ == "__main__":
    frames_path, model_path, out_path, threads, streams, repeats = sys.argv[1:7]
    main(frames_path, model_path, out_path, int(threads), int(streams), int(repeats), *sys.argv[7:9])
