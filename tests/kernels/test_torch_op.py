"""torch binding: the registered custom op, its CPU (torch.fft) path and autograd, and on a GPU
the fused kernel behind it."""
import numpy as np
import pytest
import torch

from restore.kernels.fourier_bottleneck import library, torch_op
from restore.kernels.fourier_bottleneck.reference import fourier_bottleneck_ref


def inputs(shape=(2, 3, 16, 8), grid=(8, 8), seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen).to(dtype)
    weight = torch.randn((shape[1], *grid, 2), generator=gen)
    return x, weight


def test_op_is_registered_with_torch():
    op = torch.ops.restore.fourier_bottleneck.default
    assert "Tensor? weight" in str(op._schema) and "str mode" in str(op._schema)
    x, weight = inputs((1, 2, 8, 8), grid=(4, 4))
    torch.library.opcheck(op, (x, weight, "spectral"))
    torch.library.opcheck(op, (x, None, "gir"))


@pytest.mark.parametrize("mode", ["spectral", "gir"])
@pytest.mark.parametrize("shape", [(2, 3, 16, 8), (1, 2, 24, 40), (1, 1, 7, 5)])
def test_cpu_path_matches_reference(mode, shape):
    x, weight = inputs(shape)
    y = torch.ops.restore.fourier_bottleneck(x, weight if mode == "spectral" else None, mode)
    ref = fourier_bottleneck_ref(x.numpy(), weight.numpy(), mode)
    assert y.dtype == x.dtype
    np.testing.assert_allclose(y.numpy(), ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_array_equal(torch_op.fourier_bottleneck(x, weight, mode).numpy(), y.numpy())


def test_gradients_flow_through_the_op_to_input_and_weight():
    x, weight = inputs((1, 2, 8, 8), grid=(4, 4))
    grads = []
    for function in (lambda a, b: torch.ops.restore.fourier_bottleneck(a, b, "spectral"),
                     lambda a, b: torch_op.fourier_bottleneck_fft(a, b, "spectral")):
        a, b = x.clone().requires_grad_(), weight.clone().requires_grad_()
        (function(a, b) * torch.linspace(-1, 1, a.numel()).view_as(a)).sum().backward()
        grads.append((a.grad, b.grad))
    (op_dx, op_dw), (fft_dx, fft_dw) = grads
    assert op_dx.abs().sum() > 0 and op_dw.abs().sum() > 0
    torch.testing.assert_close(op_dx, fft_dx)
    torch.testing.assert_close(op_dw, fft_dw)


def test_unknown_mode_is_refused():
    x, weight = inputs()
    with pytest.raises(ValueError, match="unknown Fourier bottleneck mode"):
        torch_op.fourier_bottleneck(x, weight, "blur")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float16, 2e-3)])
@pytest.mark.parametrize("shape", [(2, 4, 64, 64), (1, 3, 8, 128), (1, 2, 24, 40)])
@pytest.mark.parametrize("mode", ["spectral", "gir"])
def test_fused_kernel_on_cuda_matches_reference(fb_library, dtype, tolerance, shape, mode):
    x, weight = inputs(shape, dtype=dtype)
    x, weight = x.cuda(), weight.cuda()
    with torch.no_grad():
        y = torch_op.fourier_bottleneck(x, weight, mode)
    ref = fourier_bottleneck_ref(x.double().cpu().numpy(), weight.cpu().numpy(), mode)
    err = np.abs(y.double().cpu().numpy() - ref).max() / np.abs(ref).max()
    assert y.dtype == dtype and err <= tolerance
    assert library.is_built()


def test_autocast_keeps_the_transform_in_fp32():
    """Under AMP (bf16 on CPU here, fp16 on CUDA) the op still computes in fp32: the response's
    einsums would otherwise be autocast and fail (bf16 has no complex type) or lose precision."""
    x, weight = inputs((1, 4, 16, 16))
    weight.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = torch_op.fourier_bottleneck_fft(x, weight)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, torch_op.fourier_bottleneck_fft(x, weight), rtol=0, atol=0)
    y.sum().backward()
    assert weight.grad is not None
