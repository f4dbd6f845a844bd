"""Self-describing checkpoints: architecture name + config + weights (+ training state, metrics).

Two formats, one loader:
  *.pt           torch.save of a dict (training checkpoints; resumable)
  *.safetensors  weights with the description in the header metadata (shipped models)
Both are written atomically. ``load_checkpoint`` turns a missing, truncated or foreign file into a
one-line ModelError / InputError.
"""
import hashlib
import json
from pathlib import Path

import torch

from restore.runtime.atomic import atomic_path
from restore.runtime.errors import InputError, ModelError

from .models import build_model

FORMAT = "restore-checkpoint/1"


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
    if not path.is_file():
        raise InputError(path, "checkpoint not found", "give the path of a .pt or .safetensors file")
    if path.stat().st_size == 0:
        raise InputError(path, "checkpoint file is empty", "the save was interrupted; use an earlier checkpoint")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get("restore", "{}"))
                state = {k: f.get_tensor(k) for k in f.keys()}
            ckpt = {**meta, "state_dict": state, "training": None}
        else:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch.load and safetensors raise many kinds for a bad file
        raise ModelError(path, f"not a readable checkpoint ({type(e).__name__})", "the file may be truncated or of another kind") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "arch" not in ckpt:
        raise ModelError(path, "not a restore checkpoint (no architecture description)", "train one with `restore train`")
    ckpt["path"] = str(path)  # for messages about the loaded dict
    return ckpt


def model_from_checkpoint(ckpt, *, strict=True):
    """Rebuild the model of a checkpoint (a path or a loaded dict), weights loaded, in eval mode."""
    source = ckpt
    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt)
    model = build_model({"type": ckpt["arch"], **ckpt["config"]})
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


def init_weights(model, path):
    """Fine-tuning start: load the weights of checkpoint ``path`` into ``model`` (same
    architecture). Parameters the model has and the file lacks (blocks added since, e.g.
    fourier-unet's ``level_fourier``) keep their initialisation; anything else that does not fit is
    an error. Returns the names of the parameters left as initialised."""
    ckpt = load_checkpoint(path)
    if ckpt["arch"] != model.arch:
        raise ModelError(path, f"holds a {ckpt['arch']!r} model, not {model.arch!r}", "train.init must name weights of the same architecture")
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
