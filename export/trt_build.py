"""Build a TensorRT engine from an ONNX graph with full TensorRT (``tensorrt``) or TensorRT-RTX
(``tensorrt_rtx_bindings``): one code path, imported lazily, written against the documented
Python API (Builder, OnnxParser, IOptimizationProfile, ITimingCache, IProgressMonitor).

Precision. Every network is built *strongly typed*: each tensor keeps the type the ONNX graph
gives it. TensorRT 11 removed weak typing (BuilderFlag.FP16, OBEY_PRECISION_CONSTRAINTS,
ILayer.precision), 10.12+ deprecates it, and TensorRT-RTX never had it; the migration TensorRT
documents is to put the precision into the graph. So the layer-precision overrides live in the
fp16 ONNX itself: the layers measured to overflow fp16, and the Fourier bottleneck, are fp32
islands between Casts (export/fp16.py), and both builders honour them the same way.
"""
import time
from pathlib import Path

from restore.runtime.errors import BackendError, ModelError

INSTALL_HINT = (
    "install a TensorRT builder: pip install 'restore[trt-rtx]' (TensorRT-RTX, builds on CPU) "
    "or NVIDIA's tensorrt wheel"
)


def load_builder():
    """(module, flavour) of the first importable builder, flavour "tensorrt" or "tensorrt-rtx";
    None when neither is installed."""
    try:
        import tensorrt as trt

        return trt, "tensorrt"
    except ImportError:
        pass
    try:
        import tensorrt_rtx_bindings as trt

        return trt, "tensorrt-rtx"
    except ImportError:
        return None


def require_builder():
    found = load_builder()
    if found is None:
        raise BackendError("TensorRT", "no engine builder installed", INSTALL_HINT)
    return found


def _progress_monitor(trt):
    """A tqdm bar per top-level builder phase; None where the bindings lack IProgressMonitor."""
    if not hasattr(trt, "IProgressMonitor"):
        return None
    from tqdm import tqdm

    class TqdmProgress(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.bars = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            if parent_phase is None:  # nested phases would stack bars; the top level is enough
                self.bars[phase_name] = tqdm(total=num_steps, desc=phase_name, unit="step", leave=False)

        def step_complete(self, phase_name, step):
            if phase_name in self.bars:
                self.bars[phase_name].update(1)
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            bar = self.bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    return TqdmProgress()


def _parse(trt, network, onnx_path):
    parser = trt.OnnxParser(network, trt.Logger(trt.Logger.ERROR))
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(onnx_path, f"TensorRT cannot parse this graph: {errors}")
    return parser


def build_engine(onnx_path, engine_path, *, batch, tile, timing_cache=None, progress=True):
    """Build ``engine_path`` from ``onnx_path`` and return what was built (for metadata.json).

    batch: (min, opt, max) of the optimization profile; tile: (min, opt, max) H=W of the input
    (equal values for the fixed-tile graphs). timing_cache: a file read before and written after
    the build (shared across builds).
    """
    trt, flavour = require_builder()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = _parse(trt, network, onnx_path)  # noqa: F841  (the network refers to the parser's weights)

    config = builder.create_builder_config()

    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if tensor.name == "posterior":  # the picture's blur estimate: a static (1, K)
            continue
        channels = tensor.shape[1]
        shapes = [(b, channels, t, t) for b, t in zip(batch, tile)]
        profile.set_shape(tensor.name, *shapes)
    config.add_optimization_profile(profile)

    # TensorRT-RTX picks kernels when the engine first runs (its runtime cache belongs to the
    # runtime), so it has no use for a timing cache; asking for one on a GPU-less machine only
    # logs CUDA errors. Full TensorRT times tactics at build time and reuses them from the cache.
    cache = None
    if timing_cache is not None and flavour == "tensorrt":
        timing_cache = Path(timing_cache)
        blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)

    monitor = _progress_monitor(trt) if progress else None
    if monitor is not None:
        config.progress_monitor = monitor

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise ModelError(onnx_path, f"{flavour} could not build an engine (see the builder log above)")

    from restore.runtime.atomic import atomic_path, atomic_write_bytes

    engine_bytes = bytes(serialized)
    atomic_write_bytes(engine_path, engine_bytes)
    if cache is not None:
        with atomic_path(timing_cache) as tmp:
            Path(tmp).write_bytes(bytes(config.get_timing_cache().serialize()))

    return {
        "builder": flavour,
        "version": trt.__version__,
        "source": Path(onnx_path).name,
        "typing": "strong (precision from the graph's types)",
        "profile": {"batch": list(batch), "tile": list(tile)},
        "build_seconds": round(seconds, 3),
        "bytes": len(engine_bytes),
        "timing_cache": timing_cache.name if cache is not None else None,
    }
