"""Checkpoint -> artifact directory (the contract in CONTRACTS.md, read by the runtime).

Everything is written into a temporary sibling of OUTDIR, validated, and moved into place only
when complete, so an interrupted or failed export never leaves an OUTDIR that looks usable.
"""
import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from restore.runtime.atomic import new_file_mode, output_error
from restore.runtime.errors import BackendError, ConfigError, OutputError
from restore.trainer.checkpoint import file_sha256, load_checkpoint, model_from_checkpoint
from restore.trainer.models import count_parameters
from restore.trainer.models.deconv import takes_posterior
from restore.trainer.models.precision import declared_fp32

from . import fp16, onnx_export, validate
from .plugin_op import OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION
from .spectral import probe_plane_shapes

ARTIFACT_FORMAT = "restore-artifact/1"
DEFAULT_TILE = 256
FILES = {
    "onnx": "model.onnx",
    "plugin_onnx": "model.plugin.onnx",
    "fp16_onnx": "model.fp16.onnx",
    "fp16_plugin_onnx": "model.fp16.plugin.onnx",
    "estimator_onnx": "estimator.onnx",
}
ESTIMATE_TILES = 8  # most tiles of one picture the estimator graph pools (the runtime picks them)
TIMING_CACHE = Path.home() / ".cache" / "restore" / "tensorrt-timing.cache"


@dataclass
class ExportOptions:
    tile: int = None  # None: DEFAULT_TILE, or the model's fixed size
    batch: tuple = (1, 8)
    opset: int = onnx_export.DEFAULT_OPSET
    fp16: bool = False
    target: str = "all"  # onnx | trt | all
    validate: bool = True
    timing_cache: Path = TIMING_CACHE


def parse_batch(text):
    """"1..8" -> (1, 8); "4" -> (4, 4)."""
    low, sep, high = str(text).partition("..")
    try:
        low, high = int(low), int(high) if sep else int(low)
    except ValueError:
        raise ConfigError(f"--batch {text}", "not a batch range", "write MIN..MAX, e.g. 1..8") from None
    if not 1 <= low <= high:
        raise ConfigError(f"--batch {text}", "needs 1 <= MIN <= MAX", "e.g. 1..8")
    return low, high


def load_generator(checkpoint):
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt)
    if not all(hasattr(model, a) for a in ("out_channels", "scale", "size_multiple")):
        raise ConfigError(checkpoint, f"{ckpt['arch']!r} is not a generator", "only generators are exported")
    return ckpt, model


def check_tile(model, tile):
    """The tile the model takes: ``tile`` checked against its fixed size or size multiple."""
    fixed = getattr(model, "fixed_size", None)
    if tile is None:
        return fixed or DEFAULT_TILE
    if fixed and tile != fixed:
        raise ConfigError(f"--tile {tile}", f"{model.arch} takes only {fixed}x{fixed} inputs", f"use --tile {fixed}")
    multiple = model.size_multiple
    if tile < multiple or tile % multiple:
        hint = f"use a multiple of {multiple}, e.g. {max(multiple, tile // multiple * multiple)}"
        raise ConfigError(f"--tile {tile}", f"{model.arch} needs H and W multiples of {multiple}", hint)
    return tile


