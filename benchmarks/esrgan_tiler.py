"""Real-ESRGAN-style tiling, for comparison with the runtime's feathered tiler.

As Real-ESRGAN's inference script describes it: the image is cut into a grid of ``tile`` x ``tile``
cells (the last row and column smaller); each cell is fed to the model with ``tile_pad`` (10) pixels
of real neighbouring context on every side (clamped at the image border), and only the output of
the cell itself is kept and pasted into place. No overlap between kept regions, no blending: a
model whose receptive field is wider than ``tile_pad`` sees different context on either side of a
cell boundary, and that shows as a seam. One cell per model call (batch 1), as in the original.

``compare_tilers`` runs both tilers on one frame with the same model and reports speed and seams.
"""
import time

import numpy as np


def cells(length, tile):
    """[(start, end)] of the grid cells along one axis (the last may be shorter)."""
    return [(s, min(s + tile, length)) for s in range(0, length, tile)]


def restore_esrgan_style(infer, image, tile, tile_pad=10, scale=1, multiple=1):
    """Restore ``image`` (H, W, C float32 in [0, 1]) cell by cell.

    ``infer(batch)`` maps a (1, C, h, w) float32 array to (1, C, h*scale, w*scale); ``multiple`` is
    the model's size multiple: a padded cell is reflect-padded up to it and the extra cropped off.
    """
    h, w, c = image.shape
    out = np.empty((h * scale, w * scale, c), np.float32)
    for y0, y1 in cells(h, tile):
        for x0, x1 in cells(w, tile):
            py0, py1 = max(y0 - tile_pad, 0), min(y1 + tile_pad, h)
            px0, px1 = max(x0 - tile_pad, 0), min(x1 + tile_pad, w)
            patch = image[py0:py1, px0:px1]
            ph, pw = patch.shape[:2]
            extra_h, extra_w = -ph % multiple, -pw % multiple
            if extra_h or extra_w:
                patch = np.pad(patch, ((0, extra_h), (0, extra_w), (0, 0)), mode="reflect" if min(ph, pw) > 1 else "edge")
            result = infer(np.ascontiguousarray(patch.transpose(2, 0, 1)[None]))[0].transpose(1, 2, 0)
            top, left = (y0 - py0) * scale, (x0 - px0) * scale
            out[y0 * scale : y1 * scale, x0 * scale : x1 * scale] = result[top : top + (y1 - y0) * scale, left : left + (x1 - x0) * scale]
    return out


def seam_ratio_at(image, rows, cols):
    """Gradient energy on the given boundary lines over the gradient energy elsewhere (the same
    measure as ``restore.runtime.tiler.seam_ratio``, for any set of lines): ~1 = no seam.

    ``rows``/``cols``: pixel indices where a new tile region starts (a step between k-1 and k)."""
    img = np.asarray(image, np.float64)
    if img.ndim == 2:
        img = img[..., None]
    on_energy = off_energy = 0.0
    for axis, lines in ((0, rows), (1, cols)):
        grad = (np.diff(img, axis=axis) ** 2).mean(axis=(1 - axis, 2))  # grad[k]: step k -> k+1
        on = np.zeros(grad.shape[0], bool)
        for x in lines:
            if 0 < x < img.shape[axis]:
                on[max(x - 2, 0) : x + 1] = True
        if on.any() and (~on).any():
            on_energy += grad[on].mean()
            off_energy += grad[~on].mean()
    return float(on_energy / off_energy) if off_energy > 0 else 1.0


def compare_tilers(runner, frame, tile=256, tile_pad=10, repeats=3):
    """Real-ESRGAN-style tiling vs the runtime's feathered tiler on one frame, same model.

    ``runner``: a ``harness.TorchRunner`` built with ``tile`` (its tiler is the runtime's). Returns
    times (best of ``repeats``), seam ratios of ``output - input`` (content taken out), and the mean
    absolute difference of each tiled output from the whole-frame output (in 8-bit levels)."""
    from restore.runtime.tiler import seam_ratio

    from .harness import HostClock

    image = frame.astype(np.float32) / 255.0
    whole = None
    try:
        with runner.torch.inference_mode():
            x = runner._upload(frame)
            whole = runner._download(runner.model(x), *frame.shape[:2])
            runner._sync()  # the download is non-blocking on a GPU
            whole = whole.numpy().astype(np.float32)
    except RuntimeError:  # out of memory for a whole 4K frame: compare seams only
        pass

    def ours():
        return runner.run(frame, HostClock()).astype(np.float32)

    def esrgan():
        runner._tile_backend.spent = {"upload": 0.0, "compute": 0.0, "download": 0.0}
        out = restore_esrgan_style(runner.infer_batch, image, tile, tile_pad, runner.scale, runner.multiple)
        return np.clip(out * 255.0, 0, 255).round()

    results = {}
    for name, fn in (("feathered", ours), ("esrgan", esrgan)):
        fn()  # warm-up
        times, out = [], None
        for _ in range(repeats):
            start = time.perf_counter()
            out = fn()
            times.append((time.perf_counter() - start) * 1e3)
        residual = out - np.repeat(np.repeat(frame.astype(np.float32), runner.scale, 0), runner.scale, 1)
        if name == "feathered":
            seams = seam_ratio(residual, runner._tiler.tile, runner._tiler.overlap, runner.scale)
        else:
            starts_y = [s * runner.scale for s, _ in cells(frame.shape[0], tile)[1:]]
            starts_x = [s * runner.scale for s, _ in cells(frame.shape[1], tile)[1:]]
            seams = seam_ratio_at(residual, starts_y, starts_x)
        results[name] = {"ms": min(times), "seam_ratio": seams,
                         "mean_abs_diff_from_whole": float(np.abs(out - whole).mean()) if whole is not None else None}
    results["settings"] = {"tile": tile, "tile_pad": tile_pad, "overlap": runner._tiler.overlap,
                           "size": f"{frame.shape[1]}x{frame.shape[0]}"}
    return results
