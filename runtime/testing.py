"""Tiny real models for tests and benchmarks of the runtime (no torch, no training).

``write_conv_artifact`` writes an artifact directory like restore-export's (model.onnx +
metadata.json) holding a small random convolutional net built with onnx.helper: fast to run on
CPU, a known receptive field (radius = number of 3x3 layers), optional x4 pixel-shuffle head.
Needs the ``onnx`` package (restore[train]); the runtime itself does not.
"""
import json
from pathlib import Path

import numpy as np

from .metadata import ARTIFACT_FORMAT

ONNX_IR_VERSION = 10  # ONNX Runtime 1.31 reads at most IR 13; onnx 1.23 writes 14 by default
ONNX_OPSET = 17


def conv_model(channels=3, layers=2, width=8, scale=1, tile=None, seed=0):
    """A conv-only ONNX ModelProto: ``layers`` 3x3 convs (ReLU between), input + residual.

    ``tile``: fixed H = W (like the exporter's portable graph), or None for dynamic H/W.
    ``layers=0`` gives the identity (cheapest possible model, for memory benchmarks)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    hw = [tile, tile] if tile else ["height", "width"]
    out_hw = [tile * scale, tile * scale] if tile else ["out_height", "out_width"]
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", channels, *hw])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", channels, *out_hw])
    nodes, inits, x = [], [], "input"
    if layers == 0 and scale == 1:
        nodes.append(helper.make_node("Identity", ["input"], ["output"]))
    else:
        cin = channels
        for i in range(layers):
            last = i == layers - 1
            cout = channels * scale * scale if last else width
            weight = rng.normal(0, 0.3 / np.sqrt(9 * cin), (cout, cin, 3, 3)).astype(np.float32)
            inits += [numpy_helper.from_array(weight, f"w{i}"), numpy_helper.from_array(np.zeros(cout, np.float32), f"b{i}")]
            y = f"conv{i}"
            nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [y], pads=[1, 1, 1, 1]))
            if not last:
                nodes.append(helper.make_node("Relu", [y], [f"relu{i}"]))
                y = f"relu{i}"
            x, cin = y, cout
        if scale > 1:
            nodes.append(helper.make_node("DepthToSpace", [x], ["shuffled"], blocksize=scale, mode="CRD"))
            nodes.append(helper.make_node("Resize", ["input", "", "scales"], ["upsampled"], mode="nearest"))
            inits.append(numpy_helper.from_array(np.array([1, 1, scale, scale], np.float32), "scales"))
            nodes.append(helper.make_node("Add", ["upsampled", "shuffled"], ["output"]))
        else:
            nodes.append(helper.make_node("Add", ["input", x], ["output"]))
    graph = helper.make_graph(nodes, "tiny_conv", [inp], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model)
    return model


def write_conv_artifact(directory, channels=3, layers=2, scale=1, tile=64, overlap=16, batch=4, seed=0, width=8):
    """Write model.onnx + metadata.json (the restore-artifact/1 schema) and return the directory."""
    import onnx

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(conv_model(channels, layers, width, scale, tile, seed), str(directory / "model.onnx"))
    metadata = {
        "format": ARTIFACT_FORMAT,
        "model": {"arch": f"tiny-conv-{layers}", "config": {"layers": layers}, "params": None, "checkpoint_sha256": None, "metrics": {}},
        "io": {"in_channels": channels, "out_channels": channels, "scale": scale, "size_multiple": 1, "value_range": [0, 1],
               "normalisation": {"mean": [0.0] * channels, "std": [1.0] * channels}, "layout": "NCHW",
               "color": "RGB" if channels == 3 else "GRAY"},
        "tiling": {"tile": tile or 64, "overlap": overlap},
        "shapes": {"tile": tile, "batch": {"min": 1, "opt": batch, "max": 2 * batch}},
        "files": {"onnx": "model.onnx"},
    }
    (directory / "metadata.json").write_text(json.dumps(metadata, indent=2))
    return directory


def decodable_frames(path):
    """How many frames OpenCV decodes from a video, reading to the end (the container's frame
    count can lie about a cut-off file)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        count = 0
        while capture.read()[0]:
            count += 1
        return count
    finally:
        capture.release()