def recommended_overlap(model, tile):
    """A margin a stitcher should overlap tiles by: an eighth of the tile, in whole size multiples."""
    multiple = model.size_multiple
    return max(multiple, (tile // 8) // multiple * multiple) if tile > multiple else 0


ENGINE_FILES = ("model.engine", "model.fp16.engine")


def previous_export(outdir):
    """The names of the files an earlier export wrote into ``outdir``: its metadata.json and the
    names under its "files" that an export writes (so a forged metadata.json cannot make this
    export delete notes.txt), or None when ``outdir`` holds no export."""
    try:
        metadata = json.loads((outdir / "metadata.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(metadata, dict) or metadata.get("format") != ARTIFACT_FORMAT or not isinstance(metadata.get("files"), dict):
        return None
    ours = set(FILES.values()) | set(ENGINE_FILES)
    return {name for name in metadata["files"].values() if isinstance(name, str) and name in ours} | {"metadata.json"}


def _collisions(outdir, names):
    """Names this export would write over that are not provably an earlier export's own files."""
    if not outdir.is_dir():
        return []
    owned = previous_export(outdir) or set()
    return sorted(name for name in names if name not in owned and os.path.lexists(outdir / name))


def _make_stage(outdir):
    """A new hidden directory inside ``outdir`` (beside it when it does not exist yet), so moving
    files out of it is a rename; OutputError when ``outdir`` cannot take this export."""
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(outdir, "exists and is not a directory", "give a new or empty directory")
    taken = _collisions(outdir, set(FILES.values()) | set(ENGINE_FILES) | {"metadata.json"})
    if taken:
        raise OutputError(outdir, f"holds {', '.join(taken)}, not written by an earlier export", "give a new or empty directory; nothing was changed")
    try:
        parent = outdir if outdir.is_dir() else outdir.parent
        parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".restore-export.", suffix=".partial", dir=parent))
        os.chmod(stage, new_file_mode(directory=True))  # mkdtemp makes 0700
    except OSError as e:
        raise OutputError(outdir, f"cannot write here: {e.strerror}", "choose a writable output path") from None
    return stage


def check_outdir(outdir):
    """Fail in a second, not after the export, when ``outdir`` cannot be written."""
    _make_stage(Path(os.path.abspath(outdir))).rmdir()


@contextlib.contextmanager
def staging_dir(outdir):
    """A fresh temporary directory, whose files are moved into ``outdir`` on success and which is
    removed on failure (Ctrl-C included). ``outdir`` may hold a user's other files: they stay. An
    earlier export's files are replaced; its metadata.json goes first and the new one comes last,
    so an interruption in between leaves no folder that looks like a complete artifact."""
    outdir = Path(os.path.abspath(outdir))
    stage = _make_stage(outdir)
    try:
        yield stage
        if not outdir.exists():
            os.replace(stage, outdir)
            return
        new = {p.name for p in stage.iterdir()}
        taken = _collisions(outdir, new)
        if taken:  # appeared while exporting
            raise OutputError(outdir, f"holds {', '.join(taken)}, not written by an earlier export", "give a new or empty directory")
        old = previous_export(outdir) or set()
        if "metadata.json" in old:
            os.unlink(outdir / "metadata.json")
        for name in sorted(new - {"metadata.json"}):
            os.replace(stage / name, outdir / name)
        for name in sorted(old - new):  # e.g. the engine of an earlier --target trt export
            with contextlib.suppress(OSError):
                os.unlink(outdir / name)
        os.replace(stage / "metadata.json", outdir / "metadata.json")
        stage.rmdir()
    except OSError as e:
        shutil.rmtree(stage, ignore_errors=True)
        raise output_error(outdir, e) from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def export_checkpoint(checkpoint, outdir, options, log=print):
    """Export ``checkpoint`` into ``outdir``; returns the metadata written."""
    from .trt_build import build_engine, load_builder, require_builder

    if options.target not in ("onnx", "trt", "all"):
        raise ConfigError(f"--target {options.target}", "unknown target", "use onnx, trt or all")
    if not onnx_export.MIN_OPSET <= options.opset <= onnx_export.MAX_OPSET:
        raise ConfigError(f"--opset {options.opset}", "not supported by the exporter",
                          f"use {onnx_export.MIN_OPSET}..{onnx_export.MAX_OPSET} (default {onnx_export.DEFAULT_OPSET})")
    builder = require_builder() if options.target == "trt" else (load_builder() if options.target == "all" else None)
    checkpoint = Path(checkpoint)
    ckpt, model = load_generator(checkpoint)
    tile = check_tile(model, options.tile)
    check_outdir(outdir)
    low, high = options.batch
    batch = {"min": low, "opt": max(low, min(high, 4)), "max": high}
    plugin_count = probe_plane_shapes(model, tile, model.in_channels)
    inputs = validate.sample_inputs(model.in_channels, tile, min(max(2, low), high))
    timings = {}

    def trace(key, variant, **kw):
        start = time.perf_counter()
        proto = onnx_export.trace_to_onnx(model, variant, tile, (low, high), opset=options.opset, **kw)
        timings[key] = round(time.perf_counter() - start, 2)
        log(f"traced {FILES[key]} ({timings[key]} s)")
        return proto

    graphs = {"onnx": trace("onnx", "matmul"), "plugin_onnx": trace("plugin_onnx", "plugin")}
    estimator = None
    if takes_posterior(model):
        start = time.perf_counter()
        estimator = onnx_export.trace_estimator(model, tile, ESTIMATE_TILES, opset=options.opset)
        timings["estimator_onnx"] = round(time.perf_counter() - start, 2)
        log(f"traced {FILES['estimator_onnx']} ({timings['estimator_onnx']} s)")
    fp16_report = None
    if options.fp16:
        peaks = fp16.activation_peaks(model, [torch.from_numpy(x) for x in inputs.values()])
        kept_fp32 = fp16.fp32_islands(peaks, declared=declared_fp32(model))
        largest = sorted(((k, p) for k, p in peaks.items() if k), key=lambda item: -item[1])[:5]
        fp16_report = {
            "kept_fp32_modules": kept_fp32,
            "rule": f"a module is kept fp32 when its peak x {fp16.HEADROOM:g} > {fp16.FP16_MAX:g} (export/fp16.py)",
            "largest_peaks": {name: round(peak, 3) for name, peak in largest},
            "spectrum_peaks": {key: round(peak, 3) for key, peak in peaks.items() if key.endswith(":spectrum")},
        }
        graphs["fp16_onnx"] = trace("fp16_onnx", "matmul", half=True, fp32_modules=kept_fp32)
        graphs["fp16_plugin_onnx"] = trace("fp16_plugin_onnx", "plugin", half=True, fp32_modules=kept_fp32)
    nodes = [n for n in graphs["plugin_onnx"].graph.node if n.op_type == OP_TYPE]
    assert len(nodes) == plugin_count, f"{len(nodes)} plugin nodes for {plugin_count} bottlenecks"

    figures = {"skipped": "--no-validate"}
    if options.validate:
        figures = _validate(model, graphs, inputs, estimator)
        log(f"validated: {json.dumps(figures['max_abs_error'])}")

    metadata = {
        "format": ARTIFACT_FORMAT,
        "model": {
            "arch": ckpt["arch"], "config": ckpt["config"], "params": count_parameters(model),
            "checkpoint": checkpoint.name, "checkpoint_sha256": file_sha256(checkpoint),
            "metrics": ckpt.get("metrics") or {},
        },
        "io": {
            "in_channels": model.in_channels, "out_channels": model.out_channels, "scale": model.scale,
            "size_multiple": model.size_multiple, "fixed_size": getattr(model, "fixed_size", None),
            "value_range": [0, 1],
            "normalisation": {"mean": [0.0] * model.in_channels, "std": [1.0] * model.in_channels},
            "layout": "NCHW", "color": "GRAY" if model.in_channels == 1 else "RGB",
            "input": "input", "output": "output",
        },
        "tiling": {"tile": tile, "overlap": recommended_overlap(model, tile)},
        "shapes": {"tile": tile, "batch": batch},
        "files": {key: FILES[key] for key in graphs} | ({"estimator_onnx": FILES["estimator_onnx"]} if estimator else {}),
        "plugin": {"name": OP_TYPE, "version": PLUGIN_VERSION, "namespace": PLUGIN_NAMESPACE, "count": plugin_count},
        "exporter": _versions(options.opset, graphs["onnx"].ir_version),
        "fp16": fp16_report,
        # one blur estimate per picture: the runtime runs the estimator graph on up to "tiles" of
        # the picture's tiles and gives its posterior to every tile of it
        "estimate": None if estimator is None else {
            "file": FILES["estimator_onnx"], "input": "tiles", "output": "posterior", "restorer_input": "posterior",
            "tiles": ESTIMATE_TILES, "classes": int(estimator.graph.output[0].type.tensor_type.shape.dim[1].dim_value),
        },
        "validation": figures,
        "engine": None,
    }
    metadata["exporter"]["trace_seconds"] = timings

    with staging_dir(outdir) as stage:
        for key, proto in graphs.items():
            onnx_export.save_onnx(proto, stage / FILES[key])
        if builder is None:
            metadata["engine"] = {"skipped": "no TensorRT builder installed" if options.target == "all" else "--target onnx"}
            if options.target == "all":
                log("engine skipped: no TensorRT builder installed (pip install 'restore[trt-rtx]')")
        else:
            metadata["engine"] = _build(builder, graphs, stage, metadata, options, inputs, log)
            metadata["files"]["engine"] = metadata["engine"]["file"]
            if options.fp16:  # the runtime also looks the fp16 engine up under this key
                metadata["files"]["fp16_engine"] = metadata["engine"]["file"]
        for key, proto in {**graphs, **({"estimator_onnx": estimator} if estimator else {})}.items():
            onnx_export.set_metadata(proto, metadata)  # the final metadata, validation figures included
            onnx_export.save_onnx(proto, stage / FILES[key])
        (stage / "metadata.json").write_text(json.dumps(metadata, indent=2, sort_keys=False) + "\n")
    log(f"wrote {outdir}")
    return metadata


def _validate(model, graphs, inputs, estimator=None):
    """Every graph against the torch model (see validate.py). With an estimator graph, each input
    batch is one picture's tiles: its posterior from the estimator graph (checked against torch's)
    goes to every restorer graph with it."""
    for key, proto in graphs.items():
        validate.check_graph(proto, FILES[key])
    posteriors, figures = {name: None for name in inputs}, {"inputs": {name: list(x.shape) for name, x in inputs.items()}}
    if estimator is not None:
        validate.check_graph(estimator, FILES["estimator_onnx"])
        session = validate.ort_session(estimator)
        posteriors = {n: session.run(None, {"tiles": x})[0] for n, x in inputs.items()}
        with torch.no_grad():
            torch_posteriors = {n: model.estimate(torch.from_numpy(x)).numpy() for n, x in inputs.items()}
        figures["estimator_max_abs_error"] = validate.compare_fp32(FILES["estimator_onnx"], torch_posteriors, posteriors)
    with torch.no_grad():
        expected = {name: model(torch.from_numpy(x), *_given(posteriors[name])).numpy() for name, x in inputs.items()}
    from restore.kernels.fourier_bottleneck.ort_op import plugin_session

    def outputs(session):
        return {n: validate.run(session, x, posteriors[n]) for n, x in inputs.items()}

    out = {"onnx": outputs(validate.ort_session(graphs["onnx"])), "plugin_onnx": outputs(plugin_session(graphs["plugin_onnx"]))}
    figures["max_abs_error"] = {key: validate.compare_fp32(FILES[key], expected, out[key]) for key in ("onnx", "plugin_onnx")}
    figures["tolerance"] = validate.FP32_TOLERANCE
    if "fp16_onnx" in graphs:
        half = {"fp16_onnx": validate.ort_session(graphs["fp16_onnx"]), "fp16_plugin_onnx": plugin_session(graphs["fp16_plugin_onnx"])}
        figures["fp16_psnr_db"] = {key: validate.compare_fp16(FILES[key], out["onnx"], outputs(s)) for key, s in half.items()}
        figures["fp16_min_psnr_db"] = validate.FP16_MIN_PSNR
    return figures


def _given(posterior):
    return () if posterior is None else (torch.from_numpy(posterior),)


def _build(builder, graphs, stage, metadata, options, inputs, log):
    from restore.kernels.fourier_bottleneck.trt_plugin import PluginSetupError, register_trt_plugin

    from .trt_build import build_engine

    trt, flavour = builder
    source = "fp16_plugin_onnx" if options.fp16 else "plugin_onnx"
    engine_name = "model.fp16.engine" if options.fp16 else "model.engine"
    if metadata["plugin"]["count"]:
        try:
            register_trt_plugin(trt)
        except PluginSetupError as e:
            raise BackendError(flavour, f"cannot register the {OP_TYPE} plugin: {e}", "or export with --target onnx") from None
    shapes = metadata["shapes"]
    tile = shapes["tile"]
    log(f"building {engine_name} with {flavour} from {FILES[source]}")
    info = build_engine(
        stage / FILES[source], stage / engine_name,
        batch=(shapes["batch"]["min"], shapes["batch"]["opt"], shapes["batch"]["max"]), tile=(tile, tile, tile),
        timing_cache=options.timing_cache,
    )
    info["file"] = engine_name
    info["precision"] = "fp16" if options.fp16 else "fp32"
    log(f"built {engine_name} in {info['build_seconds']} s")
    if options.validate:
        reference = graphs["fp16_onnx" if options.fp16 else "onnx"]
        info["validation"] = validate.compare_engine_with_ort(stage / engine_name, reference, inputs, register_trt_plugin)
    return info


def _versions(opset, ir_version):
    import importlib.metadata as md

    def version(dist):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    return {
        "restore": version("restore"), "torch": torch.__version__, "onnx": version("onnx"),
        "onnxruntime": version("onnxruntime"), "opset": opset, "ir_version": ir_version,
        "portable_bottleneck": "matmul-dft",
    }
