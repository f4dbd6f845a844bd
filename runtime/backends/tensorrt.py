"""TensorRT backend: deserialize the artifact's engine and run it in the double-buffered pipeline.

One code path for NVIDIA's ``tensorrt`` and for TensorRT-RTX (``tensorrt_rtx_bindings``): both
expose ``Runtime.deserialize_cuda_engine``, ``set_input_shape``, ``set_tensor_address`` and
``execute_async_v3``. Which module loads an engine is decided by the engine file's header where it
is known (TensorRT-RTX engines start with ``vtrt``, seen on 1.7), else ``tensorrt`` first.

Order of work in ``activate``: import TensorRT (lazily), register the Fourier bottleneck plugin
(the engine refers to it by name, so its creator must exist before deserialization), deserialize,
create one execution context, then the pipeline's pinned/device buffers. Per batch:
``set_input_shape`` (the batch dimension is dynamic), ``set_tensor_address`` for input and output,
``execute_async_v3`` on the pipeline's compute stream. An engine with a second input "posterior"
(the picture's blur estimate, base.py) reads it from one device buffer, written before each
picture's batches start (the pipeline has drained the previous picture's by then).

Errors, each one line: TensorRT not installed, no GPU (BackendError, exit 6); an engine that is
corrupt or was built by another TensorRT version or for another GPU (ModelError, exit 4 -- the
file is the problem, as runtime/errors.py defines). TensorRT reports deserialization failures
only through its logger and a None result, so a logger collects the messages to classify them.
"""
import importlib
import importlib.util
from pathlib import Path

import numpy as np

from ..errors import BackendError, InputError, ModelError
from .base import Backend, gpu_present

TRT_MODULES = ("tensorrt", "tensorrt_rtx_bindings")
RTX_ENGINE_MAGIC = b"vtrt"
_INSTALL_HINT = "pip install 'restore[trt-rtx]' or NVIDIA's tensorrt wheel, or use --backend onnxruntime"
_NO_GPU_HINT = "TensorRT runs only on an NVIDIA GPU; use --backend onnxruntime on this machine"
_REBUILD_HINT = "rebuild the engine with restore-export on this machine, or run model.onnx with --backend onnxruntime"


def import_tensorrt(candidates=TRT_MODULES):
    """The first importable TensorRT module among ``candidates``."""
    for name in candidates:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise BackendError("tensorrt", f"not installed (tried {', '.join(candidates)})", _INSTALL_HINT)


def modules_for(engine_path):
    """TensorRT modules to try for this engine file, the likeliest first."""
    with open(engine_path, "rb") as f:
        head = f.read(4)
    return tuple(reversed(TRT_MODULES)) if head == RTX_ENGINE_MAGIC else TRT_MODULES


def classify_load_failure(path, messages):
    """The error to raise when ``deserialize_cuda_engine`` returned None, from TensorRT's log."""
    text = " | ".join(messages)
    lower = text.lower()
    first = (messages[0] if messages else "no message from TensorRT").strip()[:240]
    if any(k in lower for k in ("magictag", "serialization version", "version tag", "serialization assertion")):
        return ModelError(path, f"not an engine of this TensorRT version (corrupt, or built by another TensorRT): {first}", _REBUILD_HINT)
    if any(k in lower for k in ("incompatible device", "expecting compute", "compute capability", "not supported on this platform", "hardware compatibility")):
        return ModelError(path, f"engine was built for another GPU: {first}", _REBUILD_HINT)
    if any(k in lower for k in ("cudaerror 35", "cudaerror 100", "no cuda-capable", "driver version is insufficient")):
        return BackendError("tensorrt", "no usable CUDA GPU or driver to load the engine on", _NO_GPU_HINT)
    return ModelError(path, f"TensorRT cannot deserialize this engine: {first}", _REBUILD_HINT)


def _collecting_logger(trt):
    class CollectingLogger(trt.ILogger):
        """Keeps errors and warnings (to explain failures) instead of printing them."""

        def __init__(self):
            trt.ILogger.__init__(self)
            self.messages = []

        def log(self, severity, msg):
            if severity <= trt.ILogger.Severity.WARNING:
                self.messages.append(str(msg))

    return CollectingLogger()


def register_plugins(trt, metadata):
    """Register the Fourier bottleneck plugin before an engine is loaded (its creator must exist
    when TensorRT meets the plugin layer). Done whenever the kernels are importable -- an engine
    given without metadata may still contain the plugin -- and required when the metadata says
    the engine has plugin layers. Returns whether it was registered."""
    needed = bool((metadata.get("plugin") or {}).get("count"))
    try:
        from restore.kernels.fourier_bottleneck.trt_plugin import register_trt_plugin
    except ImportError as e:
        if needed:
            raise BackendError("FourierBottleneck plugin", f"the engine uses it but it cannot be imported ({e})",
                               "install restore with its kernels, or use model.onnx with --backend onnxruntime") from None
        return False
    try:
        register_trt_plugin(trt)
    except Exception as e:  # the plugin's own setup errors (registry refused, library missing)
        if needed:
            raise BackendError("FourierBottleneck plugin", f"cannot register it with {trt.__name__}: {e}") from None
        return False
    return True


