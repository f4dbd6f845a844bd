"""The ``FourierBottleneck`` custom node of the plugin graph, from torch to ONNX.

A torch custom op (``restore_export::fourier_bottleneck``) stands in for the SpectralFilter while
tracing, and a translation for the dynamo exporter turns each call into exactly one ONNX node:

  op_type "FourierBottleneck", domain "restore", inputs (x, weight), output y (shape of x),
  attributes mode ("spectral" | "gir"), plugin_version "1", plugin_namespace "restore".

The node's schema is registered with onnx so the checker and shape inference know it.
"""
import onnxscript
import torch
from onnx import defs

from restore.kernels.fourier_bottleneck.torch_op import fourier_bottleneck

DOMAIN = "restore"
OP_TYPE = "FourierBottleneck"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "restore"


def _register_schema():
    if defs.has(OP_TYPE, DOMAIN):
        return
    param = defs.OpSchema.FormalParameter
    string = defs.OpSchema.AttrType.STRING
    defs.register_schema(defs.OpSchema(
        OP_TYPE, DOMAIN, 1,
        doc="Fourier bottleneck: irfft2(G * rfft2(x)) per plane (mode spectral) or abs(x) (mode gir); "
            "see kernels/fourier_bottleneck/reference.py.",
        inputs=[param("x", "T", "(N, C, H, W)"), param("weight", "tensor(float)", "(C, K, K, 2) response control grid")],
        outputs=[param("y", "T", "same shape as x")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "activations")],
        attributes=[
            defs.OpSchema.Attribute("mode", string, "spectral or gir"),
            defs.OpSchema.Attribute("plugin_version", string, "TensorRT plugin version"),
            defs.OpSchema.Attribute("plugin_namespace", string, "TensorRT plugin namespace"),
        ],
    ))


_register_schema()
_RESTORE_OPSET = onnxscript.values.Opset(DOMAIN, 1)


@torch.library.custom_op("restore_export::fourier_bottleneck", mutates_args=())
def fourier_bottleneck_node(x: torch.Tensor, weight: torch.Tensor, mode: str) -> torch.Tensor:
    return fourier_bottleneck(x, weight, mode)


@fourier_bottleneck_node.register_fake
def _(x, weight, mode):
    return torch.empty_like(x)


def _to_onnx(x, weight, mode: str):
    return _RESTORE_OPSET.FourierBottleneck(
        x, weight, mode=mode, plugin_version=PLUGIN_VERSION, plugin_namespace=PLUGIN_NAMESPACE
    )


TRANSLATIONS = {torch.ops.restore_export.fourier_bottleneck.default: _to_onnx}
