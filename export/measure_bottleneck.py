"""Measurements behind the exporter's choices (figures in export/README.md):

1. the portable Fourier bottleneck as MatMul against DFT matrices vs ONNX DFT: ONNX Runtime CPU
   time (the op alone, and the whole default fourier-unet), error vs the NumPy reference, and
   whether TensorRT-RTX's parser takes each graph;
2. fp16: PSNR of the fp16 graph vs fp32 with the spectral op kept fp32 and with it in fp16.

    python -m restore.export.measure_bottleneck [--tile 256] [--runs 20] [--checkpoint PATH]
"""
import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from restore.kernels.fourier_bottleneck.reference import fourier_bottleneck_ref
from restore.trainer.checkpoint import model_from_checkpoint
from restore.trainer.models import SpectralFilter, build_model

from .fp16 import FP16_MAX, HEADROOM, activation_peaks
from .onnx_export import trace_to_onnx
from .spectral import probe_plane_shapes
from .validate import psnr, sample_inputs


class SpectralOnly(nn.Module):
    """The op alone, as a model the exporter can trace."""

    def __init__(self, channels, grid=8):
        super().__init__()
        self.in_channels = channels
        self.spectral = SpectralFilter(channels, grid)
        with torch.no_grad():
            self.spectral.weight.normal_()

    def forward(self, x):
        return self.spectral(x)


def ort_ms(proto, x, runs):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"input": x}
    session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        y = session.run(None, feed)[0]
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": round(statistics.median(times), 3), "min_ms": round(min(times), 3)}, y


def rtx_parses(proto):
    try:
        import tensorrt_rtx_bindings as trt
    except ImportError:
        return "tensorrt_rtx_bindings not installed"
    builder = trt.Builder(trt.Logger(trt.Logger.INTERNAL_ERROR))
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, trt.Logger(trt.Logger.INTERNAL_ERROR))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.onnx"
        path.write_bytes(proto.SerializeToString())
        if parser.parse_from_file(str(path)):
            return "parsed"
        return "rejected: " + str(parser.get_error(0).desc())


def measure(model, tile, runs, op_channels, op_plane):
    out = {"tile": tile, "op": {"shape": [1, op_channels, op_plane, op_plane]}, "model": {"arch": model.arch}}
    op = SpectralOnly(op_channels).eval()
    probe_plane_shapes(op, op_plane, op_channels)
    x = np.random.default_rng(0).random((1, op_channels, op_plane, op_plane), dtype=np.float32)
    ref = fourier_bottleneck_ref(x, op.spectral.weight.detach().numpy())
    for variant in ("matmul", "dft"):
        proto = trace_to_onnx(op, variant, op_plane, (1, 1))
        timing, y = ort_ms(proto, x, runs)
        out["op"][variant] = {**timing, "max_abs_err_vs_reference": float(np.abs(y - ref).max()), "tensorrt_rtx": rtx_parses(proto)}

    probe_plane_shapes(model, tile, model.in_channels)
    xs = sample_inputs(model.in_channels, tile, 1)
    with torch.no_grad():
        expected = model(torch.from_numpy(xs["real"])).numpy()
    for variant in ("matmul", "dft"):
        proto = trace_to_onnx(model, variant, tile, (1, 1))
        timing, y = ort_ms(proto, xs["real"], max(3, runs // 4))
        out["model"][variant] = {**timing, "max_abs_err_vs_torch": float(np.abs(y - expected).max())}

    fp32 = ort.InferenceSession(trace_to_onnx(model, "matmul", tile, (1, 1)).SerializeToString(), providers=["CPUExecutionProvider"])
    out["fp16_psnr_db"] = {}
    spectral = [name for name, m in model.named_modules() if isinstance(m, SpectralFilter)]
    peaks = activation_peaks(model, [torch.from_numpy(x) for x in xs.values()])
    out["fp16_spectrum_peak"] = {name: round(peaks[f"{name}:spectrum"], 2) for name in spectral}
    out["fp16_limit_with_headroom"] = FP16_MAX / HEADROOM
    for key, islands in (("spectral_fp32", spectral), ("spectral_fp16", [])):
        proto = trace_to_onnx(model, "matmul", tile, (1, 1), half=True, fp32_modules=islands)
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        out["fp16_psnr_db"][key] = {
            name: round(psnr(fp32.run(None, {"input": x})[0], session.run(None, {"input": x.astype(np.float16)})[0].astype(np.float32)), 2)
            for name, x in xs.items()
        }
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--checkpoint", help="measure this model (default: fourier-unet, default config, seed 0)")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = model_from_checkpoint(args.checkpoint) if args.checkpoint else build_model("fourier-unet").eval()
    plane = args.tile // model.size_multiple
    channels = next(m for m in model.modules() if isinstance(m, SpectralFilter)).weight.shape[0]
    print(json.dumps(measure(model, args.tile, args.runs, channels, plane), indent=2))


if __name__ == "__main__":
    main()
