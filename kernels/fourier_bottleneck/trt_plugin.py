"""TensorRT plugin "FourierBottleneck" (version "1", namespace "restore"): a Python IPluginV3.

    from restore.kernels.fourier_bottleneck.trt_plugin import register_trt_plugin
    register_trt_plugin(tensorrt)               # full TensorRT
    register_trt_plugin(tensorrt_rtx_bindings)  # TensorRT-RTX (builds engines on a CPU-only machine)

Call it before parsing a plugin graph (build) and before deserializing an engine (run). Building
needs no GPU and no compiled kernel; running (enqueue) launches the fused kernel through
library.py with the launch plan of the actual shapes, on TensorRT's stream. See README.md for why
this is a Python IPluginV3 rather than a QDP AOT plugin or a C++ library, and for the
TensorRT-RTX parser abort this module works around.
"""
import os
import threading
from pathlib import Path

import numpy as np

from . import library
from .reference import MODES

PLUGIN_NAME = "FourierBottleneck"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "restore"

_lock = threading.Lock()
_creators = {}  # trt module name -> creator; the registry keeps only a raw pointer to it


class PluginSetupError(RuntimeError):
    pass


def ensure_rtx_parser_can_open_runtime(trt):
    """TensorRT-RTX 1.7's ONNX parser dlopen()s "libtensorrt_rtx.so" -- the unversioned name --
    when it imports an IPluginV3 node; the PyPI wheel ships only libtensorrt_rtx.so.1, so the
    parser's std::runtime_error ("Unable to open library: libtensorrt_rtx.so") escapes a noexcept
    frame and the process aborts with "terminate called without an active exception". The parser
    searches its own directory first (RPATH $ORIGIN), so the missing development symlink there
    fixes it. Returns the link's path (None for other TensorRT modules)."""
    if not trt.__name__.startswith("tensorrt_rtx"):
        return None
    try:
        import tensorrt_rtx_libs
    except ImportError:
        return None
    libdir = Path(tensorrt_rtx_libs.__file__).resolve().parent
    link, target = libdir / "libtensorrt_rtx.so", libdir / "libtensorrt_rtx.so.1"
    if link.exists() or not target.exists():
        return link
    temporary = libdir / f".libtensorrt_rtx.so.{os.getpid()}"
    try:
        os.symlink(target.name, temporary)
        os.replace(temporary, link)
    except OSError as err:
        raise PluginSetupError(
            f"TensorRT-RTX's ONNX parser needs {link} to import plugin nodes and it cannot be created "
            f"({err.strerror}); run: ln -s {target.name} {link}") from err
    return link


def _mode_from_fields(fields):
    for i in range(len(fields)):
        field = fields[i]
        if field.name == "mode":
            return np.asarray(field.data, dtype=np.int8).tobytes().split(b"\0")[0].decode()
    return "spectral"


