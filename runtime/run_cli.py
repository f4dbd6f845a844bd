"""``restore run`` (images, folders, videos) and ``restore demo`` (the shipped model on the bundled
samples). Thin click layer over Restorer, runtime/streams.py (images) and runtime/media/ (video);
user errors are RestoreErrors."""
import contextlib
import math
import os
import signal
import time
from pathlib import Path

import click
import numpy as np

from . import outputs
from .errors import ConfigError, InputError, ModelError, OutputError, PartialFailure, RestoreError
from .media.mux import AUDIO_MODES
from .options import BATCH, DEVICE, OVERLAP, TILE, UserPath
from .pixels import unit_float

BACKEND_CHOICES = ["auto", "onnxruntime", "openvino", "torch", "tensorrt"]
SAMPLES_DIR = Path(__file__).parent / "samples"
QUALITY_SUFFIXES = {".jpg", ".jpeg", ".webp"}  # the outputs --quality applies to


def _stop_signals_as_interrupt():
    """SIGTERM stops a run the way Ctrl-C does (partial outputs handled, exit 130); both are
    counted, so a Ctrl-C that ends an FFmpeg call is told from that call's failure (sources.py)."""
    from .media.sources import stop_signal

    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, stop_signal)
    except ValueError:  # not the main thread (e.g. called from a test runner thread)
        pass


def sharp_tile_skipper():
    """``skip_tiles`` for --skip-sharp: GIR's step 1 (blur detection, runtime/blur.py) over the
    whole image, asked about every processing tile. Sharp or flat tiles (nothing to deblur) are
    passed through without inference."""
    try:
        from .blur import sharp_tile_mask
    except ImportError as e:
        raise ConfigError("--skip-sharp", f"blur detection is not available in this install ({e})") from None

    def skip_tiles(image, boxes):
        try:
            return sharp_tile_mask(np.asarray(image), tile=None, boxes=boxes)
        except ValueError:  # too small to analyse: restore everything
            return np.zeros(len(boxes), bool)

    return skip_tiles


def _output_for(src, output, single, frames, folder_wanted=False):
    """Where one input goes: ``output`` itself for a single file with a suffix (or ``-``), else inside it."""
    from .media import STDIO, output_format
    from .streams import is_image, is_video

    if output == STDIO:
        if not (single and is_video(src) and not frames):
            raise ConfigError("-o -", "stdout takes one video", "give one video input, or an output file or folder")
        return output
    if single and output.suffix and not output.is_dir() and not frames and not folder_wanted:
        if is_image(src) and not is_image(output):
            raise ConfigError(output, "an image input needs an image output file (.png, .jpg, .tif...) or a folder")
        if is_video(src) and output_format(output) is None:
            raise ConfigError(output, "a video input needs a video output (.mp4, .mkv, .mov, .webm, .avi, .ts) or a folder")
        return output
    if (is_image(output) or is_video(output)) and not output.is_dir() and not folder_wanted:
        raise ConfigError(output, "several outputs need a folder, and this name is a media file's",
                          "give a folder (end it with / to use this name as one)")
    if is_video(src):
        name = _stream_stem(src) if isinstance(src, str) else src.stem
        if frames:
            return output / name
        return output / (name + (src.suffix if isinstance(src, Path) and output_format(src) else ".mp4"))
    return output / src.name


def _stream_stem(src):
    """A file name for a stream input written into a folder: the URL's last path part, or 'stdin'."""
    from urllib.parse import urlparse

    from .media import STDIO

    return "stdin" if src == STDIO else Path(urlparse(src).path).stem or "stream"


