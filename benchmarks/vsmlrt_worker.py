"""Runs inside the vs-mlrt venv (Python >= 3.12, VapourSynth + vapoursynth-mlrt-ort; restore is
not installed there): times vs-mlrt's ONNX Runtime plugin on frames given as a .npy file.

    python vsmlrt_worker.py FRAMES.npy MODEL.onnx OUT.npy THREADS STREAMS REPEATS

FRAMES.npy: (N, 3, H, W) float32 RGB in [0, 1]. The clip plays the N frames REPEATS + 1 times
(VapourSynth caches frames it has produced, so every timed frame is a new frame number); the
first pass is the warm-up (session creation). Prints one JSON line; OUT.npy gets the first pass's
outputs.
"""
import json
import sys
import time

import numpy as np
import vapoursynth as vs

TILE, OVERLAP = 256, 16  # vs-mlrt's tilesize is the network's input; overlap is cropped off each side


def main(frames_path, model_path, out_path, threads, streams, repeats):
    frames = np.load(frames_path)
    n, _, height, width = frames.shape
    core = vs.core
    core.num_threads = threads
    blank = core.std.BlankClip(format=vs.RGBS, width=width, height=height, length=n * (repeats + 1), keep=False)

    def fill(number, f):
        out = f.copy()
        for plane in range(3):
            np.asarray(out[plane])[:] = frames[number % n, plane]
        return out

    clip = core.std.ModifyFrame(blank, blank, fill)
    clip = core.ort.Model(clip, network_path=model_path, overlap=[OVERLAP, OVERLAP], tilesize=[TILE, TILE],
                          provider="CPU", num_streams=streams)
    outputs = []
    start = time.perf_counter()
    for number, frame in enumerate(clip.frames()):
        if number < n:
            outputs.append(np.stack([np.asarray(frame[p]) for p in range(3)]))
        if number == n - 1:
            start = time.perf_counter()  # the warm-up pass is over
    seconds = time.perf_counter() - start
    np.save(out_path, np.stack(outputs))
    print(json.dumps({"ms_per_frame": seconds * 1e3 / (n * repeats), "frames_timed": n * repeats,
                      "ort_plugin": {k: str(v) for k, v in core.ort.Version().items() if k != "path"},
                      "vapoursynth": str(core.core_version) if hasattr(core, "core_version") else vs.__version__}))


if __name__ == "__main__":
    frames_path, model_path, out_path, threads, streams, repeats = sys.argv[1:7]
    main(frames_path, model_path, out_path, int(threads), int(streams), int(repeats))
