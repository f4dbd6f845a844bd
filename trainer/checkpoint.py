"""Self-describing checkpoints: architecture name + config + weights (+ training state, metrics).

Two formats, one loader:
  *.pt           torch.save of a dict (training checkpoints; resumable)
  *.safetensors  weights with the description in the header metadata (shipped models)
Both are written atomically. ``load_checkpoint`` is the one reader of model files: it turns a
missing, truncated or foreign file into a one-line ModelError / InputError, never runs code a file
carries (pickles are read with ``weights_only``) and checks the description (arch, config) before
anything is built from it; ``model_from_checkpoint`` sizes the model on the meta device before
allocating it.
"""
import hashlib
import json
import math
import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from restore.runtime.atomic import atomic_path
from restore.runtime.errors import ConfigError, InputError, ModelError
from restore.runtime.image_header import not_a_file

from .models import build_model

FORMAT = "restore-checkpoint/1"
# Bounds of a model description: generous for every zoo config, small enough that nothing built
# from a hostile one can exhaust memory before the weights are compared.
MAX_CONFIG_INT = 8192
MAX_CONFIG_ITEMS = 64
MAX_NAME = 128


def _allowed_globals():
    """What a .pt may name besides tensors and plain containers: NumPy arrays (the NumPy RNG state
    in a training checkpoint). Any other class or function a pickle names is refused, so loading a
    file never calls code it chose."""
    multiarray = getattr(np, "_core", None) or np.core
    return [multiarray.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def save_checkpoint(path, model, *, training=None, metrics=None, extra=None):
    """Write a checkpoint of ``model`` (built by ``build_model``) to ``path`` (.pt or .safetensors).

    ``training`` (optimizer, step, EMA, ... state) is kept only in .pt files."""
    path = Path(path)
    meta = {"format": FORMAT, "arch": model.arch, "config": model.config, "metrics": metrics or {}}
    meta.update(extra or {})
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, str(tmp), metadata={"restore": json.dumps(meta)})
        else:
            torch.save({**meta, "state_dict": state, "training": training}, tmp)
    return path


def load_checkpoint(path):
    """Return the checkpoint as a dict with keys format, arch, config, metrics, state_dict, training."""
    path = Path(path)
    problem = not_a_file(path)
    if problem:
        problem = "checkpoint not found" if problem.startswith("no such") else f"checkpoint is {problem}"
        raise InputError(path, problem, "give the path of a .pt or .safetensors file")
    if path.stat().st_size == 0:
        raise InputError(path, "checkpoint file is empty", "the save was interrupted; use an earlier checkpoint")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get("restore", "{}"))
                state = {k: f.get_tensor(k) for k in f.keys()}
            ckpt = {**meta, "state_dict": state, "training": None} if isinstance(meta, dict) else meta
        else:
            with warnings.catch_warnings(), torch.serialization.safe_globals(_allowed_globals()):
                warnings.simplefilter("ignore")  # torch warns about pickle protocols of foreign files
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        named = re.search(r"GLOBAL (\S+)|but got (<[^>]*>)", str(e))
        if named:
            raise ModelError(path, f"holds a pickle that names {named.group(1) or named.group(2)}, which could run code when loaded; refused",
                             "only tensors and plain data are loaded: save the weights as .safetensors") from None
        raise ModelError(path, "not a readable checkpoint (UnpicklingError)", "the file may be truncated or of another kind") from None
    except Exception as e:  # torch.load and safetensors raise many kinds for a bad file
        raise ModelError(path, f"not a readable checkpoint ({type(e).__name__})", "the file may be truncated or of another kind") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "arch" not in ckpt:
        raise ModelError(path, "not a restore checkpoint (no architecture description)", "train one with `restore train`")
    _check_description(path, ckpt)
    ckpt["path"] = str(path)  # for messages about the loaded dict
    return ckpt


def _check_description(path, ckpt):
    """Types and bounds of what a model is built from; ModelError naming the field otherwise."""
    def bad(field, problem):
        raise ModelError(path, f"field {field}: {problem}", "the checkpoint's description is damaged or foreign; use a checkpoint written by restore")

    arch = ckpt["arch"]
    if not isinstance(arch, str) or not 0 < len(arch) <= MAX_NAME:
        bad("arch", f"expected an architecture name, got {_shown(arch)}")
    config = ckpt.get("config")
    if not isinstance(config, dict):
        bad("config", f"expected an object, got {_shown(config)}")
    if len(config) > MAX_CONFIG_ITEMS:
        bad("config", f"{len(config)} entries, more than {MAX_CONFIG_ITEMS}")
    for key, value in config.items():
        if not isinstance(key, str) or key in ("type", "name") or len(key) > MAX_NAME:
            bad(f"config.{key}", "not an allowed option name")
        _check_config_value(bad, f"config.{key}", value, depth=0)
    if not isinstance(ckpt.get("metrics", {}), dict):
        bad("metrics", f"expected an object, got {_shown(ckpt['metrics'])}")
    state = ckpt.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        bad("state_dict", "expected names of tensors")
    if ckpt.get("training") is not None and not isinstance(ckpt["training"], dict):
        bad("training", f"expected an object, got {_shown(ckpt['training'])}")


