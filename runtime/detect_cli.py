"""``restore detect IMAGE... -o OUT``: blur map and blur type of images, without a model."""
import json
import re
from pathlib import Path

import click
import cv2
import numpy as np

from .atomic import atomic_write_bytes, atomic_write_text
from .blur import blur_map, blur_overlay, classify_blur
from .errors import InputError
from .image_header import check_image_file


@click.command("detect")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "out_dir", type=click.Path(path_type=Path), default=Path("."), show_default=True,
              help="Folder for <stem>.blurmap.png and <stem>.json.")
@click.option("--tile", type=click.IntRange(16, 1024), default=64, show_default=True,
              help="Side of the square regions the blur map judges.")
def detect(images, out_dir, tile):
    """Where IMAGES are blurred (per tile: sharp, blurred or flat) and how (sharp, motion with its
    angle, or defocus/general blur). Writes an overlay PNG (red = blurred, green = sharp, hatched
    = flat, no evidence) and a JSON report per image."""
    for path in images:
        image = read_rgb(path)
        report = detect_image(image, tile=tile, name=path)
        stem = path.stem
        atomic_write_bytes(out_dir / f"{stem}.blurmap.png", _png(report.pop("_overlay")))
        report["image"] = {"path": str(path), "width": image.shape[1], "height": image.shape[0]}
        atomic_write_text(out_dir / f"{stem}.json", _json(report))
        click.echo(_summary(path, report))


def detect_image(image, tile=64, name="image"):
    """The JSON-ready report for one RGB/grey image, plus its overlay under "_overlay"."""
    if min(image.shape[:2]) < 32:
        raise InputError(name, f"{image.shape[1]}x{image.shape[0]} is too small for blur analysis",
                         "give an image of at least 32x32 pixels")
    bmap = blur_map(image, tile=tile)
    verdict = classify_blur(image)
    return {"blur": verdict.to_dict(), "map": bmap.to_dict(), "_overlay": blur_overlay(image, bmap)}


def read_rgb(path):
    """An image file as an RGB (or grey) array of its own dtype; InputError if unreadable."""
    path = Path(path)
    check_image_file(path)  # missing, empty, damaged or too large for memory: refused unread
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise InputError(path, "cannot be read as an image (empty, truncated or not an image)",
                         "give a PNG, JPEG, TIFF, BMP or WebP file")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return image


def _json(report):
    """Indented JSON with each innermost list (a map row) on one line, so the map reads as a grid."""
    text = json.dumps(report, indent=2)
    flat_list = re.compile(r"\[\s*([^\[\]{}]*?)\s*\]", re.S)
    return flat_list.sub(lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text) + "\n"


def _png(rgb):
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("OpenCV could not encode PNG")
    return buf.tobytes()


def _summary(path, report):
    blur, bmap = report["blur"], report["map"]
    kind = blur["kind"]
    if kind == "motion":
        kind = f"motion blur at {blur['angle_deg']:.0f} deg, ~{blur['length_px']:.0f} px"
    elif kind == "defocus":
        kind = "defocus/general blur"
    return (f"{path.name}: {kind} (confidence {blur['confidence']:.2f}); "
            f"{100 * bmap['blurred_fraction']:.0f}% of textured tiles blurred")
