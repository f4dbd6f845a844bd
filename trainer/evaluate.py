"""``restore eval``: PSNR/SSIM of a checkpoint on the fixed holdout (or a paired folder), next to
the blurred input and the classical baselines, per image and averaged, plus a PNG grid."""
import time
from pathlib import Path

import numpy as np

from restore.runtime.atomic import atomic_path, atomic_write_text
from restore.runtime.errors import ConfigError, InputError
from restore.runtime.outputs import finite_json

from . import holdout
from .baselines import run_baselines
from .checkpoint import file_sha256, load_checkpoint, model_from_checkpoint
from .inference import restore_array
from .metrics import SSIM_MIN_SIZE, psnr, ssim

GRID_METHODS = ("input", "model", "wiener_oracle", "richardson_lucy_oracle", "wiener_blind", "richardson_lucy_blind", "target")
GRID_CELL = 192
BUILTIN_DATA = {"builtin-holdout": holdout.holdout_crops, "builtin-field": holdout.field_crops}


def load_pairs(data):
    """[(name, lq, gt, kernel or None, blur info)] for ``builtin-holdout``, ``builtin-field`` or a
    blur/+sharp/ folder."""
    if data in BUILTIN_DATA:
        return [(c.name, c.lq, c.gt, c.kernel, c.blur) for c in BUILTIN_DATA[data]()]
    from .datasets import PairedFolder

    folder = PairedFolder(data, patch=None, augment=False)
    pairs = []
    for i in range(len(folder)):
        item = folder[i]
        pairs.append((item["name"], item["lq"].permute(1, 2, 0).numpy(), item["gt"].permute(1, 2, 0).numpy(), None, {}))
    return pairs


def evaluate_checkpoint(checkpoint, data="builtin-holdout", *, out_dir=None, baselines=True, progress=True):
    """Evaluate ``checkpoint`` on ``data``; returns the report dict (also written to out_dir)."""
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt)
    if getattr(model, "scale", 1) != 1:
        raise ConfigError(checkpoint, f"is a x{model.scale} model; restore eval compares deblurring outputs at the input size",
                          "evaluate super-resolution with its own validation set")
    pairs = load_pairs(data)
    for name, lq, gt, _, _ in pairs:
        if min(lq.shape[:2] + gt.shape[:2]) < SSIM_MIN_SIZE:
            raise InputError(f"{data}: pair {name}", f"is {lq.shape[1]}x{lq.shape[0]} pixels, smaller than the {SSIM_MIN_SIZE}x{SSIM_MIN_SIZE} SSIM needs",
                             f"use image pairs of at least {SSIM_MIN_SIZE}x{SSIM_MIN_SIZE} pixels")
    if model.in_channels == 1:
        pairs = [(n, _gray(lq), _gray(gt), k, b) for n, lq, gt, k, b in pairs]
    rows, grid_rows, timing = [], [], {"model_s": 0.0, "baselines_s": 0.0}
    iterator = pairs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(pairs, desc="eval", unit="crop", leave=False)
    for name, lq, gt, kernel, blur in iterator:
        t = time.perf_counter()
        outputs = {"input": lq, "model": restore_array(model, lq)}
        timing["model_s"] += time.perf_counter() - t
        if baselines:
            t = time.perf_counter()
            outputs.update(run_baselines(lq, kernel))
            timing["baselines_s"] += time.perf_counter() - t
        rows.append({
            "name": name, "blur": blur, "size": list(gt.shape[:2]),
            "psnr": {m: round(psnr(gt, img), 3) for m, img in outputs.items()},
            "ssim": {m: round(ssim(gt, img), 4) for m, img in outputs.items()},
        })
        grid_rows.append({**outputs, "target": gt})
    methods = list(rows[0]["psnr"])
    mean = {key: {m: round(float(np.mean([r[key][m] for r in rows])), 3) for m in methods} for key in ("psnr", "ssim")}
    report = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": file_sha256(checkpoint),
        "arch": ckpt["arch"],
        "data": str(data),
        "crops": len(rows),
        "input_psnr": mean["psnr"]["input"],
        "output_psnr": mean["psnr"]["model"],
        "gain_db": round(mean["psnr"]["model"] - mean["psnr"]["input"], 3),
        "input_ssim": mean["ssim"]["input"],
        "output_ssim": mean["ssim"]["model"],
        "mean": mean,
        "images": rows,
        "methods": methods,
        "timing": {k: round(v, 2) for k, v in timing.items()},
    }
    if data == "builtin-holdout":
        report["protocol"] = {"seed": holdout.SEED, "crop": holdout.CROP, "crops_per_image": holdout.CROPS_PER_IMAGE,
                              "motion_length": holdout.MOTION_LENGTH, "gaussian_sigma": holdout.GAUSSIAN_SIGMA,
                              "noise_sigma": holdout.NOISE_SIGMA}
    if data == "builtin-field":
        report["field"] = field_summary(rows, model)
    if out_dir is not None:
        out_dir = Path(out_dir)
        report["grid"] = str(out_dir / "grid.png")
        write_grid(grid_rows, [r["name"] for r in rows], out_dir / "grid.png")
        atomic_write_text(out_dir / "report.json", finite_json(report, indent=2))
    return report


