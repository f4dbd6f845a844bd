"""Validation during training: PSNR/SSIM of the generator on a few fixed crops.

``val.data: builtin-holdout`` uses the first ``val.max_crops`` crops of the fixed holdout
(centre-cut to ``val.crop`` pixels to keep CPU validation quick; ``restore eval`` reports the full
protocol). A dataset config dict (as for ``data.train``) validates on its first items instead.
"""
import numpy as np
import torch

from .inference import restore_array
from .metrics import psnr, ssim


def _centre(img, size):
    h, w = img.shape[:2]
    if not size or size >= min(h, w):
        return img
    y, x = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(img[y:y + size, x:x + size])


class Validator:
    def __init__(self, cfg, device):
        self.device = device
        val = cfg["val"]
        count = int(val.get("max_crops") or 8)
        if val["data"] == "builtin-holdout":
            from .holdout import holdout_crops

            size = int(val.get("crop") or 0)
            self.pairs = [(_centre(c.lq, size), _centre(c.gt, size)) for c in holdout_crops()[:count]]
        else:
            from .datasets import build_dataset

            dataset = build_dataset(val["data"])
            items = [dataset[i] for i in range(min(count, len(dataset)))]
            self.pairs = [(it["lq"].permute(1, 2, 0).numpy(), it["gt"].permute(1, 2, 0).numpy()) for it in items]
        scale = max(1, self.pairs[0][1].shape[0] // self.pairs[0][0].shape[0])
        # The input's own PSNR is only defined when input and target have the same size.
        self.input_psnr = float(np.mean([psnr(gt, lq) for lq, gt in self.pairs])) if scale == 1 else None
        self.outputs = []

    @torch.no_grad()
    def run(self, model):
        was_training = model.training
        model.eval()
        self.outputs = [restore_array(model, lq, self.device) for lq, _ in self.pairs]
        model.train(was_training)
        result = {
            "psnr": float(np.mean([psnr(gt, out) for (_, gt), out in zip(self.pairs, self.outputs)])),
            "ssim": float(np.mean([ssim(gt, out) for (_, gt), out in zip(self.pairs, self.outputs)])),
        }
        if self.input_psnr is not None:
            result["input_psnr"] = self.input_psnr
        return result

    def samples(self, model, count=3):
        """(lq, out, gt) of the first crops, from the last ``run``."""
        return [(lq, out, gt) for (lq, gt), out in list(zip(self.pairs, self.outputs))[:count]]
