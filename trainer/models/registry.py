"""One registry for every architecture of the zoo (generators and discriminators).

``build_model("fourier-unet")`` or ``build_model({"type": "fourier-unet", "width": 48})``: the
config dict, minus ``type``, is passed to the class, and kept on the model (``model.arch``,
``model.config``) so a checkpoint can rebuild it alone.
"""
import importlib

from restore.runtime.errors import ConfigError

MODELS = {}
# Modules that register further architectures (the peers timed by the benchmarks), imported the
# first time a name is not found, so a checkpoint of a peer exports like one of ours.
EXTRA_MODULES = ("restore.benchmarks.peers",)


def register(name):
    def wrap(cls):
        if name in MODELS:
            raise ValueError(f"model name {name!r} registered twice")
        MODELS[name] = cls
        return cls

    return wrap


def list_models(include_extra=False):
    if include_extra:
        for module in EXTRA_MODULES:
            importlib.import_module(module)
    return sorted(MODELS)


def build_model(spec, **overrides):
    """Build a model from a registered name or a config dict with a ``type`` key."""
    if isinstance(spec, str):
        name, cfg = spec, {}
    else:
        cfg = dict(spec)
        name = cfg.pop("type", None) or cfg.pop("name", None)
    cfg.update(overrides)
    if name not in MODELS:
        for module in EXTRA_MODULES:
            importlib.import_module(module)
    if name not in MODELS:
        raise ConfigError(name, "unknown architecture", f"known: {', '.join(list_models())}")
    try:
        model = MODELS[name](**cfg)
    except TypeError as e:
        raise ConfigError(name, f"bad model config {cfg}: {e}") from None
    model.arch, model.config = name, cfg
    return model


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())
