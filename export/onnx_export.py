"""Trace a generator into ONNX: the portable graph (MatMul DFT), the plugin graph (one
FourierBottleneck node per bottleneck), or the ONNX-DFT graph (measurement only), fp32 or fp16.

Input "input" (N, C, tile, tile), output "output" (N, C', tile*scale, tile*scale); N is dynamic
within the batch range, H and W are fixed (the DFT matrices are sized for the tile). A model with a
blur estimate of its own (``estimate``: fourier-unet's deconvolution front end) also takes
"posterior" (1, K), fp32: the estimate of the whole picture, which the estimator graph
(``trace_estimator``: "tiles" (T, C, tile, tile) -> "posterior") makes once per picture from some
of its tiles, so that every tile is restored with the same one.
"""
import contextlib
import copy
import io
import json
import logging
import warnings

import onnx
import torch

from restore.trainer.models.deconv import takes_posterior
from restore.trainer.models.precision import half_precision

from .plugin_op import TRANSLATIONS
from .spectral import FP32_MODULES, swap_spectral_filters

MIN_OPSET = 18  # the dynamo exporter's oldest
MAX_OPSET = 23  # the newest checked with ONNX Runtime 1.31 here
DEFAULT_OPSET = 18
MAX_IR_VERSION = 13  # ONNX Runtime 1.31 refuses newer; onnx 1.23 writes 14 by default


def trace_to_onnx(model, variant, tile, batch, *, opset=DEFAULT_OPSET, half=False, fp32_modules=(), shared=None):
    """Return the ModelProto of ``model`` (probed by spectral.probe_plane_shapes) with its
    SpectralFilters swapped for ``variant`` ("matmul", "plugin" or "dft").

    half: fp16 weights and I/O, with ``fp32_modules`` (names, export/fp16.py) kept fp32. The
    plugin node's weight stays fp32 (its contract); the ONNX DFT stand-in is fp32 only. shared:
    False traces a model with a blur estimate as one self-contained graph that estimates per tile
    (what a peer's single-input tiler runs); None: the "posterior" input whenever it has one."""
    net = copy.deepcopy(model)
    swap_spectral_filters(net, variant)
    if half:
        net = half_precision(net, fp32_modules)
        for module in net.modules():
            if isinstance(module, FP32_MODULES):
                module.float()
    net.eval()
    low, high = batch
    # A batch-1 example makes torch.export specialise the batch to 1; trace with 2 when allowed.
    example_batch = min(max(2, low), high)
    dtype = torch.float16 if half else torch.float32
    x = torch.rand(example_batch, model.in_channels, tile, tile, dtype=dtype)
    args, names, dynamic = (x,), ["input"], [None]
    if high > low:
        dynamic = [{0: torch.export.Dim("batch", min=low, max=high)}]
    if takes_posterior(model) if shared is None else shared:
        with torch.no_grad():
            args, names, dynamic = (x, model.estimate(x.float())), names + ["posterior"], dynamic + [None]
    return _export(net, args, names, ["output"], tuple(dynamic) if any(dynamic) else None, opset)


class _Estimator(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tiles):
        return self.model.estimate(tiles)


def trace_estimator(model, tile, max_tiles, *, opset=DEFAULT_OPSET):
    """The estimator graph (fp32): "tiles" (T, C, tile, tile), 1 <= T <= ``max_tiles`` -> "posterior" (1, K)."""
    net = _Estimator(copy.deepcopy(model)).eval()
    x = torch.rand(min(2, max_tiles), model.in_channels, tile, tile)
    dynamic = ({0: torch.export.Dim("tiles", min=1, max=max_tiles)},) if max_tiles > 1 else None
    return _export(net, (x,), ["tiles"], ["posterior"], dynamic, opset)


def _export(net, args, input_names, output_names, dynamic, opset):
    # The dynamo exporter reports its steps on stdout and logs warnings about torch internals
    # (torchvision missing): keep the CLI's output to what the user asked for.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet_logger("torch.onnx"):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            net, args, dynamo=True, opset_version=opset, input_names=input_names, output_names=output_names,
            dynamic_shapes=dynamic, custom_translation_table=TRANSLATIONS, external_data=False,
        )
    proto = program.model_proto
    proto.ir_version = min(MAX_IR_VERSION, onnx.helper.find_min_ir_version_for(proto.opset_import, True))
    return proto


@contextlib.contextmanager
def _quiet_logger(name):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def set_metadata(proto, metadata):
    """Embed the artifact metadata (metadata.json) in the model's metadata_props as key "restore"."""
    for prop in list(proto.metadata_props):
        if prop.key == "restore":
            proto.metadata_props.remove(prop)
    proto.metadata_props.add(key="restore", value=json.dumps(metadata, sort_keys=True))
    proto.producer_name = "restore-export"


def save_onnx(proto, path):
    onnx.save_model(proto, str(path))
