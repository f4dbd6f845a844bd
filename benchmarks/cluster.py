"""Scale-out benchmark: ``restore run --cluster`` with 1 and 2 workers against a plain local run.

    python -m restore.benchmarks.cluster [--images 8] [--size 640x480] [--frames 48] [--out benchmarks/results/cluster.json]

A one-node Ray cluster is started here (``ray start --head`` on 127.0.0.1 with as many CPUs as
the machine has: runtime/testing.py's ``loopback_ray_cluster``) and every run is a real ``restore run`` process, so each figure includes what a user
waits for: start-up, connecting, the workers loading the model, cutting and joining. Inputs: a
folder of photo-like images and a 720p H.264 clip (keyframe every 12 frames); the model is a small
conv net (runtime/testing.py), so the figures measure the runtime's own costs, not a big model.

Reported, for the images and for the clip:
- wall seconds of a local run and of cluster runs with 1 and 2 workers; the 2-vs-1 throughput ratio;
- fixed cost of the cluster path: a one-image cluster run minus a one-image local run;
- per-job overhead: the extra seconds per job of the 1-worker cluster run over the local run,
  with the fixed cost taken out;
- 32 no-op jobs on two workers, start included, through Ray Data's ``map_batches`` (class actor
  pool, batch of one) and through plain actor calls, each in its own Ray session: why
  runtime/cluster.py uses actors. ``--only runs|dispatch`` redoes one part.
"""
import argparse
import datetime
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from restore.runtime.atomic import atomic_write_text

from .media import cpu_model

RESULTS = Path(__file__).parent / "results"


def _restore(*args, env):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "restore.runtime", *map(str, args), "-q"], env=env, check=True, capture_output=True, timeout=1800)
    return round(time.perf_counter() - start, 2)


def _inputs(folder, images, size, frames):
    import cv2

    from restore.runtime.testing import write_test_video

    from .harness import synthetic_frame

    w, h = size
    pictures = folder / "images"
    pictures.mkdir()
    for i in range(images):
        cv2.imwrite(str(pictures / f"im{i:03d}.png"), np.roll(synthetic_frame(w, h), 7 * i, axis=1))
    one = folder / "one"
    one.mkdir()
    cv2.imwrite(str(one / "im.png"), synthetic_frame(w, h))
    clip = write_test_video(folder / "clip.mp4", frames=frames, size=(1280, 720), fps=24, audio="aac", options={"g": "12"})
    return pictures, one, clip


def _dispatch_costs(jobs=32):
    """Seconds for ``jobs`` no-op jobs on two workers, start included, through plain actor calls
    and through Ray Data's map_batches (class actor pool, batch of one), each in its own session."""
    import ray

    class Noop:
        def __call__(self, batch):
            return batch

        def run(self, item):
            return item

    def session(measure):
        ray.init(num_cpus=2, logging_level="ERROR", log_to_driver=False, include_dashboard=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            start = time.perf_counter()
            measure()
            return round(time.perf_counter() - start, 3)
        finally:
            ray.shutdown()

    def actors():
        pool = [ray.remote(Noop).options(num_cpus=1).remote() for _ in range(2)]
        ray.get([pool[i % 2].run.remote(i) for i in range(jobs)])

    def data():
        ray.data.from_items([{"i": i} for i in range(jobs)]).map_batches(
            Noop, batch_size=1, compute=ray.data.ActorPoolStrategy(size=2), num_cpus=1).take_all()

    return {"jobs": jobs, "workers": 2, "plain_actors_s": session(actors), "ray_data_map_batches_s": session(data)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--out", type=Path, default=RESULTS / "cluster.json")
    parser.add_argument("--only", choices=["runs", "dispatch"], help="redo one part, keeping the other's figures in --out")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    os.environ.update({k: env[k] for k in ("RAY_USAGE_STATS_ENABLED", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")})
    result = {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average_at_start": os.getloadavg(),
              "date": datetime.date.today().isoformat(), "command": "python -m restore.benchmarks.cluster", "image_inputs": f"{args.images} x {args.size} PNG", "clip_input": f"{args.frames} frames 1280x720 H.264 + AAC, keyframe every 12",
              "model": "tiny conv (3 layers, width 16; runtime/testing.py), ONNX Runtime CPU"}
    if args.only:
        result = {**json.loads(args.out.read_text()), **result}
    if args.only != "dispatch":
        result.update(_runs(args, size, env))
    if args.only != "runs":
        result["dispatch"] = _dispatch_costs()
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")


def _runs(args, size, env):
    from restore.runtime.testing import loopback_ray_cluster, write_conv_artifact

    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = write_conv_artifact(tmp / "model", layers=3, width=16, tile=128, overlap=16)
        pictures, one, clip = _inputs(tmp, args.images, size, args.frames)
        with loopback_ray_cluster(nodes=1, cpus_per_node=os.cpu_count(), env=env, object_store_bytes=200_000_000) as address:
            for name, src in (("images", pictures), ("clip", clip)):
                out = tmp / f"out-{name}"
                row = {"local_s": _restore("run", src, "-o", out / "local", "--model", model, env=env)}
                for workers in (1, 2):
                    row[f"cluster_{workers}_workers_s"] = _restore("run", src, "-o", out / f"c{workers}", "--model", model, "--cluster", address,
                                                                   "--workers", workers, env=env)
                row["throughput_2_vs_1_workers"] = round(row["cluster_1_workers_s"] / row["cluster_2_workers_s"], 2)
                result[name] = row
                print(name, json.dumps(row), flush=True)
            fixed = _restore("run", one, "-o", tmp / "one-c", "--model", model, "--cluster", address, "--workers", 1, env=env)
            local_one = _restore("run", one, "-o", tmp / "one-l", "--model", model, env=env)
            images = result["images"]
            result["one_image_s"] = {"local": local_one, "cluster_1_worker": fixed}
            result["fixed_cost_s"] = round(fixed - local_one, 2)
            result["per_image_overhead_s"] = round((images["cluster_1_workers_s"] - fixed - (images["local_s"] - local_one)) / (args.images - 1), 3)
    return result


if __name__ == "__main__":
    main()
