"""Run a matrix of benchmark cases: models x backends x sizes x tiles x precisions.

Models are given as a zoo name (``fourier-unet``, ``nafnet``, ``mimo-unet``, ``deeprft``, ... built
randomly initialised: speed does not depend on the weights), ``default`` (the shipped model), an
export artifact directory, or a checkpoint file.

Backends:
- ``torch``: the model in-process on whole frames (the compute-only reference), or through the
  runtime's tiler with ``--tile``. Needs a torch model: a zoo name, a checkpoint, or an artifact
  directory holding its checkpoint.
- ``onnxruntime``, ``openvino``, ``tensorrt``, ``auto``, ``runtime:torch``: the runtime's ``Restorer``
  (tiled as the runtime tiles; ``auto`` is the runtime's default choice, recorded in
  ``backend_choice``; ``runtime:torch`` is the runtime's own torch backend). A zoo name is first
  saved as a checkpoint and, for ONNX Runtime and TensorRT, exported with ``restore-export``'s
  ``export_checkpoint`` into a temporary artifact directory (kept for the process).
"""
import datetime
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path

from restore.runtime.errors import ConfigError

from .harness import RestorerRunner, TorchRunner, cpu_threads, parse_size, run_case, synthetic_frame

TORCH_BACKENDS = ("torch",)
RUNTIME_BACKENDS = ("onnxruntime", "openvino", "tensorrt", "auto", "runtime:torch")
PRECISIONS = ("fp32", "fp16", "bf16")
FORMAT = "restore-bench/1"


@dataclass(frozen=True)
class Case:
    model: str
    backend: str
    size: tuple  # (width, height)
    tile: int  # None = whole frame
    precision: str

    @property
    def label(self):
        tile = f" tile {self.tile}" if self.tile else ""
        return f"{self.model} {self.backend} {self.precision} {self.size[0]}x{self.size[1]}{tile}"


def zoo_names():
    import restore.benchmarks.peers  # noqa: F401  (registers the peers)
    from restore.trainer.models import list_models

    return list_models()


def load_torch_model(spec):
    """A torch model (eval mode) for ``spec``, and a short description of where it came from."""
    import torch

    from restore.trainer.models import build_model

    path = _model_path(spec)
    if path is None:
        if spec not in zoo_names():
            raise ConfigError(spec, "unknown model", f"give a zoo name ({', '.join(zoo_names())}), 'default', an artifact directory or a checkpoint")
        torch.manual_seed(0)
        return build_model(spec).eval(), "randomly initialised"
    from restore.trainer.checkpoint import model_from_checkpoint

    checkpoint = path
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".pt", ".pth"))
        if not found:
            raise ConfigError(path, "no checkpoint in this artifact directory for the torch backend", "use --backend onnxruntime or tensorrt")
        checkpoint = found[0]
    return model_from_checkpoint(checkpoint).eval(), f"checkpoint {checkpoint.name}"


def _model_path(spec):
    if spec == "default":
        from restore.runtime.artifact import DEFAULT_MODEL_DIR

        if not DEFAULT_MODEL_DIR.is_dir():
            raise ConfigError("default", f"the shipped model is not installed in {DEFAULT_MODEL_DIR}", "name a zoo model (fourier-unet) or a path")
        return DEFAULT_MODEL_DIR
    path = Path(spec)
    return path if path.exists() else None


def validate(models, backends, sizes, tiles, precisions):
    """Check every option before any case runs, so a typo fails in a second, not after an hour."""
    known = set(zoo_names())
    for m in models:
        if m not in known and m != "default" and not Path(m).exists():
            raise ConfigError(m, "unknown model", f"give a zoo name ({', '.join(sorted(known))}), 'default', an artifact directory or a checkpoint")
    for b in backends:
        if b not in TORCH_BACKENDS + RUNTIME_BACKENDS:
            raise ConfigError(b, "unknown backend", f"choose from {', '.join(TORCH_BACKENDS + RUNTIME_BACKENDS)}")
    for p in precisions:
        if p not in PRECISIONS:
            raise ConfigError(p, "unknown precision", f"choose from {', '.join(PRECISIONS)}")
    for t in tiles:
        if t is not None and t < 16:
            raise ConfigError(f"tile {t}", "tile too small", "use at least 16 pixels, or 0 for whole frames")
    return [parse_size(s) if isinstance(s, str) else tuple(s) for s in sizes]


def cases(models, backends, sizes, tiles, precisions):
    sizes = validate(models, backends, sizes, tiles, precisions)
    return [Case(m, b, s, t, p) for m in models for b in backends for s in sizes for t in tiles for p in precisions]


CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8")


def device_info(device):
    import torch

    info = {"device": str(device), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, **cpu_threads()}
    if str(device).startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gb=props.total_memory / 2**30, capability=f"{props.major}.{props.minor}")
    else:
        info["name"] = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                lines = f.read().splitlines()
        except OSError:
            lines = []
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
        info["name"] = names[0] if names else info["name"]
        info["features"] = [f for f in CPU_FEATURES if f in flags]  # what lower precisions can run on
    return info


def _model_stats(model, precision, height, width, frame_pixels, copies=1):
    """FLOPs, bytes moved and parameters of ``copies`` forward passes of ``model`` on an
    (height, width) input, per frame of ``frame_pixels`` pixels."""
    import torch

    from restore.trainer.models import count_parameters

    from .flops import count_model

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    count = count_model(model, (1, getattr(model, "in_channels", 3), height, width), dtype)
    flops, nbytes = count.flops * copies, count.bytes_moved * copies
    return {"params": count_parameters(model), "flops_per_frame": flops, "flops_per_pixel": flops / frame_pixels,
            "bytes_per_frame": nbytes, "flops_by_op": {k: v * copies for k, v in count.by_op.items()}}


