"""Seams and CPU throughput of tiled inference with the Fourier model.

    python -m restore.benchmarks.tiling_seams [--model default|PATH] [--backend onnxruntime]

The Fourier bottleneck gives every output pixel a global receptive field, so tiles cannot
reproduce the whole-image result exactly; the feathered overlap has to hide the difference.
For overlaps 0 (hard tiles), 16, 32 and 64 this restores scikit-image's astronaut enlarged to
1024 x 768 and reports ``seam_ratio`` (runtime/tiler.py) of the residual (output - input): gradient
energy on the tile boundary lines over the energy elsewhere, ~1 without seams. The residual takes
the photo's own edges out of the measure. It also reports megapixels/s at the artifact's overlap.
The model defaults to the shipped one, else a random-init fourier-unet exported with
restore-export (see benchmarks/skip_sharp.py). Results: benchmarks/results/tiling_seams.json.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from restore.runtime.atomic import atomic_write_text

from .skip_sharp import fallback_model

RESULTS = Path(__file__).parent / "results" / "tiling_seams.json"
OVERLAPS = (0, 16, 32, 64)


def run(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args(argv)

    from restore.runtime import Restorer
    from restore.runtime.artifact import DEFAULT_MODEL_DIR
    from restore.runtime.tiler import seam_ratio

    model = args.model
    if model == "default" and not (DEFAULT_MODEL_DIR / "metadata.json").exists() and not any(DEFAULT_MODEL_DIR.glob("*.safetensors")):
        work = args.work or Path(tempfile.mkdtemp(prefix="restore-seams-"))
        work.mkdir(parents=True, exist_ok=True)
        model = fallback_model(work)
    import cv2
    from skimage import data

    # One photo without internal edges (a mosaic's joins would fall on tile lines), enlarged so
    # that it spans several tiles; smooth areas make any seam in the residual stand out.
    image = cv2.resize(data.astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC)[:768]
    seams = {}
    with Restorer(model, backend=args.backend) as restorer:
        tile = restorer.tiler.tile
        for overlap in OVERLAPS:
            with Restorer(model, backend=args.backend, overlap=overlap) as r:
                out = r.restore(image)
            residual = out.astype(np.float32) - image.astype(np.float32)
            seams[overlap] = {"residual": round(seam_ratio(residual, tile, overlap), 3), "output": round(seam_ratio(out, tile, overlap), 3)}
            print(f"overlap {overlap}: seam ratio residual {seams[overlap]['residual']}, output {seams[overlap]['output']}", flush=True)
        restorer.restore(image[:64, :64])  # warm-up
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            restorer.restore(image)
            best = min(best, time.perf_counter() - start)
        result = {
            "model": restorer.source.describe(),
            "runtime": restorer.description,
            "image": "1024x768 RGB: skimage astronaut enlarged 2x (bicubic), top 768 rows",
            "seam_ratio_by_overlap": seams,
            "seconds": round(best, 2),
            "megapixels_per_second": round(image.shape[0] * image.shape[1] / 1e6 / best, 3),
            "command": "python -m restore.benchmarks.tiling_seams " + " ".join(argv or sys.argv[1:]),
        }
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    run()