def _expand(inputs, output, fps, frames, quality=None):
    """(kind, source, destination) jobs. A folder input with a video output becomes one video.
    ``output`` is the -o text as given: a trailing / asks for a folder. Streams (``-``, URLs,
    devices) stay strings, handed to FFmpeg untouched; files become Paths."""
    from .image_header import not_a_file
    from .media import STDIO, is_stream
    from .streams import is_image, is_video, list_media

    output = os.fspath(output)
    if output == "":
        raise ConfigError("-o ''", "the output is empty", "give an output file or folder")
    folder_wanted = output.endswith(("/", os.sep))
    output = output if output == STDIO else Path(output)
    single = len(inputs) == 1
    jobs = []
    for src in inputs:
        if is_stream(src):
            jobs.append(("video", src, _output_for(src, output, single, frames, folder_wanted)))
            continue
        src = Path(src)
        if not src.exists():
            raise InputError(src, not_a_file(src), "check the path")
        if src.is_dir():
            if single and is_video(output) and not folder_wanted:  # a video file or - (stdout)
                jobs.append(("folder->video", src, output))
                continue
            media = list_media(src)
            if not media:
                raise InputError(src, "no images or videos in this folder")
            jobs += [("video" if is_video(p) else "image", p, _output_for(p, output, False, frames, folder_wanted)) for p in media]
        elif is_video(src) or is_image(src):
            jobs.append(("video" if is_video(src) else "image", src, _output_for(src, output, single, frames, folder_wanted)))
        else:
            raise InputError(src, f"unknown file type {src.suffix!r}", "give images, videos or folders of them")
    if fps is not None and not any(kind == "folder->video" for kind, _, _ in jobs):
        raise ConfigError("--fps", "only used when a folder of frames is written as one video (-o OUT.mp4)")
    if quality is not None and not any(kind == "image" and Path(dst).suffix.lower() in QUALITY_SUFFIXES for kind, _, dst in jobs):
        raise ConfigError("--quality", "only used for JPEG and WebP image outputs", "leave it out, or write .jpg or .webp")
    if frames:
        jobs = [(("video->frames" if kind == "video" else kind), s, d) for kind, s, d in jobs]
    seen = {}
    for _, src, dst in jobs:
        if dst in seen:
            raise ConfigError(dst, f"both {seen[dst]} and {src} would be written here", "run them separately")
        seen[dst] = src
    return jobs


def _check_outputs(jobs, overwrite):
    """The output-safety policy (runtime/outputs.py) before any work: no output is an input (unless
    --overwrite), frames go only into new or empty folders. Streams (stdin, URLs, stdout) are no files."""
    from .streams import is_image

    sources = []
    for kind, src, _ in jobs:
        if isinstance(src, Path):
            sources += [p for p in sorted(src.iterdir()) if is_image(p)] if kind == "folder->video" else [src]
    for kind, src, dst in jobs:
        if not isinstance(dst, Path):
            continue
        outputs.refuse_input_as_output(dst, sources, overwrite)
        if kind == "video->frames":
            outputs.fresh_folder(dst)


def _encoder_settings(codec, crf, preset, pix_fmt, encoder_opts, fps, jobs):
    """EncoderSettings from the options, checked against every video output (exit 7 when wrong)."""
    from .media import EncoderSettings, check_container, parse_encoder_options
    from .media.mux import default_codec

    if fps is not None and not (math.isfinite(fps) and 0 < fps <= 1000):
        raise ConfigError(f"--fps {fps}", "not a frame rate", "give a number above 0 and at most 1000")
    videos = [dst for kind, _, dst in jobs if kind in ("video", "folder->video")]
    if codec is None:
        codec = default_codec(videos[0]) if videos else "h264"
    settings = EncoderSettings(codec, crf, preset, pix_fmt, parse_encoder_options(encoder_opts))
    for dst in videos:
        check_container(settings, dst)
    return settings


def _raw_format(text, inputs):
    """--raw's RawFormat (None without it); it describes stdin, so the one input must be -."""
    from .media.sources import STDIO, parse_raw

    if text is None:
        return None
    raw = parse_raw(text)
    if list(inputs) != [STDIO]:
        raise ConfigError("--raw", "only describes raw frames on stdin", "give - as the one input: ... | restore run - --raw WxH -o out.mkv")
    return raw


def _run_one(restorer, kind, src, dst, skip, progress, fps=None, quality=None, video=None):
    from tqdm import tqdm

    from . import media, streams

    if kind == "image":
        image, info = streams.read_image_info(src)
        total = restorer.tiler.count_tiles(image.shape)
        with tqdm(total=total, unit="tile", desc=src.name, disable=not progress, leave=False, delay=1.0) as bar:
            streams.write_restored_image(restorer, image, dst, skip, bar.update, info=info, quality=quality)
            return f"{bar.n} tiles"
    video = video or {}
    if kind == "video":
        live = True if video.get("live") else None  # None: live when the source is (media.is_live)
        media.restore_video(restorer, src, dst, skip, progress, video.get("settings"), video.get("audio", "copy"), live, video.get("resume", False),
                            video.get("raw"))
    elif kind == "video->frames":
        media.restore_video_to_frames(restorer, src, dst, skip, progress, video.get("raw"))
    else:
        media.restore_folder_to_video(restorer, src, dst, fps, skip, progress, video.get("settings"))
    return "video"


