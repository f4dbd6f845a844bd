"""Which CPU backend is fastest for a model on this machine: measured once, then remembered.

CPUs differ too much for a fixed order (on an AMD EPYC with AVX2 ONNX Runtime and OpenVINO ran
the shipped model at parity; on an Intel Xeon with AMX, OpenVINO at its default there, bf16, took
107 ms a batch against ONNX Runtime's 398 in fp32), so
``auto`` times one batch of tiles on each installed CPU backend, interleaved, best of two, and
keeps the answer in ``$XDG_CACHE_HOME/restore/cpu-backends.json`` (default ``~/.cache``) keyed by
CPU model, model file and backend versions. A backend must be faster by ``MARGIN`` to displace
the one listed first, so noise on a shared machine does not flip the choice from run to run, and
for a model so small that both take under ``FAST_MS`` the default order stands.
"""
import importlib.metadata
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text

MARGIN = 0.10
FAST_MS = 20.0  # both faster than this per batch: overheads decide, not the engine; keep the default order
ROUNDS = 2


def cache_path():
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "restore" / "cpu-backends.json"


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def order(candidates, model):
    """``candidates``: [(name, class)] of usable CPU backends in their default order. Returns
    them fastest first and one line saying why."""
    if len(candidates) < 2:
        return candidates, ""
    key = _key([n for n, _ in candidates], model)
    cache = _read_cache()
    times = cache.get(key)
    how = "cached measurement"
    if times is None or set(times) != {n for n, _ in candidates}:
        times, how = _measure(candidates, model), "measured now"
        if times:
            cache[key] = times
            try:
                atomic_write_text(cache_path(), json.dumps(cache, indent=1) + "\n")
            except Exception:  # an unwritable cache costs a re-measurement next time, nothing else
                pass
    if not times:
        return candidates, ""
    first = candidates[0][0]
    best = min(times, key=times.get)
    if times[best] > times.get(first, float("inf")) * (1 - MARGIN) or max(times.values()) < FAST_MS:
        best = first
    ranked = sorted(candidates, key=lambda c: (c[0] != best, times.get(c[0], float("inf"))))
    figures = ", ".join(f"{n} {times[n]:.0f} ms" for n, _ in ranked if n in times)
    return ranked, f"{how} on {cpu_name()}: {figures} per batch of tiles"


def _key(names, model):
    path = Path(model.onnx or model.checkpoint or model.name)
    try:
        stat = path.stat()
        stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        stamp = "?"
    versions = []
    for name in names:
        try:
            versions.append(f"{name}={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(name)
    return "|".join([cpu_name(), str(path.resolve()), stamp, *versions, "default-precisions-2"])  # bumped when a default precision changes


def _read_cache():
    try:
        return json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _measure(candidates, model):
    """{name: best ms for one batch}; a backend that fails to start is left out."""
    from ..errors import RestoreError

    backends = {}
    for name, cls in candidates:
        backend = cls(model, device="cpu")
        try:
            backend.activate()
        except RestoreError:
            continue
        backends[name] = backend
    if not backends:
        return {}
    some = next(iter(backends.values()))
    tile = some.tile or model.tiling["tile"]
    tile += -tile % some.size_multiple
    batch = min(2, some.max_batch or 2)  # two tiles: enough to exercise two streams, cheap enough to pay once
    x = np.random.default_rng(0).random((batch, some.in_channels, tile, tile)).astype(some.dtype)
    times = {name: float("inf") for name in backends}
    try:
        # a model that takes the picture's blur estimate gets one (made once; not what is timed)
        posterior = some.estimate(x) if some.takes_posterior else None
        for backend in backends.values():
            backend.infer(x, posterior)  # warm-up: allocations, lazy kernel choices
        for _ in range(ROUNDS):
            for name, backend in backends.items():
                start = time.perf_counter()
                backend.infer(x, posterior)
                times[name] = min(times[name], (time.perf_counter() - start) * 1e3)
    finally:
        for backend in backends.values():
            backend.deactivate()
    return times