def _check_config_value(bad, field, value, depth):
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > MAX_CONFIG_INT:
            bad(field, f"{value} is beyond {MAX_CONFIG_INT}")
    elif isinstance(value, float):
        if not math.isfinite(value) or abs(value) > MAX_CONFIG_INT:
            bad(field, f"{value} is not a finite number within {MAX_CONFIG_INT}")
    elif isinstance(value, str):
        if len(value) > MAX_NAME:
            bad(field, f"a string of {len(value)} characters, more than {MAX_NAME}")
    elif isinstance(value, (list, tuple)) and depth == 0:
        if len(value) > MAX_CONFIG_ITEMS:
            bad(field, f"{len(value)} items, more than {MAX_CONFIG_ITEMS}")
        for i, item in enumerate(value):
            _check_config_value(bad, f"{field}[{i}]", item, depth + 1)
    else:
        bad(field, f"{_shown(value)} is not a number, string, flag or flat list")


def _shown(value):
    return "null" if value is None else f"{type(value).__name__} {repr(value)[:40]}"


def model_from_checkpoint(ckpt, *, strict=True):
    """Rebuild the model of a checkpoint (a path or a loaded dict), weights loaded, in eval mode."""
    source = ckpt
    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt)
    model = _build_sized(ckpt)
    try:
        model.load_state_dict(ckpt["state_dict"], strict=strict)
    except RuntimeError as e:
        # torch's first line is only "Error(s) in loading state_dict for X:"; the next one says what.
        lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        detail = detail if len(detail) <= 160 else detail[:157] + "..."
        subject = ckpt.get("path", ckpt["arch"]) if isinstance(source, dict) else source
        raise ModelError(subject, f"weights do not fit architecture {ckpt['arch']!r} ({detail})",
                         "the file's weights belong to another architecture or config; use the checkpoint it was trained as") from None
    return model.eval()


def _build_sized(ckpt):
    """Build the checkpoint's model, first on the meta device (no memory) to check that the config
    describes no more weights than the file holds: a hostile ``widths: [1000000]`` is refused
    before anything is allocated."""
    subject = ckpt.get("path", ckpt["arch"])
    spec = {"type": ckpt["arch"], **ckpt["config"]}
    held = sum(t.numel() for t in ckpt["state_dict"].values())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "zero-element tensors": the size check and the weights' load answer
            with torch.device("meta"):
                needed = sum(t.numel() for t in build_model(spec).state_dict().values())
            if needed > held:
                raise ModelError(subject, f"field config: weights do not fit architecture {ckpt['arch']!r} (its config describes {needed:,} weights, the file holds {held:,})",
                                 "the config does not belong to these weights; use the checkpoint it was trained as")
            return build_model(spec)
    except ConfigError as e:  # the registry's words, but a checkpoint is a model file (exit 4)
        raise ModelError(subject, f"field config: {e.problem}", e.hint) from None
    except ModelError:
        raise
    except Exception as e:  # whatever a constructor raises for values it cannot take (widths: [] gave IndexError)
        raise ModelError(subject, f"field config: the {ckpt['arch']!r} model cannot be built from it ({type(e).__name__}: {str(e)[:100]})",
                         "use a checkpoint written by restore") from None


def init_weights(model, path):
    """Fine-tuning start: load the weights of checkpoint ``path`` into ``model`` (same
    architecture). Parameters the model has and the file lacks (blocks added since, e.g.
    fourier-unet's ``level_fourier``) keep their initialisation; anything else that does not fit is
    an error. Returns the names of the parameters left as initialised."""
    ckpt = load_checkpoint(path)
    if ckpt["arch"] != model.arch:
        raise ModelError(path, f"holds a {ckpt['arch']!r} model, not {model.arch!r}", "train.init must name weights of the same architecture")
    if hasattr(model, "grow_state_dict"):  # e.g. a kernel bank grown since
        ckpt["state_dict"] = model.grow_state_dict(dict(ckpt["state_dict"]))
    own = model.state_dict()
    misfits = [k for k, v in ckpt["state_dict"].items() if k not in own or own[k].shape != v.shape]
    if misfits:
        raise ModelError(path, f"weights do not fit the model ({len(misfits)} tensors, first {misfits[0]!r})",
                         "train.init must name weights of the same architecture and widths")
    model.load_state_dict(ckpt["state_dict"], strict=False)
    return sorted(set(own) - set(ckpt["state_dict"]))


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
