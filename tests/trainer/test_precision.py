"""fp16 with fp32 islands (trainer/models/precision.py): the shipped model at 256 x 256 tiles stays
finite and close to fp32 in fp16, where a plain .half() overflows; every fp16 torch path uses it."""
import copy

import numpy as np
import pytest
import torch

from restore.runtime.artifact import DEFAULT_MODEL_DIR
from restore.trainer.checkpoint import model_from_checkpoint
from restore.trainer.models import build_model
from restore.trainer.models.precision import Fp32Island, declared_fp32, half_precision

SAMPLE = DEFAULT_MODEL_DIR.parent.parent / "samples" / "astronaut_motion.png"


@pytest.fixture(scope="module")
def shipped():
    return model_from_checkpoint(DEFAULT_MODEL_DIR / "model.safetensors").eval()


def _tile(size=256):
    import cv2

    image = cv2.imread(str(SAMPLE), cv2.IMREAD_COLOR)[:size, :size, ::-1]
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255


def _run(net, x):
    # channels-last: the CPU's fp16 convolutions are fast only in that layout
    net = net.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        return net(x.to(next(net.parameters()).dtype).contiguous(memory_format=torch.channels_last)).float()


def test_shipped_model_in_fp16_at_256_tiles_is_finite_and_close_to_fp32(shipped):
    x = _tile()
    reference = _run(shipped, x)
    out = _run(half_precision(shipped), x)
    assert torch.isfinite(out).all()
    assert (out - reference).abs().max() < 2e-2
    plain = _run(copy.deepcopy(shipped).half(), x)
    assert not torch.isfinite(plain).all()  # the front end's DC bin overflows fp16 without its island


def test_declared_modules_and_named_ones_run_fp32_and_the_original_is_untouched(shipped):
    assert declared_fp32(shipped) == ["deconv", "detail_gate"]
    net = half_precision(shipped, islands=["bottleneck", "bottleneck.0", "deconv.estimator"])
    assert isinstance(net.deconv, Fp32Island) and isinstance(net.bottleneck, Fp32Island)
    assert not isinstance(net.bottleneck.inner[0], Fp32Island)  # inside an island: nothing more
    assert all(p.dtype == torch.float32 for p in net.deconv.parameters())
    assert all(p.dtype == torch.float32 for p in net.bottleneck.parameters())
    assert net.head.weight.dtype == torch.float16
    assert all(p.dtype == torch.float32 for p in shipped.parameters()) and not isinstance(shipped.deconv, Fp32Island)
    assert half_precision(shipped, dtype=torch.bfloat16).head.weight.dtype == torch.bfloat16


def test_the_benchmark_runner_converts_with_the_islands():
    from restore.benchmarks.harness import TorchRunner

    model = build_model({"type": "fourier-unet", "widths": [8, 16], "blocks": 1, "fourier": 1, "grid": 4,
                         "deconv": True, "detail_gate": True})
    runner = TorchRunner(model, "cpu", "fp16")
    assert isinstance(runner.model.deconv, Fp32Island) and isinstance(runner.model.detail_gate, Fp32Island)
    assert runner.model.deconv.inner.log_lams.dtype == torch.float32 and runner.model.head.weight.dtype == torch.float16
    assert model.head.weight.dtype == torch.float32  # the caller's model is not converted in place
