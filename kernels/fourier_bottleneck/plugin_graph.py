"""A small plugin graph (Conv -> FourierBottleneck) and a TensorRT engine built from it.

Used by the CPU test (TensorRT-RTX builds the engine without a GPU) and by gpu_bench.py (which
also runs it). The node is written exactly as the exporter writes it: op_type FourierBottleneck,
domain "restore", attributes mode / plugin_version / plugin_namespace, inputs (x, weight) with
weight a (C, K, K, 2) float32 initializer.
"""
import numpy as np

from .trt_plugin import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION, register_trt_plugin

ONNX_IR_VERSION = 10


def make_plugin_graph(channels=4, height=32, width=32, grid=8, mode="spectral", fp16=False, seed=0):
    """Serialized ONNX model: input "input" (N, C, H, W) -> 1x1 Conv -> FourierBottleneck -> "output".

    Returns (model bytes, dict of the weights) so a caller can compute the expected output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    dtype = np.float16 if fp16 else np.float32
    elem = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    conv_w = (rng.standard_normal((channels, channels, 1, 1)) / np.sqrt(channels)).astype(dtype)
    conv_b = (0.1 * rng.standard_normal(channels)).astype(dtype)
    response = np.zeros((channels, grid, grid, 2), np.float32)
    response[..., 0] = 1.0
    response += (0.3 * rng.standard_normal(response.shape)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["proj"], name="proj_in"),
        helper.make_node(PLUGIN_NAME, ["proj", "spectral_weight"], ["output"], name="fourier_bottleneck",
                         domain=PLUGIN_NAMESPACE, mode=mode, plugin_version=PLUGIN_VERSION,
                         plugin_namespace=PLUGIN_NAMESPACE),
    ]
    graph = helper.make_graph(
        nodes, "fourier_bottleneck_plugin_graph",
        [helper.make_tensor_value_info("input", elem, ["batch", channels, height, width])],
        [helper.make_tensor_value_info("output", elem, ["batch", channels, height, width])],
        [numpy_helper.from_array(conv_w, "conv_w"), numpy_helper.from_array(conv_b, "conv_b"),
         numpy_helper.from_array(response, "spectral_weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(PLUGIN_NAMESPACE, 1)])
    model.ir_version = ONNX_IR_VERSION
    weights = {"conv_w": conv_w, "conv_b": conv_b, "spectral_weight": response}
    return model.SerializeToString(), weights


def parse_plugin_graph(trt, model_bytes, logger=None):
    """Parse with ``trt``'s ONNX parser after registering the plugin; returns (builder, network,
    parser, logger). Raises RuntimeError with the parser's errors."""
    register_trt_plugin(trt)
    logger = logger or trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # strongly typed in TensorRT-RTX; explicit batch in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model_bytes):
        errors = "; ".join(parser.get_error(i).desc() for i in range(parser.num_errors))
        raise RuntimeError(f"ONNX parse failed: {errors}")
    return builder, network, parser, logger


def plugin_layer_names(trt, network):
    return [network.get_layer(i).name for i in range(network.num_layers)
            if network.get_layer(i).type == trt.LayerType.PLUGIN_V3]


def build_engine(trt, model_bytes, shape_min, shape_opt, shape_max):
    """Serialized engine (bytes) with one optimization profile over the input's shape."""
    builder, network, _parser, _logger = parse_plugin_graph(trt, model_bytes)
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape(network.get_input(0).name, shape_min, shape_opt, shape_max)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT returned no engine (see its log above)")
    return bytes(serialized), plugin_layer_names(trt, network)


def expected_output(x, weights, mode="spectral"):
    """float64 reference of the graph: 1x1 conv, then the NumPy reference of the op."""
    from .reference import fourier_bottleneck_ref

    w = weights["conv_w"].astype(np.float64)[:, :, 0, 0]
    proj = np.einsum("oc,nchw->nohw", w, x.astype(np.float64)) + weights["conv_b"].astype(np.float64)[None, :, None, None]
    if x.dtype == np.float16:
        proj = proj.astype(np.float16).astype(np.float64)
    return fourier_bottleneck_ref(proj, weights["spectral_weight"], mode)
