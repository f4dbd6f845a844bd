"""ONNX Runtime binding of the Fourier bottleneck: runs the plugin graph's ``FourierBottleneck``
nodes on CPU through an onnxruntime-extensions Python custom op that calls the NumPy reference.
The op takes fp32; in an fp16 graph each node gets Casts around it in the copy that runs here,
which is what the TensorRT plugin does inside (fp16 planes in and out, fp32 arithmetic).

It exists to prove the exporter's graph surgery exact (the plugin graph, run here, must match the
portable graph and the torch model), not for speed. onnxruntime-extensions serves Python ops only
in its own domain, so ``plugin_session`` runs a copy of the graph with the nodes' domain
("restore") rewritten to ``ai.onnx.contrib``; the file on disk keeps "restore".
"""
import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime_extensions import PyCustomOpDef, get_library_path, onnx_op

from .reference import fourier_bottleneck_ref

OP_TYPE = "FourierBottleneck"
PLUGIN_DOMAIN = "restore"
CONTRIB_DOMAIN = "ai.onnx.contrib"


@onnx_op(
    op_type=OP_TYPE,
    inputs=[PyCustomOpDef.dt_float, PyCustomOpDef.dt_float],
    outputs=[PyCustomOpDef.dt_float],
    attrs={"mode": PyCustomOpDef.dt_string, "plugin_version": PyCustomOpDef.dt_string,
           "plugin_namespace": PyCustomOpDef.dt_string},
)
def fourier_bottleneck_ort(x, weight, **attrs):
    return fourier_bottleneck_ref(x, weight, attrs["mode"]).astype(np.float32)


def contrib_copy(model):
    """A copy of ``model`` (ModelProto) whose FourierBottleneck nodes are in the contrib domain,
    fp16 ones wrapped in Casts to and from fp32."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    types = _elem_types(copy)
    nodes = []
    for node in copy.graph.node:
        if node.op_type == OP_TYPE and node.domain == PLUGIN_DOMAIN:
            node.domain = CONTRIB_DOMAIN
            if types.get(node.input[0]) == onnx.TensorProto.FLOAT16:
                x16, y16 = node.input[0], node.output[0]
                node.input[0], node.output[0] = f"{x16}.fp32", f"{y16}.fp32"
                nodes.append(onnx.helper.make_node("Cast", [x16], [node.input[0]], to=onnx.TensorProto.FLOAT))
                nodes.append(node)
                nodes.append(onnx.helper.make_node("Cast", [node.output[0]], [y16], to=onnx.TensorProto.FLOAT16))
                continue
        nodes.append(node)
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)
    imports = [o for o in copy.opset_import if o.domain not in (PLUGIN_DOMAIN, CONTRIB_DOMAIN)]
    del copy.opset_import[:]
    copy.opset_import.extend(imports)
    copy.opset_import.add(domain=CONTRIB_DOMAIN, version=1)
    return copy


def _elem_types(model):
    inferred = onnx.shape_inference.infer_shapes(model)
    values = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    return {v.name: v.type.tensor_type.elem_type for v in values}


def plugin_session(model):
    """ONNX Runtime CPU session of a plugin graph (a ModelProto or a path)."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    options = ort.SessionOptions()
    options.register_custom_ops_library(get_library_path())
    return ort.InferenceSession(contrib_copy(model).SerializeToString(), options, providers=["CPUExecutionProvider"])
