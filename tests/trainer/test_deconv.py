"""The blind deconvolution front end of fourier-unet (trainer/models/deconv.py): the Wiener filter
is exact on a blur with reflected borders, the kernel bank, the spectrum estimate's windows, and
a model with the front end starting as the model without it."""
import math

import numpy as np
import torch

from restore.trainer.degradations import apply_kernel, centred_kernel, gaussian_kernel, linear_motion_kernel
from restore.trainer.models import build_model
from restore.trainer.models.deconv import KERNEL_SIZE, SHARP, DeconvFrontEnd, KernelEstimator, kernel_bank, kernel_response, wiener


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


def test_wiener_with_phase_undoes_a_kernel_of_any_shape():
    """A curved shake path is not point-symmetric: with ``phase`` the filter uses its whole
    response and undoes the blur; without, it takes only the real part, and the kernel turned by
    180 degrees (the same |K|) does no better."""
    from restore.trainer.datasets import builtin_images
    from restore.trainer.degradations import trajectory_kernel

    x = dict(builtin_images("train"))["coffee"][100:196, 200:288]
    kernel = trajectory_kernel(np.random.default_rng(5), size=15, length=11, anxiety=0.5)
    assert np.abs(kernel - kernel[::-1, ::-1]).max() > 0.01
    y = _nchw(apply_kernel(x, kernel))
    k, lams = torch.from_numpy(kernel)[None].double(), torch.tensor([1e-2], dtype=torch.float64)

    def error(out):  # mean absolute error inside, where the mirroring is exact enough
        return float((out - _nchw(x))[..., 15:-15, 15:-15].abs().mean())

    with_phase = error(wiener(y, k, lams, phase=True))
    assert with_phase < 0.7 * error(y)
    assert with_phase < 0.6 * error(wiener(y, k, lams))
    assert with_phase < 0.6 * error(wiener(y, k.flip(-2, -1), lams, phase=True))
    # a point-symmetric kernel has no imaginary part: both ways agree
    m = torch.from_numpy(centred_kernel(linear_motion_kernel(9.0, 30.0), KERNEL_SIZE))[None].double()
    assert torch.allclose(wiener(y, m, lams, phase=True), wiener(y, m, lams), atol=1e-9)


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
        posterior = estimator(torch.rand(*shape))
        assert posterior.shape == (shape[0], len(kernel_bank()))
        k = estimator.kernel(posterior)
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
        out, posterior = front(x)
    assert out.dtype == posterior.dtype == torch.float32 and torch.allclose(out, front(x)[0], atol=1e-6)


def test_bank_2_extends_bank_1_and_ends_in_the_identity():
    from restore.trainer.models.deconv import SHARP, kernel_size

    one, two = kernel_bank(1).reshape(-1, 31, 31), kernel_bank(2).reshape(-1, 39, 39)
    assert kernel_size(2) == 39 and len(two) == len(one) + 4 * 60 + 6 + 14 + 1
    assert np.array_equal(two[:len(one), 4:-4, 4:-4], one)  # bank 1 first, in its order: a model grows into bank 2
    assert np.allclose(two.sum((1, 2)), 1.0, atol=1e-5) and np.allclose(two, two[:, ::-1, ::-1], atol=1e-6)
    assert not two[:, [0, -1]].any() and not two[:, :, [0, -1]].any()  # all fit the inner 37 x 37
    identity = np.zeros((39, 39), np.float32)
    identity[19, 19] = 1
    assert np.array_equal(two[SHARP], identity)
    widest = (two[:, 19] > 0).sum(1).max()  # a 35 px horizontal line covers 36 pixels
    assert widest >= 35


