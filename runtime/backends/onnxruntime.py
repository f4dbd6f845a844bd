"""ONNX Runtime backend: the portable model.onnx on CPU, or on CUDA (execution provider + IO
binding) when onnxruntime-gpu is installed and a GPU is visible.

The portable graph has a fixed tile size (its DFT nodes need static shapes), read here from the
graph's input; the batch dimension may be dynamic.

On the CPU a batch of tiles is split over ``streams`` sessions that run side by side (ORT releases
the GIL), each with its share of the physical cores, as OpenVINO's throughput streams do; the
session options kept are those that measured faster on the shipped model (benchmarks/README.md).
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import BackendError, ModelError
from .base import Backend, cpu_streams, physical_cores

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def _providers():
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.get_available_providers()


def _wants_cuda(device, providers):
    if device is not None and str(device).startswith("cpu"):
        return False
    return "CUDAExecutionProvider" in providers


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    @classmethod
    def unavailable_reason(cls, model, device=None):
        providers = _providers()
        if providers is None:
            return "onnxruntime is not installed"
        if not (model.onnx or model.fp16_onnx):
            return "the model has no .onnx file"
        if device is not None and str(device).startswith("cuda") and "CUDAExecutionProvider" not in providers:
            return "no CUDAExecutionProvider (install onnxruntime-gpu)"
        return None

    @classmethod
    def uses_gpu(cls, model, device=None):
        providers = _providers() or []
        return _wants_cuda(device, providers)

    def activate_impl(self):
        import onnxruntime as ort

        providers = ort.get_available_providers()
        self._cuda = _wants_cuda(self.device, providers)
        use_fp16 = self._cuda and self.precision != "fp32" and self.model.fp16_onnx is not None
        if self.precision == "fp16" and self.model.fp16_onnx is None:
            raise BackendError(self.model.name, "fp16 requested but the artifact has no model.fp16.onnx", "export with --fp16 or use --precision fp32")
        if self.precision == "fp16" and not self._cuda:  # it would quietly run the fp32 graph
            raise BackendError("onnxruntime", "fp16 runs only on a GPU (CUDAExecutionProvider) here", "use --precision fp32 on a CPU")
        path = self.model.fp16_onnx if use_fp16 or not self.model.onnx else self.model.onnx
        self.precision = "fp16" if path == self.model.fp16_onnx else "fp32"
        if self._cuda:
            device_id = int(str(self.device).split(":")[1]) if self.device and ":" in str(self.device) else 0
            chosen = [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
        else:
            chosen = ["CPUExecutionProvider"]
        cores = physical_cores()
        self.streams = 1 if self._cuda else cpu_streams(cores)
        try:
            self.session = self._session(ort, path, chosen, cores)
            # A batch is split over the stream sessions; a single tile gets every core.
            self._stream_sessions = [self._session(ort, path, chosen, cores // self.streams) for _ in range(self.streams)] if self.streams > 1 else []
        except Exception as e:  # ORT raises its own exception types for corrupt or foreign files
            if PLUGIN_OP not in str(e):
                first = str(e).strip().splitlines()[0][:200]
                raise ModelError(path, f"ONNX Runtime cannot load this model ({first})", "re-export it with restore-export") from None
            self.session, self._cuda, self._stream_sessions = _plugin_session(path), False, []
        self._pool = ThreadPoolExecutor(self.streams, thread_name_prefix="restore-ort") if self._stream_sessions else None
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self._input_name, self._output_name = inp.name, out.name
        self.takes_posterior = [i.name for i in self.session.get_inputs()[1:]] == ["posterior"]
        if inp.type not in _ORT_TYPES or len(inp.shape) != 4:
            raise ModelError(path, f"input {inp.name!r} is {inp.type} {inp.shape}, expected a float NCHW tensor")
        if len(out.shape) != 4:  # e.g. a classifier's (N, classes): not an image-to-image model
            raise ModelError(path, f"output {out.name!r} has shape {out.shape}, expected an NCHW image", "give an image restoration model exported by restore-export")
        self.dtype = np.dtype(_ORT_TYPES[inp.type])
        n, c, h, w = inp.shape
        io = self.model.io
        for key, shape in (("in_channels", inp.shape), ("out_channels", out.shape)):
            if isinstance(shape[1], int) and io.get(key) not in (None, shape[1]):
                raise ModelError(path, f"its metadata says io.{key} {io[key]}, the graph has {shape[1]}",
                                 "the metadata.json belongs to another model; re-export it with restore-export")
        self.in_channels = c if isinstance(c, int) else io.get("in_channels", 3)
        fixed = h if isinstance(h, int) and h > 0 else None
        self.tile = fixed
        self.max_batch = n if isinstance(n, int) and n > 0 else self.model.metadata.get("shapes", {}).get("batch", {}).get("max")
        self.scale = io.get("scale") or self._probe_scale(out)
        self.out_channels = io.get("out_channels") or (out.shape[1] if isinstance(out.shape[1], int) else self.in_channels)
        self.size_multiple = io.get("size_multiple", 1)
        provider = self.session.get_providers()[0]
        streams = f", {self.streams} streams on {cores} cores" if self._pool else ""
        self.description = f"onnxruntime ({provider}{streams}, {path.name})"
        self._binding = self.session.io_binding() if self._cuda else None

    def _session(self, ort, path, providers, threads):
        options = ort.SessionOptions()
        options.log_severity_level = 3  # ORT's shape-inference warnings are noise for users
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not self._cuda:
            # Not "session.set_denormal_as_zero": it sets flush-to-zero for the whole process (the
            # caller's NumPy included), and measured x1.11 / x0.83 on two runs.
            options.intra_op_num_threads = threads
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)

    def _probe_scale(self, out):
        h_out = out.shape[2]
        if self.tile and isinstance(h_out, int):
            return h_out // self.tile
        return 1

    def infer_impl(self, batch, posterior):
        batch = np.ascontiguousarray(batch, dtype=self.dtype)
        given = {} if posterior is None else {"posterior": np.ascontiguousarray(posterior, np.float32)}
        if self._pool is not None and len(batch) > 1:
            parts = np.array_split(batch, min(self.streams, len(batch)))
            runs = self._pool.map(lambda session, part: session.run([self._output_name], {self._input_name: part, **given})[0], self._stream_sessions, parts)
            return np.concatenate(list(runs))
        if self._binding is None:
            return self.session.run([self._output_name], {self._input_name: batch, **given})[0]
        # CUDA: bind the host batch as input and let ORT allocate the output on the device, so
        # only one H2D and one D2H copy happen per batch (no intermediate host staging by ORT).
        self._binding.bind_cpu_input(self._input_name, batch)
        for name, value in given.items():
            self._binding.bind_cpu_input(name, value)
        self._binding.bind_output(self._output_name, "cuda")
        self.session.run_with_iobinding(self._binding)
        return self._binding.copy_outputs_to_cpu()[0]

    def deactivate_impl(self):
        if self._pool is not None:
            self._pool.shutdown()
        self.session = self._stream_sessions = self._pool = None
        self._binding = None


PLUGIN_OP = "FourierBottleneck"


def _plugin_session(path):
    """A CPU session of a plugin graph (model.plugin.onnx): its FourierBottleneck nodes run through
    the ONNX Runtime custom op of kernels/fourier_bottleneck/ort_op.py (the NumPy reference; exact,
    not fast). That op rewrites the graph with the ``onnx`` package, which the runtime alone lacks."""
    try:
        from restore.kernels.fourier_bottleneck.ort_op import plugin_session
    except ImportError as e:
        raise ModelError(path, f"is a plugin graph ({PLUGIN_OP} nodes) and running it on ONNX Runtime needs '{e.name}'",
                         "pip install 'restore[train]', or give the portable model.onnx") from None
    try:
        return plugin_session(path)
    except Exception as e:
        first = str(e).strip().splitlines()[0][:200]
        raise ModelError(path, f"ONNX Runtime cannot load this plugin graph ({first})", "re-export it with restore-export") from None
