"""The blind deconvolution front end of fourier-unet (trainer/models/deconv.py): the Wiener filter
is exact on a blur with reflected borders, the kernel bank, the spectrum estimate's windows, and
a model with the front end starting as the model without it."""
import math

import numpy as np
import torch

from restore.trainer.degradations import apply_kernel, centred_kernel, gaussian_kernel, linear_motion_kernel
from restore.trainer.models import build_model
from restore.trainer.models.deconv import KERNEL_SIZE, DeconvFrontEnd, KernelEstimator, kernel_bank, kernel_response, wiener


def _image(h=48, w=40, seed=0):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


def _nchw(img):
    return torch.from_numpy(img).permute(2, 0, 1)[None].double()


def test_a_mirrored_image_makes_the_dft_blur_the_reflected_border_blur():
    """The premise of the filter: on the image mirrored at its borders, the DFT's circular
    convolution is a blur with reflected borders, edges included."""
    x = _image()
    kernel = linear_motion_kernel(13.3, 37.0)
    mirrored = torch.cat([_nchw(x), _nchw(x).flip(-1)], -1)
    mirrored = torch.cat([mirrored, mirrored.flip(-2)], -2)
    h, w = mirrored.shape[-2:]
    response = kernel_response(torch.from_numpy(centred_kernel(kernel, KERNEL_SIZE))[None].double(),
                               torch.fft.fftfreq(h).double(), torch.fft.rfftfreq(w).double())
    blurred = torch.fft.irfft2(torch.fft.rfft2(mirrored) * response, s=(h, w))[..., :48, :40]
    assert torch.allclose(blurred, _nchw(apply_kernel(x, kernel)), atol=1e-5)


def test_wiener_matches_the_fft_formula_and_undoes_a_blur():
    x = _image()
    kernel = linear_motion_kernel(9.0, 120.0)
    k = torch.from_numpy(centred_kernel(kernel, KERNEL_SIZE))[None].double()
    y = _nchw(apply_kernel(x, kernel))
    lams = torch.tensor([1e-3, 1e-1], dtype=torch.float64)
    out = wiener(y, k, lams)
    assert out.shape == (1, 6, 48, 40)
    mirrored = torch.cat([y, y.flip(-1)], -1)
    mirrored = torch.cat([mirrored, mirrored.flip(-2)], -2)
    fh, fw = torch.fft.fftfreq(96).double(), torch.fft.rfftfreq(80).double()
    response = kernel_response(k, fh, fw)
    grad = (2 * torch.sin(math.pi * fh))[:, None] ** 2 + (2 * torch.sin(math.pi * fw))[None] ** 2
    for i, lam in enumerate(lams):
        gain = response / (response**2 + lam * grad)
        reference = torch.fft.irfft2(torch.fft.rfft2(mirrored) * gain, s=(96, 80))[..., :48, :40]
        assert torch.allclose(out[:, 3 * i:3 * i + 3], reference, atol=1e-5)
    # a Gaussian has no zeros in its spectrum: a weak regulariser gives the sharp image back
    g = gaussian_kernel(0.6)
    sharp = wiener(_nchw(apply_kernel(x, g)), torch.from_numpy(centred_kernel(g, KERNEL_SIZE))[None].double(),
                   torch.tensor([1e-9], dtype=torch.float64))
    assert (sharp - _nchw(x)).abs().max() < 1e-2


def test_kernel_bank_holds_normalised_point_symmetric_kernels():
    bank = kernel_bank().reshape(-1, KERNEL_SIZE, KERNEL_SIZE)
    assert len(bank) == 25 * 60 + 25 + 15
    assert np.allclose(bank.sum((1, 2)), 1.0, atol=1e-5)
    assert np.allclose(bank, bank[:, ::-1, ::-1], atol=1e-6)  # real spectra: what the filter assumes


def test_estimator_reads_whole_windows_and_takes_small_images():
    windows = KernelEstimator._windows
    assert windows(torch.rand(2, 1, 128, 128)).shape == (2, 9, 64, 64)  # 3 x 3 at a step of 32
    assert windows(torch.rand(1, 1, 256, 200)).shape == (1, 7 * 5, 64, 64)
    estimator = KernelEstimator().eval()
    for shape in ((2, 3, 128, 96), (1, 3, 40, 72)):
        k = estimator(torch.rand(*shape))
        assert k.shape == (shape[0], KERNEL_SIZE, KERNEL_SIZE)
        assert torch.allclose(k.sum((1, 2)), torch.ones(shape[0]), atol=1e-5)


def test_front_end_starts_as_the_model_without_it():
    spec = {"type": "fourier-unet", "widths": [8, 16], "blocks": 1, "fourier": 1, "norm": "none"}
    torch.manual_seed(0)
    plain = build_model(spec).eval()
    with_deconv = build_model({**spec, "deconv": True}).eval()
    missing = with_deconv.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("deconv") for k in missing)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(with_deconv(x), plain(x))


def test_front_end_stays_fp32_under_autocast():
    front = DeconvFrontEnd().eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = front(x)
    assert out.dtype == torch.float32 and torch.allclose(out, front(x), atol=1e-6)