class TensorRTEngine:
    """A deserialized engine with one execution context, run on device pointers."""

    def __init__(self, path, trt=None, metadata=None):
        self.path = Path(path)
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise InputError(path, f"cannot read the engine ({e.strerror})") from None
        if not data:
            raise ModelError(path, "the engine file is empty", _REBUILD_HINT)
        self.trt = trt = trt or import_tensorrt(modules_for(self.path))
        register_plugins(trt, metadata or {})
        self.logger = _collecting_logger(trt)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise classify_load_failure(path, self.logger.messages)
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BackendError("tensorrt", "cannot create an execution context: " + " | ".join(self.logger.messages[-2:]), _NO_GPU_HINT)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) not in (1, 2) or inputs[1:] not in ([], ["posterior"]) or len(outputs) != 1:
            raise ModelError(path, f"engine has inputs {inputs} and outputs {outputs}; expected one image in (and its posterior) and one out")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.posterior_shape = tuple(self.engine.get_tensor_shape("posterior")) if len(inputs) == 2 else None
        self.posterior_ptr = None  # device buffer of the posterior, set by the backend
        self.input_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self.output_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        # Optimization profile 0 bounds the batch: (min, opt, max) shapes of the input.
        self.min_shape, self.opt_shape, self.max_shape = (tuple(s) for s in self.engine.get_tensor_profile_shape(self.input_name, 0))
        self.item_shape = tuple(self.max_shape[1:])
        self.context.set_input_shape(self.input_name, self.max_shape)
        self.output_item_shape = tuple(self.context.get_tensor_shape(self.output_name))[1:]

    @property
    def max_batch(self):
        return int(self.max_shape[0])

    def execute(self, count, d_in, d_out, stream):
        """Queue ``count`` items on ``stream`` (a cuda_mem ``Stream``); does not synchronise."""
        self.context.set_input_shape(self.input_name, (count,) + self.item_shape)
        self.context.set_tensor_address(self.input_name, d_in)
        if self.posterior_ptr is not None:
            self.context.set_tensor_address("posterior", self.posterior_ptr)
        self.context.set_tensor_address(self.output_name, d_out)
        if not self.context.execute_async_v3(stream.raw):
            raise BackendError("tensorrt", "execute_async_v3 failed: " + " | ".join(self.logger.messages[-3:]))

    def close(self):
        # The context must go before the engine, the engine before the runtime.
        self.context = self.engine = self.runtime = None


class TensorRTBackend(Backend):
    name = "tensorrt"

    @classmethod
    def unavailable_reason(cls, model, device=None):
        if not (model.engine or model.fp16_engine):
            return "the model has no TensorRT engine (export it where a TensorRT builder is installed)"
        if device is not None and str(device).startswith("cpu"):
            return "TensorRT needs a CUDA device"
        if not any(importlib.util.find_spec(m) for m in TRT_MODULES):
            return "tensorrt is not installed"
        if importlib.util.find_spec("cuda") is None:
            return "cuda-python is not installed (pip install 'restore[cuda]')"
        if not gpu_present():
            return "no CUDA GPU"
        return None

    @classmethod
    def uses_gpu(cls, model, device=None):
        return True

    def _engine_path(self):
        m = self.model
        path = (m.engine or m.fp16_engine) if self.precision == "fp32" else (m.fp16_engine or m.engine)
        if path is None:
            raise BackendError(m.name, "no TensorRT engine in this model", "export it with a TensorRT builder or use --backend onnxruntime")
        return path

    def activate_impl(self):
        from ..cuda_mem import get_driver
        from ..pipeline import GpuPipeline

        device = int(str(self.device).split(":")[1]) if self.device and ":" in str(self.device) else 0
        driver = get_driver(device=device)  # fails with a clear BackendError where there is no GPU
        path = self._engine_path()
        self.precision = "fp16" if path == self.model.fp16_engine else "fp32"
        self.engine = TensorRTEngine(path, metadata=self.model.metadata)
        e = self.engine
        self.in_channels, height = e.item_shape[0], e.item_shape[1]
        self.out_channels = e.output_item_shape[0]
        self.tile = height if height > 0 else self.model.metadata.get("shapes", {}).get("tile")
        self.scale = e.output_item_shape[1] // height if height > 0 else self.model.io.get("scale", 1)
        self.size_multiple = self.model.io.get("size_multiple", 1)
        self.max_batch = e.max_batch
        self.dtype = e.input_dtype
        self.takes_posterior = e.posterior_shape is not None
        self._driver, self._posterior_stream = driver, None
        if self.takes_posterior:
            e.posterior_ptr = driver.malloc_device(4 * int(np.prod(e.posterior_shape)))
            self._posterior_stream = driver.stream_create()
        try:
            self.pipeline = GpuPipeline(e.execute, e.item_shape, e.output_item_shape, e.max_batch,
                                        e.input_dtype, e.output_dtype, slots=2, driver=driver)
        except BaseException:
            e.close()
            raise
        version = getattr(e.trt, "__version__", "?")
        self.description = f"tensorrt ({e.trt.__name__} {version}, {e.path.name}, {driver.name})"

    def infer_impl(self, batch, posterior):
        self._set_posterior(posterior)
        output, = self.pipeline.run([np.ascontiguousarray(batch, dtype=self.dtype)])
        return output

    def infer_stream(self, batches, posterior=None):
        if not self.is_active:
            raise BackendError(self.name, "infer_stream() called before activate()", "use the backend as a context manager")
        self._set_posterior(self._given(posterior))
        yield from self.pipeline.run(np.ascontiguousarray(b, dtype=self.dtype) for b in batches)

    def _set_posterior(self, posterior):
        if posterior is not None:
            host = np.ascontiguousarray(posterior, np.float32)
            self._driver.memcpy_htod_async(self.engine.posterior_ptr, host.ctypes.data, host.nbytes, self._posterior_stream)
            self._driver.stream_synchronize(self._posterior_stream)

    def deactivate_impl(self):
        pipeline, engine = getattr(self, "pipeline", None), getattr(self, "engine", None)
        if pipeline is not None:
            pipeline.close()
        if engine is not None:
            if engine.posterior_ptr is not None:
                self._driver.free_device(engine.posterior_ptr)
                self._driver.stream_destroy(self._posterior_stream)
            engine.close()
        self.pipeline = self.engine = None