def _define_classes(trt):
    """The plugin and creator classes for one TensorRT module (their bases come from it)."""
    dtypes = {trt.DataType.FLOAT: np.float32, trt.DataType.HALF: np.float16}

    class FourierBottleneckPlugin(trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild,
                                  trt.IPluginV3OneRuntime):
        def __init__(self, mode):
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            trt.IPluginV3OneBuild.__init__(self)
            trt.IPluginV3OneRuntime.__init__(self)
            self.plugin_name = PLUGIN_NAME
            self.plugin_version = PLUGIN_VERSION
            self.plugin_namespace = PLUGIN_NAMESPACE
            self.num_outputs = 1
            self.timing_cache_id = ""
            self.mode = mode
            self._plans = {}

        # -- core --
        def get_capability_interface(self, capability):
            return self

        def clone(self):
            return FourierBottleneckPlugin(self.mode)

        # -- build time: shapes, types, formats, workspace --
        def get_output_data_types(self, input_types):
            return [input_types[0]]

        def get_output_shapes(self, inputs, shape_inputs, expr_builder):
            return [trt.DimsExprs(inputs[0])]

        def supports_format_combination(self, pos, in_out, num_inputs):
            desc = in_out[pos].desc
            if desc.format != trt.TensorFormat.LINEAR:
                return False
            if pos == 0:
                return desc.type in dtypes
            if pos < num_inputs:  # the (C, K, K, 2) response grid
                return desc.type == trt.DataType.FLOAT
            return desc.type == in_out[0].desc.type

        def configure_plugin(self, inputs, outputs):
            pass

        def get_workspace_size(self, inputs, outputs):
            # the general (direct DFT) path needs a spectrum buffer; size it for the largest shape
            shape = tuple(inputs[0].max)
            grid = tuple(inputs[1].max)[1:3] if len(inputs) > 1 and self.mode == "spectral" else None
            try:
                return self._plan(shape, grid, dtypes.get(inputs[0].desc.type, np.float32)).workspace_bytes
            except library.FourierBottleneckError:
                # without the compiled library nothing can run anyway; the engine still builds
                return 0

        def get_valid_tactics(self):
            return []

        # -- run time --
        def set_tactic(self, tactic):
            pass

        def on_shape_change(self, inputs, outputs):
            pass

        def attach_to_context(self, context):
            return self.clone()

        def get_fields_to_serialize(self):
            return trt.PluginFieldCollection([
                trt.PluginField("mode", np.frombuffer(self.mode.encode(), dtype=np.int8), trt.PluginFieldType.CHAR),
            ])

        def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
            shape = tuple(input_desc[0].dims)
            spectral = self.mode == "spectral"
            grid = tuple(input_desc[1].dims)[1:3] if spectral else None
            plan = self._plan(shape, grid, dtypes[input_desc[0].type])
            library.launch(plan, inputs[0], inputs[1] if spectral else 0, outputs[0], workspace, stream)

        def _plan(self, shape, grid, dtype):
            key = (shape, grid, np.dtype(dtype).name)
            if key not in self._plans:
                self._plans[key] = library.launch_plan(shape, grid, self.mode, dtype)
            return self._plans[key]

    class FourierBottleneckCreator(trt.IPluginCreatorV3One):
        def __init__(self):
            trt.IPluginCreatorV3One.__init__(self)
            self.name = PLUGIN_NAME
            self.plugin_version = PLUGIN_VERSION
            self.plugin_namespace = PLUGIN_NAMESPACE
            self.field_names = trt.PluginFieldCollection([
                trt.PluginField("mode", np.array([], dtype=np.int8), trt.PluginFieldType.CHAR),
            ])

        def create_plugin(self, name, fields, phase):
            # Called from C++: an exception raised here cannot travel back through TensorRT, so
            # an unknown mode makes no plugin (TensorRT then reports that the node failed).
            mode = _mode_from_fields(fields)
            if mode not in MODES:
                trt.Logger().log(trt.Logger.ERROR, f"{PLUGIN_NAME} node {name}: unknown mode {mode!r}; "
                                                   f"expected one of {MODES}")
                return None
            return FourierBottleneckPlugin(mode)

    return FourierBottleneckPlugin, FourierBottleneckCreator


def register_trt_plugin(trt):
    """Register the FourierBottleneck creator with ``trt``'s plugin registry (``tensorrt`` or
    ``tensorrt_rtx_bindings``); idempotent. Returns the creator."""
    with _lock:
        if trt.__name__ in _creators:
            return _creators[trt.__name__]
        ensure_rtx_parser_can_open_runtime(trt)
        _, creator_class = _define_classes(trt)
        creator = creator_class()
        if not trt.get_plugin_registry().register_creator(creator, PLUGIN_NAMESPACE):
            raise PluginSetupError(f"{trt.__name__} refused to register the {PLUGIN_NAME} plugin creator")
        _creators[trt.__name__] = creator
        return creator