@click.command("run")
@click.argument("inputs", nargs=-1, required=True, type=UserPath(InputError, text=True))
@click.option("-o", "--output", required=True, type=UserPath(OutputError, text=True),
              help="Output file (one input), folder (a trailing / makes it one), or - (a Matroska video on stdout).")
@click.option("--model", default="default", show_default=True, type=UserPath(ModelError, keep=("default",)),
              help="'default', an artifact folder, .onnx, .engine or checkpoint.")
@click.option("--backend", type=click.Choice(BACKEND_CHOICES), default="auto", show_default=True)
@click.option("--tile", type=TILE, help="Tile size in pixels (default: the artifact's advice).")
@click.option("--overlap", type=OVERLAP, help="Tile overlap in pixels (default: the artifact's advice).")
@click.option("--batch", type=BATCH, help="Tiles per inference batch.")
@click.option("--device", type=DEVICE, help="cpu, cuda or cuda:N (default: the backend's best).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), help="Default: the backend's best: fp16 on a GPU; bf16 on OpenVINO where the CPU has AVX512-BF16 or AMX; else fp32.")
@click.option("--skip-sharp", is_flag=True, help="Pass sharp and flat tiles through without inference (faster on mostly sharp input).")
@click.option("--fps", type=float, help="Frame rate when a folder of frames is written as one video.")
@click.option("--frames", is_flag=True, help="Write videos as folders of PNG frames.")
@click.option("--codec", help="Video codec: h264, hevc, vp9, av1, prores, ffv1, nvenc (default: h264; vp9 for .webm).")
@click.option("--crf", type=int, help="Constant quality (lower is better; default 18 for h264, 20 hevc, 24 vp9, 30 av1).")
@click.option("--preset", help="Encoder speed preset (h264/hevc: ultrafast..veryslow, default veryfast; av1: 0..13, default 8; nvenc: p1..p7, default p5).")
@click.option("--pix-fmt", help="Output pixel format (default: yuv420p, yuv444p for odd sizes, 10-bit for deep sources).")
@click.option("--encoder-opt", "encoder_opts", multiple=True, metavar="KEY=VALUE", help="Raw encoder option, repeatable (e.g. tune=film).")
@click.option("--audio", type=click.Choice(AUDIO_MODES), default="copy", show_default=True, help="Audio streams: copied packet for packet, left out, or transcoded to AAC.")
@click.option("--raw", metavar="WxH[:PIXFMT[:FPS]]", help="Input - is headerless frames of this size, FFmpeg pixel format [rgb24] and rate [25] (e.g. ffmpeg ... -f rawvideo -pix_fmt rgb24 -).")
@click.option("--live", is_flag=True, help="Live source: pace by timestamps, drop frames when restoration is slower (automatic for udp/rtp/rtsp/srt and /dev/video*).")
@click.option("--resume", is_flag=True, help="Skip inputs whose output file exists (outputs are written atomically: one that exists is complete); continue an interrupted video from its NAME.partial.EXT.")
@click.option("--quality", type=click.IntRange(1, 100), help="JPEG and WebP output quality [95; a lossless WebP input: lossless].")
@click.option("--overwrite", is_flag=True, help="Allow an output to be one of the inputs (replaced atomically by its result).")
@click.option("--cluster", metavar="auto|local|ray://HOST:PORT|ADDRESS", help="Restore on a Ray cluster (pip install \"restore[cluster]\"): auto finds a running one, local starts one here.")
@click.option("--workers", type=click.IntRange(min=1), help="Cluster workers, one Restorer each (default: the cluster's CPUs, or GPUs / --gpus-per-worker).")
@click.option("--gpus-per-worker", type=click.FloatRange(min=0, min_open=True), help="GPUs each cluster worker reserves (e.g. 1, or 0.5 for two per GPU).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars, header or per-file lines: only errors, notes of what an output loses (alpha, audio, streams) and the --resume / --live summaries.")
def run(inputs, output, model, backend, tile, overlap, batch, device, precision, skip_sharp, fps, frames, codec, crf, preset, pix_fmt,
        encoder_opts, audio, raw, live, resume, quality, overwrite, cluster, workers, gpus_per_worker, quiet):
    """Restore images, folders of images/videos, and videos; outputs keep names, size x scale,
    frame rate. A failing file is reported at the end and the others still run (exit 8)."""
    from .api import Restorer

    _stop_signals_as_interrupt()
    raw = _raw_format(raw, inputs)
    jobs = _expand(list(inputs), output, fps, frames, quality)
    _check_outputs(jobs, overwrite)
    video = {"settings": _encoder_settings(codec, crf, preset, pix_fmt, encoder_opts, fps, jobs), "audio": audio, "live": live, "resume": resume,
             "raw": raw}
    if resume:  # a folder of frames may be half done, so only finished files count
        done = [(kind, src, dst) for kind, src, dst in jobs if kind != "video->frames" and isinstance(dst, Path) and dst.is_file()]
        jobs = [job for job in jobs if job not in done]
        click.echo(f"restore: --resume: {len(done)} outputs exist already, {len(jobs)} to do", err=True)
        if not jobs:
            return
    if cluster is None and (workers or gpus_per_worker):
        raise ConfigError("--workers" if workers else "--gpus-per-worker", "only used with --cluster")
    if cluster is not None:
        from .cluster import run_on_cluster

        options = {"model": model, "backend": backend, "tile": tile, "overlap": overlap, "batch": batch, "device": device, "precision": precision}
        failures = run_on_cluster(jobs, cluster, workers, gpus_per_worker, options, video["settings"], audio, skip_sharp, resume, not quiet, quality)
        return _raise_failures(failures, jobs)
    skip = sharp_tile_skipper() if skip_sharp else None
    with Restorer(model, backend=backend, tile=tile, overlap=overlap, batch=batch, device=device, precision=precision) as restorer:
        if not quiet:
            click.echo(f"restore: {restorer.description}", err=True)
        failures = []
        for kind, src, dst in jobs:
            start = time.perf_counter()
            try:
                with outputs.output_lock(dst) if isinstance(dst, Path) else contextlib.nullcontext():
                    what = _run_one(restorer, kind, src, dst, skip, not quiet, fps, quality, video)
            except RestoreError as e:
                if len(jobs) == 1:
                    raise
                failures.append(str(src))
                click.echo(f"restore: skipped: {e}", err=True)
                continue
            if not quiet:
                click.echo(f"{src} -> {dst} ({what}, {time.perf_counter() - start:.1f} s)", err=True)
    _raise_failures(failures, jobs)


def _raise_failures(failures, jobs, then="run again with --resume after fixing them"):
    if failures:
        raise PartialFailure(f"{len(failures)} of {len(jobs)} inputs", "failed: " + ", ".join(failures), f"see the 'skipped' lines above; {then}")


@click.command("demo")
@click.option("-o", "--output", default="restore-demo", show_default=True, type=UserPath(OutputError), help="Folder for the side-by-side PNGs and report.")
@click.option("--model", default="default", show_default=True, type=UserPath(ModelError, keep=("default",)))
@click.option("--backend", type=click.Choice(BACKEND_CHOICES), default="auto", show_default=True)
@click.option("--samples", default=str(SAMPLES_DIR), show_default=True, type=UserPath(InputError), help="Folder of blurry PNGs (sharp references in its sharp/ subfolder).")
@click.option("-q", "--quiet", is_flag=True, help="No header or per-sample lines; errors only.")
def demo(output, model, backend, samples, quiet):
    """Restore the bundled blurry samples with the shipped model; write before|after PNGs and a
    report (PSNR against samples/sharp/ where a reference exists, sharpness otherwise)."""
    from .api import Restorer
    from .atomic import atomic_write_text

    _stop_signals_as_interrupt()
    paths = sorted(p for p in samples.glob("*.png") if not p.name.startswith(".")) if samples.is_dir() else []  # ._x.png: macOS metadata
    if not paths:
        raise InputError(samples, "no sample PNGs here", "give --samples FOLDER")
    outputs.reusable_folder(output, "report.json", {"model", "runtime", "samples"}, writes=("*.before_after.png",))
    say = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    rows, failures = [], []
    with Restorer(model, backend=backend) as restorer:
        say(f"restore demo: {restorer.description}")
        for path in paths:
            try:
                row = _demo_one(restorer, path, samples / "sharp" / path.name, output)
            except InputError as e:
                failures.append(path.name)
                click.echo(f"restore demo: skipped: {e}", err=True)
                continue
            rows.append(row)
            say(_describe(row))
    report = {"model": restorer.source.describe(), "runtime": restorer.description, "samples": rows}
    if rows:
        atomic_write_text(output / "report.json", outputs.finite_json(report, indent=2) + "\n")
        atomic_write_text(output / "report.md", _markdown(report))
        say(f"restore demo: wrote {len(rows)} before/after images and report.md to {output}")
    _raise_failures(failures, paths, then="the other samples are in the report")


def _demo_one(restorer, path, reference, output):
    """Restore one sample; write its before|after PNG and return its report row."""
    from .streams import read_image, write_image

    before = read_image(path)
    sharp = read_image(reference) if reference.is_file() else None
    start = time.perf_counter()
    after = restorer.restore(before)
    row = {"sample": path.name, "size": f"{before.shape[1]}x{before.shape[0]}", "seconds": round(time.perf_counter() - start, 3)}
    psnr = None if sharp is None else (_psnr(_upscaled(before, restorer.scale), sharp), _psnr(after, sharp))
    if psnr and None not in psnr:  # a reference of another size or channel count says nothing
        row["psnr_before"], row["psnr_after"] = psnr
    row["sharpness_before"] = _sharpness(before)
    row["sharpness_after"] = _sharpness(after)
    write_image(output / f"{path.stem}.before_after.png", _side_by_side(_upscaled(before, restorer.scale), after))
    return row


def _upscaled(image, scale):
    import cv2

    if scale == 1:
        return image
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)


