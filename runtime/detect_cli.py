"""``restore detect IMAGE... -o OUT``: blur map and blur type of images, without a model."""
import re
from pathlib import Path

import click
import cv2
import numpy as np

from .atomic import atomic_write_bytes, atomic_write_text
from .blur import blur_map, blur_overlay, classify_blur
from .errors import ConfigError, InputError
from .outputs import finite_json, refuse_input_as_output
from .streams import read_image


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
    if str(out_dir) == "-":  # run's '-' is stdout; here it would become a folder named '-'
        raise ConfigError("-o -", "detect writes its reports into a folder; the one-line summaries already go to stdout",
                          "give a folder, or leave -o out for the current one")
    stems = _report_stems(images)
    _check_outputs(images, stems, out_dir)
    for path in images:
        image = read_rgb(path)
        report = detect_image(image, tile=tile, name=path)
        stem = stems[path]
        atomic_write_bytes(out_dir / f"{stem}.blurmap.png", _png(report.pop("_overlay")))
        report["image"] = {"path": str(path), "width": image.shape[1], "height": image.shape[0]}
        atomic_write_text(out_dir / f"{stem}.json", _json(report))
        click.echo(_summary(path, report))


def _report_stems(images):
    """The name each image's outputs start with: its stem, or its whole name where two inputs
    share a stem (a.png, a.jpg). Refused before any work when outputs would still collide or be
    an input (runtime/outputs.py)."""
    counts = {}
    for path in images:
        counts[path.stem] = counts.get(path.stem, 0) + 1
    stems, taken = {}, {}
    for path in images:
        stem = path.stem if counts[path.stem] == 1 else path.name
        if stem in taken and taken[stem] != path:
            raise ConfigError(path, f"its report would overwrite the one of {taken[stem]} (same name)", "run them with different -o folders")
        taken[stem] = path
        stems[path] = stem
    return stems


def _check_outputs(images, stems, out_dir):
    for path in images:
        for name in (f"{stems[path]}.blurmap.png", f"{stems[path]}.json"):
            refuse_input_as_output(out_dir / name, images)


def detect_image(image, tile=64, name="image"):
    """The JSON-ready report for one RGB/grey image, plus its overlay under "_overlay"."""
    if min(image.shape[:2]) < 32:
        raise InputError(name, f"{image.shape[1]}x{image.shape[0]} is too small for blur analysis",
                         "give an image of at least 32x32 pixels")
    bmap = blur_map(image, tile=tile)
    verdict = classify_blur(image)
    return {"blur": verdict.to_dict(), "map": bmap.to_dict(), "_overlay": blur_overlay(image, bmap)}


def read_rgb(path):
    """An image file as an RGB (or grey) array of its own dtype, alpha dropped, read by the same
    checks as ``restore run`` (runtime/streams.py: damage, frames, non-finite pixels, orientation)."""
    image = read_image(path)
    if image.ndim == 3 and image.shape[2] in (2, 4):
        image = image[..., :-1] if image.shape[2] == 4 else image[..., 0]
    return np.ascontiguousarray(image)


def _json(report):
    """Indented JSON with each innermost list (a map row) on one line, so the map reads as a grid."""
    text = finite_json(report, indent=2)
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
