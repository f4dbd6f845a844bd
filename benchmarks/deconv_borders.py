"""How much fourier-unet's deconvolution front end owes to reflected borders.

    python -m restore.benchmarks.deconv_borders CHECKPOINT [--crops 12] [--size 256]

The holdout blurs each crop with reflected borders (three of its four pictures are exactly one
512 x 512 crop), which the front end's mirrored Wiener filter models exactly; in a photo the scene
goes on beyond the frame. On crops of the *training* pictures (never the holdout), each blurred
twice with the same kernel and noise -- inside a window with 48 px of the picture's real
neighbours, and on the crop alone with reflected borders -- this reports PSNR of the input, of the
model, and of the front end's own Wiener estimate with its estimated kernel and with the true one,
per border kind and blur kind. Results go to benchmarks/results/deconv_borders.json.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch

from restore.runtime.atomic import atomic_write_text

RESULTS = Path(__file__).parent / "results" / "deconv_borders.json"
MARGIN = 48
SEED = 20261123


def measure(checkpoint, crops=12, size=256):
    from restore.trainer.checkpoint import model_from_checkpoint
    from restore.trainer.datasets import builtin_images
    from restore.trainer.degradations import apply_kernel, centred_kernel, gaussian_kernel, linear_motion_kernel
    from restore.trainer.inference import restore_array
    from restore.trainer.metrics import psnr
    from restore.trainer.models.deconv import wiener

    model = model_from_checkpoint(checkpoint).eval()
    if getattr(model, "deconv", None) is None:
        raise SystemExit(f"{checkpoint}: the model has no deconvolution front end")
    images = [(n, im) for n, im in builtin_images("train") if min(im.shape[:2]) >= size + 2 * MARGIN]
    rng = np.random.default_rng(SEED)
    rows = []
    for i in range(crops):
        name, image = images[i % len(images)]
        y = int(rng.integers(MARGIN, image.shape[0] - size - MARGIN + 1))
        x = int(rng.integers(MARGIN, image.shape[1] - size - MARGIN + 1))
        gt = np.ascontiguousarray(image[y:y + size, x:x + size], np.float32)
        motion = i % 2 == 0
        kernel = linear_motion_kernel(rng.uniform(5, 25), rng.uniform(0, 180)) if motion else gaussian_kernel(rng.uniform(1, 3))
        noise = rng.normal(0, 0.01, gt.shape).astype(np.float32)
        window = image[y - MARGIN:y + size + MARGIN, x - MARGIN:x + size + MARGIN].astype(np.float32)
        blurred = {"neighbours": apply_kernel(window, kernel)[MARGIN:-MARGIN, MARGIN:-MARGIN], "reflected": apply_kernel(gt, kernel)}
        for borders, b in blurred.items():
            lq = np.clip(np.clip(b, 0, 1) + noise, 0, 1)
            t = torch.from_numpy(lq.transpose(2, 0, 1).copy())[None]
            with torch.no_grad():
                lams = model.deconv.log_lams.exp()
                true_k = torch.from_numpy(centred_kernel(kernel, model.deconv.estimator.kernel_size))[None]
                estimator = model.deconv.estimator
                est = wiener(t, estimator.kernel(estimator(t)), lams).clamp(0, 1)
                oracle = wiener(t, true_k, lams).clamp(0, 1)
            best = {key: max(psnr(v[0, 3 * j:3 * j + 3].permute(1, 2, 0).numpy(), gt) for j in range(len(lams)))
                    for key, v in (("wiener_estimated_kernel", est), ("wiener_true_kernel", oracle))}
            rows.append({"crop": f"{name}_{i}", "blur": "motion" if motion else "gaussian", "borders": borders,
                         "input": psnr(lq, gt), "model": psnr(restore_array(model, lq), gt), **best})
            print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in rows[-1].items()}), flush=True)
    summary = {}
    for borders in ("neighbours", "reflected"):
        for blur in ("motion", "gaussian", "all"):
            sel = [r for r in rows if r["borders"] == borders and blur in (r["blur"], "all")]
            summary[f"{borders}/{blur}"] = {k: round(float(np.mean([r[k] for r in sel])), 2)
                                            for k in ("input", "model", "wiener_estimated_kernel", "wiener_true_kernel")}
    return {"checkpoint": str(checkpoint), "crops": crops, "size": size, "margin": MARGIN, "seed": SEED,
            "mean_psnr_db": summary, "rows": rows}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--crops", type=int, default=12)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args(argv)
    result = measure(args.checkpoint, args.crops, args.size)
    atomic_write_text(RESULTS, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["mean_psnr_db"], indent=2))


if __name__ == "__main__":
    main()
