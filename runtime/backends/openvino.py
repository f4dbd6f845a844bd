"""OpenVINO backend: the portable model.onnx on the CPU through Intel's engine (``openvino`` on PyPI,
``pip install 'restore[openvino]'``).

The graph is compiled twice: for throughput, ``streams`` independent inference streams sharing
the physical cores, over which a batch of tiles is split, so tiles run side by side instead of
each operator synchronising all cores (the tiles of a frame are independent); and for latency,
one stream on every core, for a batch of one tile.

Precision: bf16 where the CPU computes it natively (AVX512-BF16 / AMX, e.g. Xeon Sapphire Rapids
and later), as fp16 is the default on a GPU, else fp32; ``precision="fp32"`` keeps fp32 anywhere.
It is always set explicitly, never left to OpenVINO's own choice. fp16 is not offered: on a Xeon
with AVX512-FP16 the shipped model came back NaN on every tile (2026-12-02).

In bf16 OpenVINO runs convolutions in bf16 but leaves MatMul in fp32, and the Fourier blocks'
matmul-DFTs are a third of the network's time, so every MatMul is given bf16 inputs explicitly
(its products still accumulate in fp32). bf16 keeps fp32's range. What it costs in output is
measured by ``benchmarks/cpu_precision.py``: the same gain within 0.03 dB a category, 51 dB or
more against fp32 on the shipped model (the issue's bar for equal output is 45 dB).
"""
import importlib.util

import numpy as np

from ..errors import BackendError, ModelError
from .base import Backend, cpu_streams, physical_cores


class OpenVinoBackend(Backend):
    name = "openvino"
    precisions = ("fp32", "bf16")

    @classmethod
    def unavailable_reason(cls, model, device=None):
        if importlib.util.find_spec("openvino") is None:
            return "openvino is not installed (pip install 'restore[openvino]')"
        if model.onnx is None:
            return "the model has no .onnx file"
        if device is not None and not str(device).startswith("cpu"):
            return "runs on the CPU only"
        return None

    def activate_impl(self):
        import openvino as ov
        from openvino.frontend import FrontEndManager

        core = ov.Core()
        path = self.model.onnx
        native_bf16 = "BF16" in cpu_capabilities(core)
        bf16 = self.precision == "bf16" or (self.precision is None and native_bf16)
        if bf16 and not native_bf16:
            raise BackendError(self.model.name, "bf16 requested but this CPU has no native bf16 arithmetic (AVX512-BF16 or AMX) for OpenVINO", "use --precision fp32")
        self.precision = "bf16" if bf16 else "fp32"
        cores = physical_cores()
        self.streams = cpu_streams(cores)
        config = {"INFERENCE_NUM_THREADS": cores, "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32"}
        try:
            onnx = FrontEndManager().load_by_framework("onnx")  # not read_model: it tries every frontend, TensorFlow's printing to stderr
            graph = onnx.convert(onnx.load(str(path)))
            if bf16:
                bf16_matmuls(graph)
            self._compiled = core.compile_model(graph, "CPU", {**config, "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": self.streams})
            self._single = core.compile_model(graph, "CPU", {**config, "PERFORMANCE_HINT": "LATENCY"}).create_infer_request()  # a lone tile gets every core
        except Exception as e:  # OpenVINO raises plain RuntimeErrors for corrupt or unsupported graphs
            said = [line.strip() for line in str(e).splitlines() if line.strip()]  # where it was thrown, then why
            reason = (said or ["no reason given"])[-1][:200]
            raise ModelError(path, f"OpenVINO cannot load this model ({reason})", "re-export it with restore-export, or use --backend onnxruntime") from None
        inp, out = graph.inputs[0], graph.outputs[0]
        self.takes_posterior = [i.get_any_name() for i in graph.inputs[1:]] == ["posterior"]
        shape, out_shape = inp.get_partial_shape(), out.get_partial_shape()
        if shape.rank.get_length() != 4 or inp.get_element_type() not in (ov.Type.f32, ov.Type.f16):
            raise ModelError(path, f"input is {inp.get_element_type()} {shape}, expected a float NCHW tensor")
        if out_shape.rank.get_length() != 4:
            raise ModelError(path, f"output has shape {out_shape}, expected an NCHW image", "give an image restoration model exported by restore-export")
        self.dtype = np.dtype(np.float16 if inp.get_element_type() == ov.Type.f16 else np.float32)
        dims = [d.get_length() if d.is_static else None for d in shape]
        io = self.model.io
        self.in_channels = dims[1] or io.get("in_channels", 3)
        self.tile = dims[2]
        self.max_batch = dims[0] or self.model.metadata.get("shapes", {}).get("batch", {}).get("max")
        h_out = out_shape[2]
        self.scale = io.get("scale") or (h_out.get_length() // self.tile if self.tile and h_out.is_static else 1)
        self.out_channels = io.get("out_channels") or self.in_channels
        self.size_multiple = io.get("size_multiple", 1)
        self._queue = ov.AsyncInferQueue(self._compiled, self.streams)
        self.description = f"openvino (CPU, {self.streams} streams on {cores} cores, {self.precision}, {path.name})"

    def infer_impl(self, batch, posterior):
        batch = np.ascontiguousarray(batch, dtype=self.dtype)
        given = {} if posterior is None else {1: np.ascontiguousarray(posterior, np.float32)}
        if len(batch) == 1 or self.streams == 1:
            return self._single.infer({0: batch, **given})[0].copy()
        parts = np.array_split(batch, min(self.streams, len(batch)))
        outputs = [None] * len(parts)

        def keep(request, index):
            outputs[index] = request.get_output_tensor(0).data.copy()  # the request's buffer is reused

        self._queue.set_callback(keep)
        for i, part in enumerate(parts):
            self._queue.start_async({0: part, **given}, i)
        self._queue.wait_all()
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    def deactivate_impl(self):
        self._queue = self._compiled = self._single = None


def cpu_capabilities(core=None):
    """What OpenVINO's CPU plugin computes natively here, e.g. ["FP32", "INT8", "BF16", ...]."""
    if core is None:
        import openvino as ov

        core = ov.Core()
    return core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def bf16_matmuls(graph):
    """Give every MatMul of ``graph`` bf16 inputs and an fp32 output, in place."""
    import openvino as ov
    import openvino.opset13 as ops

    for node in graph.get_ordered_ops():
        if node.get_type_name() != "MatMul":
            continue
        users = list(node.output(0).get_target_inputs())
        for i in range(2):
            node.input(i).replace_source_output(ops.convert(node.input(i).get_source_output(), ov.Type.bf16).output(0))
        back = ops.convert(node.output(0), ov.Type.f32).output(0)
        for user in users:
            user.replace_source_output(back)
    graph.validate_nodes_and_infer_types()