def _as_unit(image):
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] in (2, 4):
        image = image[..., :-1]
    return unit_float(image, np.float64)


def _psnr(image, reference):
    a, b = _as_unit(image), _as_unit(reference)
    if a.shape != b.shape:
        return None
    mse = float(np.mean((a - b) ** 2))
    return round(10 * np.log10(1.0 / mse), 2) if mse > 0 else float("inf")


def _sharpness(image):
    """Variance of the Laplacian of the gray image in [0, 255]: higher is sharper."""
    import cv2

    unit = _as_unit(image)
    gray = unit.mean(axis=2) if unit.ndim == 3 else unit
    return round(float(cv2.Laplacian((gray * 255).astype(np.float32), cv2.CV_32F).var()), 1)


def _side_by_side(before, after):
    import cv2

    def labelled(image, text):
        image = np.ascontiguousarray(_as_unit(image) * 255).astype(np.uint8)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        size = max(0.4, image.shape[0] / 600)
        cv2.putText(image, text, (8, int(24 * size) + 4), cv2.FONT_HERSHEY_SIMPLEX, size, (255, 255, 0), max(1, int(2 * size)), cv2.LINE_AA)
        return image

    gap = np.full((before.shape[0], 8, 3), 255, np.uint8)
    return np.concatenate([labelled(before, "before"), gap, labelled(after, "after")], axis=1)


def _describe(row):
    parts = [f"{row['sample']} ({row['size']}, {row['seconds']} s)"]
    if "psnr_after" in row:
        parts.append(f"PSNR {row['psnr_before']} -> {row['psnr_after']} dB")
    parts.append(f"sharpness {row['sharpness_before']} -> {row['sharpness_after']}")
    return ": ".join(parts[:1]) + ": " + ", ".join(parts[1:])


def _markdown(report):
    lines = [
        "# restore demo",
        "",
        f"Model: {report['model']}  ",
        f"Runtime: {report['runtime']}",
        "",
        "PSNR (dB) against samples/sharp/ where a reference exists; sharpness = variance of the Laplacian (higher is sharper).",
        "",
        "| sample | size | s | PSNR before | PSNR after | sharpness before | sharpness after |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["samples"]:
        lines.append(f"| {r['sample']} | {r['size']} | {r['seconds']} | {r.get('psnr_before', '')} | {r.get('psnr_after', '')} | {r['sharpness_before']} | {r['sharpness_after']} |")
    return "\n".join(lines) + "\n"
