"""Checks of exported graphs against the torch model, with the figures kept for metadata.json.

- onnx.checker on every graph;
- the portable graph in ONNX Runtime (CPU) vs the torch model, on random and on real inputs:
  max abs error <= FP32_TOLERANCE;
- the plugin graph in ONNX Runtime, its FourierBottleneck nodes run by the NumPy reference through
  kernels/fourier_bottleneck/ort_op.py: proves the graph surgery exact (same bound);
- fp16 graphs vs the fp32 portable graph: PSNR >= FP16_MIN_PSNR (outputs in [0, 1], peak 1);
- with full TensorRT and a GPU: the engine vs ONNX Runtime through polygraphy.
A failed bound raises ModelError: the artifacts are not written.
"""
import math

import numpy as np
import onnx
import onnxruntime as ort

from restore.runtime.errors import ModelError

FP32_TOLERANCE = 1e-4
FP16_MIN_PSNR = 45.0
IDENTICAL_PSNR = 200.0  # reported for identical outputs
# Real photographs bundled with scikit-image (no download); colour ones for RGB models.
REAL_IMAGES = ("astronaut", "coffee", "chelsea", "rocket")


def sample_inputs(channels, tile, batch, seed=0):
    """{"random": uniform [0, 1], "real": blurred crops of real photos, "flat": uniform tiles}, each
    (batch, C, tile, tile) float32."""
    import cv2
    from skimage import data

    rng = np.random.default_rng(seed)
    real = []
    for i in range(batch):
        image = getattr(data, REAL_IMAGES[i % len(REAL_IMAGES)])()
        scale = max(tile / image.shape[0], tile / image.shape[1], 1.0)
        if scale > 1.0:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        top, left = (image.shape[0] - tile) // 2, (image.shape[1] - tile) // 2
        crop = image[top:top + tile, left:left + tile].astype(np.float32) / 255.0
        crop = cv2.GaussianBlur(crop, (0, 0), 1.5)  # the kind of input a deblurring model sees
        if channels == 1:
            crop = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[..., None]
        real.append(crop.transpose(2, 0, 1))
    levels = np.resize([0.0, 0.5, 1.0, 0.25], batch).astype(np.float32)
    return {
        "random": rng.random((batch, channels, tile, tile), dtype=np.float32),
        "real": np.ascontiguousarray(np.stack(real)),
        # uniform tiles (a grey card, a clipped sky): where a log or a division of a graph meets zero
        "flat": np.broadcast_to(levels[:, None, None, None], (batch, channels, tile, tile)).copy(),
    }


def psnr(reference, test, peak=1.0):
    mse = float(np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def check_graph(model, label):
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ModelError(label, f"onnx.checker rejects the exported graph: {str(e).splitlines()[0]}") from None


def ort_session(model):
    options = ort.SessionOptions()
    # errors only: ORT warns that it cannot constant-fold fp16 MatMuls on the CPU, which is expected
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run(session, x, posterior=None):
    """The graph's output for ``x`` (and the picture's ``posterior``, for a graph that takes one)."""
    dtype = np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32
    feeds = {"input": x.astype(dtype)}
    if posterior is not None:
        feeds["posterior"] = posterior.astype(np.float32)
    return session.run(None, feeds)[0].astype(np.float32)


def compare_fp32(label, expected, actual):
    """Max abs error of ``actual`` vs ``expected`` (dict of input name -> output); raises above the bound."""
    errors = {name: float(np.abs(expected[name] - actual[name]).max()) for name in expected}
    worst = max(errors.values())
    if not worst <= FP32_TOLERANCE:  # also catches NaN
        raise ModelError(label, f"validation failed: max abs error {worst:.3g} > {FP32_TOLERANCE:g} vs the torch model")
    return errors


def compare_fp16(label, reference, actual):
    values = {name: psnr(reference[name], actual[name]) for name in reference}
    worst = min(values.values())
    if not worst >= FP16_MIN_PSNR:
        raise ModelError(label, f"validation failed: fp16 PSNR {worst:.1f} dB < {FP16_MIN_PSNR:g} dB vs fp32")
    return {name: round(min(v, IDENTICAL_PSNR), 2) for name, v in values.items()}  # JSON has no infinity


def compare_engine_with_ort(engine_path, onnx_model, inputs, register_plugin):
    """Engine vs ONNX Runtime through polygraphy (full TensorRT with a CUDA GPU only).

    Returns the figures, or {"skipped": why}."""
    try:
        import tensorrt  # noqa: F401  (polygraphy's TensorRT backend runs on full TensorRT only)
    except ImportError:
        return {"skipped": "polygraphy runs engines with full TensorRT; not installed here"}
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if not has_gpu:
        return {"skipped": "no CUDA GPU on this machine"}
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    from polygraphy.comparator import Comparator, CompareFunc

    register_plugin(tensorrt)
    engine = EngineFromBytes(open(engine_path, "rb").read())
    dtype = np.float16 if onnx_model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 else np.float32
    feeds = [{"input": x.astype(dtype)} for x in inputs.values()]
    runners = [TrtRunner(engine), OnnxrtRunner(SessionFromOnnx(onnx_model.SerializeToString()))]
    results = Comparator.run(runners, data_loader=feeds)
    passed = bool(Comparator.compare_accuracy(results, compare_func=CompareFunc.simple(atol=2e-2, rtol=2e-2)))
    (trt_name, trt_out), (_, ort_out) = results.items()
    figures = {name: round(psnr(o["output"], t["output"]), 2) for name, t, o in zip(inputs, trt_out, ort_out)}
    if not passed:
        raise ModelError(engine_path, f"validation failed: engine output differs from ONNX Runtime (PSNR {figures})")
    return {"psnr_vs_onnxruntime": figures, "runner": trt_name}