def run_one(case, frames, warmup, device, rates=None, progress=None, stream=True):
    """Measure one case; returns its result record (``error`` set instead of figures on failure).

    ``stream``: on a GPU, whole-frame torch cases are also streamed double-buffered
    (``streaming.py``) for frames/s, overlap efficiency and pipeline overhead."""
    record = {"model": case.model, "backend": case.backend, "precision": case.precision,
              "size": f"{case.size[0]}x{case.size[1]}", "width": case.size[0], "height": case.size[1],
              "tile": case.tile, "frames": frames, "warmup": warmup, "device": str(device)}
    frame = synthetic_frame(*case.size)
    if case.backend in TORCH_BACKENDS:
        model, origin = load_torch_model(case.model)
        record.update(origin=origin, arch=getattr(model, "arch", None))
        runner = TorchRunner(model, device, case.precision, tile=case.tile)
    else:
        stats = None
        restorer = _restorer(case, device)
        runner = RestorerRunner(restorer, device)
        record.update(origin="runtime", backend_picked=restorer.backend.name, backend_choice=restorer.backend_choice or None,
                      precision=restorer.backend.precision)  # auto's pick runs the backend's best precision
    record["backend_description"] = runner.description
    record.update(run_case(runner, frame, frames=frames, warmup=warmup, progress=progress))
    record["overlap_efficiency"] = None
    if stream and runner.name == "torch" and runner.cuda and not case.tile:
        record.update(_stream_figures(runner, frame, frames, warmup, record["stages_ms"]))
    if case.backend in TORCH_BACKENDS:
        w, h = case.size
        if case.tile:  # what the model really computes: whole tiles, as many as the tiler cut
            tiles, (th, tw) = runner.tiles_per_frame, runner.tile_shape
            stats = _model_stats(model, case.precision, th, tw, w * h, copies=tiles)
            record["tiles_per_frame"] = tiles
        else:
            m = runner.multiple
            stats = _model_stats(model, case.precision, h + (-h % m), w + (-w % m), w * h)
    if stats:
        record.update(stats)
        compute_ms = record["stages_ms"]["compute"]
        record["achieved_tflops"] = stats["flops_per_frame"] / (compute_ms * 1e-3) / 1e12 if compute_ms else None
        if rates is not None:
            from .floor import floor_ms

            c, m, f = floor_ms(stats["flops_per_frame"], stats["bytes_per_frame"], rates)
            record["floor"] = {"compute_ms": c, "memory_ms": m, "floor_ms": f,
                               "compute_over_floor": compute_ms / f if compute_ms else None,
                               "latency_over_floor": record["latency_ms"]["p50"] / f}
    close = getattr(getattr(runner, "restorer", None), "close", None)
    if close:
        close()
    return record


def _stream_figures(runner, frame, frames, warmup, stages):
    from .harness import overlap_efficiency
    from .streaming import measure_stream

    stream = measure_stream(runner, frame, frames=frames, warmup=min(warmup, 3))
    compute = stages["compute"]
    return {"stream_fps": stream["fps"], "stream_period_ms": stream["period_ms"],
            "pipeline_overhead": stream["period_ms"] / compute - 1 if compute else None,
            "overlap_efficiency": overlap_efficiency([stages["upload"], compute, stages["download"]], stream["period_ms"])}


def _restorer(case, device):
    from restore.runtime.api import Restorer

    backend = case.backend.removeprefix("runtime:")
    precision = case.precision if backend != "auto" else None
    model = case.model
    if _model_path(model) is None:
        model = _zoo_artifact(model, case.tile, precision == "fp16", needs_onnx=backend != "torch")
    return Restorer(str(model), backend=backend, tile=case.tile, device=str(device), precision=precision)


_ARTIFACTS = {}


def _zoo_artifact(name, tile, fp16, needs_onnx):
    """A checkpoint of the randomly initialised zoo model, exported to an artifact directory when
    the backend needs ONNX or an engine (cached per process: exports take a while)."""
    key = (name, tile, fp16, needs_onnx)
    if key not in _ARTIFACTS:
        from restore.trainer.checkpoint import save_checkpoint

        torch_model, _ = load_torch_model(name)
        tmp = Path(tempfile.mkdtemp(prefix="restore-bench-"))
        checkpoint = tmp / f"{name}.safetensors"
        save_checkpoint(checkpoint, torch_model)
        _ARTIFACTS[key] = checkpoint
        if needs_onnx:
            from restore.export.exporter import ExportOptions, export_checkpoint

            export_checkpoint(checkpoint, tmp / "artifact", ExportOptions(tile=tile, fp16=fp16, validate=False), log=lambda m: None)
            _ARTIFACTS[key] = tmp / "artifact"
    return _ARTIFACTS[key]


def run_matrix(case_list, frames, warmup, device, measure_floor=True, progress=None, on_result=None, stream=True):
    """All cases in order; failures are recorded in their case and do not stop the others."""
    from .floor import device_rates

    rates = device_rates(device) if measure_floor else None
    results = []
    for case in case_list:
        try:
            record = run_one(case, frames, warmup, device, rates, progress, stream)
        except Exception as e:  # one case failing (out of memory, backend missing) must not stop the matrix
            record = {"model": case.model, "backend": case.backend, "precision": case.precision,
                      "size": f"{case.size[0]}x{case.size[1]}", "width": case.size[0], "height": case.size[1],
                      "tile": case.tile, "error": f"{type(e).__name__}: {e}"}
        results.append(record)
        if on_result:
            on_result(record)
    return {"format": FORMAT, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": device_info(device), "rates": rates.as_dict() if rates else None, "results": results}