def test_a_bank_1_model_grows_into_bank_2_and_computes_about_the_same():
    from restore.trainer.checkpoint import init_weights, save_checkpoint

    spec = {"type": "fourier-unet", "widths": [8, 16], "blocks": 1, "fourier": 1, "norm": "none", "deconv": True}
    torch.manual_seed(0)
    old = build_model(spec).eval()
    with torch.no_grad():
        old.deconv_gate.fill_(0.5)  # let the front end's estimate reach the output
    path = save_checkpoint(f"{_tmp()}/old.safetensors", old)
    grown = build_model({**spec, "bank": 2}).eval()
    assert init_weights(grown, path) == []
    rows = len(kernel_bank(1))
    new_w, old_w = grown.deconv.estimator.classify[-1].weight, old.deconv.estimator.classify[-1].weight
    assert torch.equal(new_w[:rows], old_w)
    x = torch.from_numpy(apply_kernel(_image(64, 64), linear_motion_kernel(9, 30))).permute(2, 0, 1)[None]
    with torch.no_grad():
        p = grown.deconv.estimator(x)
        assert p[0, -1] < 1e-3  # the identity starts unlikely: the model does not back off at first
        assert (grown(x) - old(x)).abs().max() < 0.02


def test_the_identity_starts_from_the_class_sharp_pictures_get():
    from restore.trainer.models.deconv import SHARP, seed_sharp_class

    torch.manual_seed(0)
    estimator = KernelEstimator(bank=2).eval()
    sharp = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        favourite = int(estimator(sharp).mean(0)[:SHARP].argmax())
        assert seed_sharp_class(estimator, sharp) == favourite
        layer = estimator.classify[-1]
        assert torch.equal(layer.weight[SHARP], layer.weight[favourite])
        assert torch.isclose(layer.bias[SHARP], layer.bias[favourite] - 1)


def test_a_pictures_tiles_share_one_estimate_and_a_sharp_verdict_returns_the_input():
    torch.manual_seed(0)
    model = build_model({"type": "fourier-unet", "widths": [8, 16], "blocks": 1, "fourier": 1, "norm": "none",
                         "deconv": True, "bank": 2}).eval()
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        one = model.estimate(x[:1])
        assert torch.allclose(one, model.deconv.estimator(x[:1]), atol=1e-7)  # one tile: its own estimate
        shared = model.estimate(x)
        assert shared.shape == (1, len(kernel_bank(2)))
        power = model.deconv.estimator.power(x).mean(0, keepdim=True)  # the pooled spectrum of all three
        assert torch.allclose(shared, model.deconv.estimator.posterior(power))
        out = model(x, shared)
        assert torch.allclose(out[1:2], model(x[1:2], shared), atol=1e-5)  # a tile's output depends on it, not on the batch
        sharp = torch.zeros_like(shared)
        sharp[0, -1] = 1
        assert torch.equal(model(x, sharp), x)  # backs off entirely


def test_backoff_dropout_applies_the_correction_at_full_strength_in_training_only():
    torch.manual_seed(0)
    spec = {"type": "fourier-unet", "widths": [8, 16], "blocks": 1, "fourier": 1, "norm": "none", "deconv": True, "bank": 2}
    unsure = torch.zeros(1, len(kernel_bank(2)))
    unsure[0, SHARP], unsure[0, 100] = 0.7, 0.3  # confidence 0.3: the correction scaled by 0.3
    models = {p: build_model({**spec, "backoff_dropout": p}) for p in (0.0, 0.5, 1.0)}
    full = build_model(spec).eval()
    full.backoff = None  # the same weights with no backoff at all
    with torch.no_grad():
        models[0.0].deconv_gate.fill_(0.5)
        for model in (*models.values(), full):
            model.load_state_dict(models[0.0].state_dict())
        x = torch.rand(32, 3, 32, 32)
        at_full, scaled = full(x, unsure), x + 0.3 * (full(x, unsure) - x)
        assert (at_full - x).abs().mean() > 1e-3
        assert torch.allclose(models[1.0].train()(x, unsure), at_full, atol=1e-6)  # dropped for every picture
        assert torch.allclose(models[0.0].train()(x, unsure), scaled, atol=1e-6)
        assert torch.allclose(models[1.0].eval()(x, unsure), scaled, atol=1e-6)  # at inference it always holds
        out = models[0.5].train()(x, unsure)
    dropped = [bool(torch.allclose(o, f, atol=1e-6)) for o, f in zip(out, at_full)]
    held = [bool(torch.allclose(o, s, atol=1e-6)) for o, s in zip(out, scaled)]
    assert all(d != h for d, h in zip(dropped, held)) and 6 <= sum(dropped) <= 26  # about half, each drawn alone


def _tmp():
    import tempfile

    return tempfile.mkdtemp()
