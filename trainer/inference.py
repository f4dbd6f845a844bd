"""Whole-image inference with a torch generator (evaluation and validation; the streaming, tiled
runtime lives in restore.runtime)."""
import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def restore_array(model, image, device=None, kernel=None):
    """Run ``model`` on one HxWxC float32 image in [0, 1]; returns HxWxC (x scale) float32.
    ``kernel`` (k x k): the blur kernel given to a model that takes one (fourier-unet's front end).

    The input is reflect-padded up to the model's ``size_multiple`` and the output cropped back.
    Models with a ``fixed_size`` are fed exactly that size (the image must already have it)."""
    device = device or next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))[None].to(device)
    h, w = x.shape[-2:]
    m = int(getattr(model, "size_multiple", 1) or 1)
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
    y = (model(x) if kernel is None else model(x, kernel=torch.as_tensor(kernel, dtype=torch.float32)[None].to(device)))
    y = y.float().clamp(0, 1)
    s = int(getattr(model, "scale", 1) or 1)
    y = y[..., : h * s, : w * s]
    return y[0].permute(1, 2, 0).cpu().numpy()
