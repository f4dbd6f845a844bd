"""Find out what a model argument points at, and read the export artifact's metadata.

A model is given as "default" (the shipped model in runtime/models/default/), an artifact
directory (metadata.json + model.onnx / engines, written by ``restore-export``), a single
.onnx / .engine file (its directory's metadata.json is used when present), or a checkpoint
(.pt / .safetensors, needs torch). Everything the runtime needs (scale, channels, tile and
overlap advice, normalisation) comes from metadata.json, never from trainer code; it is read
and checked by runtime/metadata.py, and every file of a directory must lie inside it.
"""
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError, ModelError
from .metadata import inside, read_metadata

DEFAULT_MODEL_DIR = Path(__file__).parent / "models" / "default"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")
DEFAULT_TILE, DEFAULT_OVERLAP, DEFAULT_BATCH = 256, 32, 4


@dataclass
class ModelSource:
    """Paths of the usable files of one model plus its metadata (empty dict when there is none)."""

    name: str  # what the user gave, for messages
    onnx: Path = None
    fp16_onnx: Path = None
    plugin_onnx: Path = None
    engine: Path = None
    fp16_engine: Path = None
    checkpoint: Path = None
    estimator: Path = None  # the blur estimator graph a restorer graph with a "posterior" input needs
    metadata: dict = field(default_factory=dict)

    @property
    def io(self):
        return self.metadata.get("io", {})

    @property
    def tiling(self):
        """Tile, overlap and batch advice: metadata first, then the runtime's defaults."""
        tiling = self.metadata.get("tiling", {})
        batch = self.metadata.get("shapes", {}).get("batch", {})
        return {
            "tile": tiling.get("tile", DEFAULT_TILE),
            "overlap": tiling.get("overlap", DEFAULT_OVERLAP),
            "batch": batch.get("opt", DEFAULT_BATCH),
        }

    @property
    def normalisation(self):
        norm = self.io.get("normalisation") or {}
        return norm.get("mean"), norm.get("std")

    def describe(self):
        kinds = [k for k in ("onnx", "fp16_onnx", "plugin_onnx", "engine", "fp16_engine", "checkpoint") if getattr(self, k)]
        arch = self.metadata.get("model", {}).get("arch")
        return f"{self.name} ({arch or 'unknown arch'}; files: {', '.join(kinds) or 'none'})"


def resolve_model(model):
    """Turn the user's model argument into a ModelSource, or raise ModelError/ConfigError."""
    if isinstance(model, ModelSource):
        return model
    if model is None or str(model) == "default":
        if not DEFAULT_MODEL_DIR.is_dir() or not any(DEFAULT_MODEL_DIR.iterdir()):
            raise ModelError("default", f"the shipped model is not installed in {DEFAULT_MODEL_DIR}", "pass --model PATH to an exported artifact or checkpoint")
        source = _from_directory(DEFAULT_MODEL_DIR)
        source.name = "default"
        return source
    path = Path(model)
    if not path.exists():
        raise ConfigError(model, "no such model file or directory", "give 'default', an artifact directory, an .onnx/.engine file or a checkpoint")
    if path.is_dir():
        return _from_directory(path)
    if path.stat().st_size == 0:
        raise ModelError(model, "the file is empty (0 bytes)", "an export or copy did not finish; export or copy it again")
    suffix = path.suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        return ModelSource(name=str(model), checkpoint=path)
    metadata = read_metadata(path.parent / "metadata.json") if (path.parent / "metadata.json").is_file() else {}
    estimator = (metadata.get("files") or {}).get("estimator_onnx")
    estimator = inside(path.parent, estimator, "files.estimator_onnx") if estimator and (path.parent / estimator).is_file() else None
    if suffix == ".onnx":
        return ModelSource(name=str(model), onnx=path, estimator=estimator, metadata=metadata)
    if suffix in (".engine", ".plan", ".trt"):
        return ModelSource(name=str(model), engine=path, estimator=estimator, metadata=metadata)
    raise ConfigError(model, f"unknown model file type {suffix!r}", "give an .onnx, .engine, .pt or .safetensors file, or an artifact directory")


def _from_directory(directory):
    meta_path = directory / "metadata.json"
    metadata = read_metadata(meta_path) if meta_path.is_file() else {}
    files = metadata.get("files", {})

    def pick(key, *fallbacks):
        for name in (files.get(key), *fallbacks):
            if name and (directory / name).is_file():
                return inside(directory, name, f"files.{key}" if name == files.get(key) else name)
        return None

    checkpoints = sorted(inside(directory, p.name, p.name) for p in directory.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file())
    source = ModelSource(
        name=str(directory),
        onnx=pick("onnx", "model.onnx"),
        fp16_onnx=pick("fp16_onnx", "model.fp16.onnx"),
        plugin_onnx=pick("plugin_onnx", "model.plugin.onnx"),
        engine=pick("engine", "model.engine"),
        fp16_engine=pick("fp16_engine", "model.fp16.engine"),
        checkpoint=checkpoints[0] if checkpoints else None,
        estimator=pick("estimator_onnx"),
        metadata=metadata,
    )
    if not any((source.onnx, source.fp16_onnx, source.engine, source.fp16_engine, source.checkpoint)):
        raise ModelError(directory, "no model.onnx, engine or checkpoint in this directory", "export one with `restore-export`")
    return source