def field_summary(rows, model):
    """Per category of the field holdout: crops, mean and worst PSNR gain, the target and whether it
    is met; the worst crop overall; and the uniform pictures' round trip (largest change in levels
    of 1/255, and whether every output value is finite)."""
    categories = {}
    for row in rows:
        categories.setdefault(row["blur"]["kind"], []).append(row["psnr"]["model"] - row["psnr"]["input"])
    summary = {"categories": {}}
    for kind, gains in categories.items():
        target = holdout.FIELD_TARGETS[kind]
        summary["categories"][kind] = {"crops": len(gains), "mean_gain_db": round(float(np.mean(gains)), 3),
                                       "worst_gain_db": round(float(min(gains)), 3), "target_db": target,
                                       "met": bool(np.mean(gains) >= target)}
    worst = min(rows, key=lambda r: r["psnr"]["model"] - r["psnr"]["input"])
    gain = round(worst["psnr"]["model"] - worst["psnr"]["input"], 3)
    summary["worst"] = {"name": worst["name"], "gain_db": gain, "target_db": holdout.FIELD_WORST, "met": gain >= holdout.FIELD_WORST}
    uniform = []
    for name, picture in holdout.uniform_pictures():
        out = restore_array(model, picture)
        uniform.append({"name": name, "finite": bool(np.isfinite(out).all()),
                        "max_change_levels": round(float(np.nanmax(np.abs(out - picture)) * 255), 3)})
    summary["uniform"] = {"pictures": uniform, "met": all(u["finite"] and u["max_change_levels"] <= 1 for u in uniform)}
    return summary


def format_field(field):
    lines = [f"{'category':<10}{'crops':>6}{'mean gain':>11}{'worst':>9}{'target':>9}  met"]
    for kind, c in field["categories"].items():
        lines.append(f"{kind:<10}{c['crops']:>6}{c['mean_gain_db']:>+10.2f} {c['worst_gain_db']:>+8.2f} {c['target_db']:>+8.1f}  {'yes' if c['met'] else 'NO'}")
    w = field["worst"]
    lines.append(f"worst crop {w['name']}: {w['gain_db']:+.2f} dB (target >= {w['target_db']:+.1f}): {'yes' if w['met'] else 'NO'}")
    worst_uniform = max(field["uniform"]["pictures"], key=lambda u: u["max_change_levels"])
    lines.append(f"uniform pictures: largest change {worst_uniform['max_change_levels']:.2f} levels ({worst_uniform['name']}), "
                 f"all finite: {all(u['finite'] for u in field['uniform']['pictures'])}: {'yes' if field['uniform']['met'] else 'NO'}")
    return "\n".join(lines)


def format_report(report):
    """A plain-text table: methods as rows, mean PSNR/SSIM and per-image PSNR as columns."""
    names = [r["name"] for r in report["images"]]
    width = max(len(m) for m in report["methods"]) + 2
    lines = [f"{report['arch']} on {report['data']} ({report['crops']} crops)",
             f"{'method':<{width}}{'PSNR':>8}{'SSIM':>8}  " + "  ".join(f"{n[:14]:>14}" for n in names)]
    for m in report["methods"]:
        per = "  ".join(f"{r['psnr'][m]:>14.2f}" for r in report["images"])
        lines.append(f"{m:<{width}}{report['mean']['psnr'][m]:>8.2f}{report['mean']['ssim'][m]:>8.4f}  {per}")
    lines.append(f"gain over input: {report['gain_db']:+.2f} dB PSNR")
    if "field" in report:
        lines.append(format_field(report["field"]))
    if "grid" in report:
        lines.append(f"grid: {report['grid']}")
    return "\n".join(lines)


def write_grid(rows, names, path):
    """One row per crop, one column per method: the centre GRID_CELL pixels at full resolution."""
    import cv2

    columns = [m for m in GRID_METHODS if m in rows[0]]
    cells = []
    for row, name in zip(rows, names):
        line = []
        for m in columns:
            cell = _centre(row[m], GRID_CELL)
            cell = np.repeat(cell, 3, axis=2) if cell.shape[2] == 1 else cell
            cell = np.round(np.clip(cell, 0, 1) * 255).astype(np.uint8)[..., ::-1].copy()
            label = m if m != "input" else f"input {name}"
            cv2.putText(cell, label[:28], (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(cell, label[:28], (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
            line.append(cell)
        cells.append(np.concatenate(line, axis=1))
    grid = np.concatenate(cells, axis=0)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), grid):
            raise OSError(f"OpenCV could not write {tmp}")


def _centre(img, size):
    h, w = img.shape[:2]
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return img[y:y + size, x:x + size]


def _gray(img):
    return (img[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32))[..., None].astype(np.float32)
