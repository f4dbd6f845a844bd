"""The deconvolution front end's constant matrices: made once per device and dtype, outside
inference_mode, so an inference forward first does not break a later training step or export."""
import numpy as np
import onnxruntime as ort
import torch

from restore.export.onnx_export import trace_to_onnx
from restore.export.spectral import probe_plane_shapes
from restore.trainer.models import build_model, deconv

TINY_DECONV = {"type": "fourier-unet", "widths": [8, 16], "blocks": 1, "fourier": 1, "grid": 4, "deconv": True}


def test_constants_are_made_once_per_device_and_dtype_and_are_not_inference_tensors():
    x = torch.rand(1, 3, 64, 72)
    with torch.inference_mode():
        first = deconv._tensors(deconv._mirror_dft, 72, True, like=x)
    again = deconv._tensors(deconv._mirror_dft, 72, True, like=x)
    assert all(a is b for a, b in zip(first, again))
    assert not any(t.is_inference() for t in first)
    as_double = deconv._tensors(deconv._mirror_dft, 72, True, like=x.double())
    assert all(t.dtype == torch.float64 for t in as_double)
    half, mirror = deconv._tensors(deconv._bank_half, like=x)
    assert half.dtype == torch.float32 and mirror.dtype == torch.int64  # indices stay integers


def test_training_and_export_after_an_inference_mode_forward():
    torch.manual_seed(0)
    model = build_model(TINY_DECONV)
    x = torch.rand(2, 3, 64, 64)
    model.eval()
    with torch.inference_mode():
        model(x)  # fills the constants' cache under inference_mode
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss = (model(x) - x).abs().mean() + model.deconv.estimator.loss(torch.zeros(2, 31, 31))
    loss.backward()
    assert model.deconv.log_lams.grad is not None and torch.isfinite(model.deconv.log_lams.grad).all()
    optimizer.step()

    model.eval()
    probe_plane_shapes(model, 64, 3)
    proto = trace_to_onnx(model, "matmul", 64, (1, 1))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    sample = x[:1].numpy()
    with torch.no_grad():
        posterior = model.estimate(x[:1])
        expected = model(x[:1], posterior).numpy()
    np.testing.assert_allclose(session.run(None, {"input": sample, "posterior": posterior.numpy()})[0], expected, atol=1e-4)
