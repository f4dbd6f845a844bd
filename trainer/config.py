"""Experiment configuration: one YAML file per experiment, section by section, plus dotted
command-line overrides (``train.steps=100 model.widths=[16,32]``).

The config is a plain nested dict. ``load_config`` fills the defaults below, applies overrides,
and checks that every top-level section is known, so a typo fails before training starts, not an
hour into it. The resolved config is saved into the run directory and inside every checkpoint.
"""
import copy
import re
from pathlib import Path

import yaml

from restore.runtime.atomic import atomic_write_text
from restore.runtime.errors import ConfigError, InputError

DEFAULTS = {
    "name": None,
    "seed": 0,
    "model": {"type": "fourier-unet"},
    # None: no adversarial part (pixel-only training)
    "discriminator": None,
    "data": {
        # a dataset config for datasets.build_dataset (required): {type: builtin|synthetic|paired, ...}
        "train": None,
        "batch": 8,
        "workers": 0,
    },
    "val": {"every": 500, "data": "builtin-holdout", "max_crops": 8, "crop": 256},
    "loss": {
        # generator pixel/perceptual terms: list of {type, weight, ...}
        "generator": [{"type": "l1", "weight": 1.0}],
        # adversarial term ({type: bce|relativistic, weight}); used only with a discriminator
        "adversarial": None,
        # weight of the blur-kernel estimate's cross-entropy (fourier-unet with deconv: true; the
        # training data must carry kernels: data.train.kernel_size)
        "kernel": 0.0,
    },
    "train": {
        "steps": 1000,
        # wall-clock budget in minutes (0 = none): training ends at ``steps`` or when the budget
        # is spent, whichever comes first, and the LR schedule follows whichever is further along,
        # so a run on a busy CPU still anneals fully before its deadline.
        "time_budget_min": 0,
        "lr": 2e-4,
        "betas": [0.9, 0.999],
        "weight_decay": 0.0,
        "grad_clip": 0.0,
        "ema": 0.0,
        "amp": True,  # only takes effect on CUDA
        "threads": 0,  # torch CPU threads; 0 = torch's default
        "channels_last": False,  # NHWC memory format for the generator and its batches
        # fine-tuning: start the generator from these weights (a checkpoint or .safetensors of the
        # same architecture; parameters the model has and the file lacks keep their initialisation)
        "init": None,
        "log_every": 10,
        "ckpt_every": 200,
        "sample_every": 0,  # 0 = with every validation
    },
    "schedule": {
        "type": "pixel",  # pixel | gan | nogan
        "lr": "cosine",  # cosine | constant
        "warmup": 0,
        "min_lr_ratio": 0.01,
        "g_per_d": 1,  # generator steps per discriminator step (CelebA seed: 3)
        "d_lr": None,  # default: train.lr
        # nogan: generator alone for g_steps, discriminator alone for d_steps, then GAN
        "nogan_g_steps": 0,
        "nogan_d_steps": 0,
    },
}

SECTIONS = set(DEFAULTS)


def merge(base, update):
    """Recursive dict merge; lists and scalars in ``update`` replace those in ``base``."""
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def parse_value(text):
    """Parse an override value as YAML; YAML 1.1 reads ``1e-3`` as a string, so numbers are
    recognised first."""
    if _NUMBER.match(text.strip()):
        number = float(text)
        return int(number) if re.match(r"^[+-]?\d+$", text.strip()) else number
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(text, f"cannot parse override value: {e.problem}") from None


def apply_override(cfg, item):
    """Apply one ``dotted.key=value`` override in place."""
    if "=" not in item:
        raise ConfigError(item, "override must look like section.key=value", "e.g. train.steps=100")
    key, text = item.split("=", 1)
    parts = key.strip().split(".")
    if parts[0] not in SECTIONS:
        raise ConfigError(key, f"unknown config section {parts[0]!r}", f"known: {', '.join(sorted(SECTIONS))}")
    node = cfg
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(key, f"{'.'.join(parts[:depth])} is not a section")
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = parse_value(text)
    elif isinstance(node, dict):
        node[last] = parse_value(text)
    else:
        raise ConfigError(key, f"{'.'.join(parts[:-1])} is not a section")


def load_config(path=None, overrides=(), *, base=None):
    """Read a YAML experiment file (or start from ``base``), fill defaults, apply overrides."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "config file not found", "see trainer/configs/ for examples")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            # PyYAML's message spans several lines (with a snippet); keep the problem and where.
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(path, f"not valid YAML{where}: {getattr(e, 'problem', None) or e}", "fix the file; see trainer/configs/ for examples") from None
        if not isinstance(raw, dict):
            raise ConfigError(path, "the file must hold a mapping of sections")
    else:
        raw = base or {}
    unknown = set(raw) - SECTIONS
    if unknown:
        raise ConfigError(path or "config", f"unknown section(s) {sorted(unknown)}", f"known: {', '.join(sorted(SECTIONS))}")
    cfg = merge(DEFAULTS, raw)
    for item in overrides:
        apply_override(cfg, item)
    if cfg["name"] is None:
        cfg["name"] = path.stem if path is not None else cfg["model"].get("type", "run")
    validate(cfg)
    return cfg


def validate(cfg):
    if not isinstance(cfg["data"].get("train"), dict):
        raise ConfigError("data.train", "missing training dataset", "e.g. data.train: {type: builtin, split: train, degradation: ...}")
    sched = cfg["schedule"]["type"]
    if sched not in ("pixel", "gan", "nogan"):
        raise ConfigError(f"schedule.type={sched}", "unknown schedule", "use pixel, gan or nogan")
    if sched != "pixel" and not cfg["discriminator"]:
        raise ConfigError(f"schedule.type={sched}", "needs a discriminator section", "add discriminator: {type: ...}")
    if sched != "pixel" and not cfg["loss"].get("adversarial"):
        raise ConfigError(f"schedule.type={sched}", "needs loss.adversarial", "e.g. loss.adversarial: {type: bce, weight: 0.01}")
    if cfg["schedule"]["lr"] not in ("cosine", "constant"):
        raise ConfigError(f"schedule.lr={cfg['schedule']['lr']}", "unknown LR schedule", "use cosine or constant")
    for key in ("steps", "log_every", "ckpt_every"):
        value = cfg["train"][key]
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"train.{key}={value}", "must be a positive integer")
    if not isinstance(cfg["data"]["batch"], int) or cfg["data"]["batch"] < 1:
        raise ConfigError(f"data.batch={cfg['data']['batch']}", "must be a positive integer")
    if int(cfg["schedule"]["g_per_d"]) < 1:
        raise ConfigError(f"schedule.g_per_d={cfg['schedule']['g_per_d']}", "must be >= 1")


def dump_config(cfg):
    return yaml.safe_dump(cfg, sort_keys=False)


def save_config(cfg, path):
    atomic_write_text(path, dump_config(cfg))
