"""Backend registry and the ``auto`` choice.

Backends are named here by module path and imported only when asked for, so importing the
runtime never imports torch or tensorrt. ``auto`` takes the first available backend in speed
order, GPU backends before CPU ones:
  tensorrt (GPU) > onnxruntime (CUDA EP) > torch (CUDA) > onnxruntime or openvino (CPU) > torch (CPU).
On CPU the ONNX engines are ahead of eager torch for these convolutional nets, hence its place;
which of ONNX Runtime and OpenVINO is faster depends on the CPU, so where both can run the model
and no GPU backend can, ``cpu_choice`` measures them once per machine and model.
"""
import importlib
import logging

from ..errors import BackendError, ConfigError, RestoreError

log = logging.getLogger("restore.runtime")

BACKENDS = {
    "tensorrt": ("restore.runtime.backends.tensorrt", "TensorRTBackend"),
    "onnxruntime": ("restore.runtime.backends.onnxruntime", "OnnxRuntimeBackend"),
    "openvino": ("restore.runtime.backends.openvino", "OpenVinoBackend"),
    "torch": ("restore.runtime.backends.torch", "TorchBackend"),
}
SPEED_ORDER = ["tensorrt", "onnxruntime", "openvino", "torch"]
CPU_MEASURED = ("onnxruntime", "openvino")


def backend_class(name):
    if name not in BACKENDS:
        raise ConfigError(name, "unknown backend", f"choose auto or one of: {', '.join(BACKENDS)}")
    module, attr = BACKENDS[name]
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as e:
        raise BackendError(name, f"backend not available in this install ({e})") from None


def _probe(name, model, device, precision):
    """(backend class, None) if usable, else (None, reason)."""
    try:
        cls = backend_class(name)
    except BackendError as e:
        return None, e.problem
    if precision is not None and precision not in cls.precisions:
        return None, f"runs {', '.join(cls.precisions)}, not {precision}"
    reason = cls.unavailable_reason(model, device)
    return (cls, None) if reason is None else (None, reason)


def choose_backend(name, model, device=None, precision=None):
    """Instantiate (not activate) the named backend, or the fastest available for ``auto``.

    Returns (backend, why) where ``why`` says how ``auto`` decided (empty for a named backend)."""
    candidates, skipped, note = _candidates(name, model, device, precision)
    picked_name, cls = candidates[0]
    why = _why(picked_name, skipped, note) if name == "auto" else ""
    if why:
        log.info(why)
    return cls(model, device=device, precision=precision), why


def open_backend(name, model, device=None, precision=None):
    """Like ``choose_backend`` but activated. With ``auto``, a backend that is installed but fails
    to start (e.g. a TensorRT engine built for another GPU) is skipped for the next fastest."""
    candidates, skipped, note = _candidates(name, model, device, precision)
    for i, (candidate, cls) in enumerate(candidates):
        backend = cls(model, device=device, precision=precision)
        try:
            backend.activate()
        except RestoreError as e:
            if name != "auto" or i == len(candidates) - 1:
                raise
            skipped.append(f"{candidate}: {e}")
            continue
        why = _why(candidate, skipped, note) if name == "auto" else ""
        if why:
            log.info(why)
        return backend, why


def _candidates(name, model, device, precision):
    """[(name, class)] to try in order, the reasons the others were skipped, and how the CPU
    backends were ordered."""
    if name != "auto":
        cls, reason = _probe(name, model, device, precision)
        if cls is None:
            raise BackendError(name, f"cannot run {model.name}: {reason}", "pick another --backend or use auto")
        return [(name, cls)], [], ""
    usable, skipped = [], []
    for candidate in SPEED_ORDER:
        cls, reason = _probe(candidate, model, device, precision)
        if cls is None:
            skipped.append(f"{candidate}: {reason}")
        else:
            usable.append((candidate, cls))
    if not usable:
        raise BackendError(model.name, "no backend can run this model here: " + "; ".join(skipped), "install onnxruntime, or torch for checkpoints")
    gpu = [(n, c) for n, c in usable if c.uses_gpu(model, device)]
    cpu = [u for u in usable if u not in gpu]
    measured, note = [u for u in cpu if u[0] in CPU_MEASURED], ""
    if not gpu and len(measured) > 1:
        from . import cpu_choice

        ranked, note = cpu_choice.order(measured, model)
        ranked = iter(ranked)  # the measured backends swap places among themselves only
        cpu = [next(ranked) if u[0] in CPU_MEASURED else u for u in cpu]
    return gpu + cpu, skipped, note


def _why(picked_name, skipped, note=""):
    details = ([note] if note else []) + ([f"skipped {'; '.join(skipped)}"] if skipped else [])
    return f"auto picked {picked_name}" + (f" ({'; '.join(details)})" if details else "")
