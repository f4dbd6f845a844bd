"""Training losses: pixel (L1, Charbonnier, MSE, per-picture log MSE), structural (SSIM), frequency (FFT L1),
perceptual (VGG19-54) and adversarial (BCE, relativistic average).

``build_loss({"type": "charbonnier", "weight": 1.0, ...})`` pops ``type`` and ``weight`` and builds
the registered class; ``build_generator_loss(list)`` sums several such terms. Pixel-type losses
are called as ``loss(output, target)``; adversarial losses have ``generator(real_logits,
fake_logits)`` and ``discriminator(real_logits, fake_logits)``.
"""
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from restore.runtime.errors import ConfigError

LOSSES = {}


def register(name):
    def wrap(cls):
        LOSSES[name] = cls
        return cls

    return wrap


def build_loss(cfg):
    """Build one loss from ``{type, weight?, ...}``; returns the module (its ``weight`` attribute set)."""
    if isinstance(cfg, str):
        cfg = {"type": cfg}
    cfg = dict(cfg)
    name = cfg.pop("type", None)
    weight = float(cfg.pop("weight", 1.0))
    if name not in LOSSES:
        raise ConfigError(f"loss type {name!r}", "unknown loss", f"known: {', '.join(sorted(LOSSES))}")
    try:
        loss = LOSSES[name](**cfg)
    except TypeError as e:
        raise ConfigError(f"loss {name}", f"bad options {cfg}: {e}") from None
    loss.name, loss.weight = name, weight
    return loss


class WeightedSum(nn.Module):
    """Sum of weighted terms; ``forward`` returns (total, {name: value}) for logging."""

    def __init__(self, terms):
        super().__init__()
        self.terms = nn.ModuleList(terms)

    def forward(self, output, target):
        parts = {t.name: t(output, target) for t in self.terms}
        total = sum(t.weight * parts[t.name] for t in self.terms)
        return total, {k: float(v.detach()) for k, v in parts.items()}


def build_generator_loss(cfgs):
    if isinstance(cfgs, dict):
        cfgs = [cfgs]
    if not cfgs:
        raise ConfigError("loss.generator", "no generator loss terms", "e.g. [{type: l1, weight: 1}]")
    return WeightedSum([build_loss(c) for c in cfgs])


@register("l1")
class L1Loss(nn.Module):
    def forward(self, output, target):
        return F.l1_loss(output, target)


@register("mse")
class MSELoss(nn.Module):
    def forward(self, output, target):
        return F.mse_loss(output, target)


@register("charbonnier")
class CharbonnierLoss(nn.Module):
    """sqrt((x - y)^2 + eps^2): L1 that stays smooth near zero."""

    def __init__(self, eps=1e-3):
        super().__init__()
        self.eps = eps

    def forward(self, output, target):
        return torch.sqrt((output - target) ** 2 + self.eps**2).mean()


@register("log_mse")
class LogMSELoss(nn.Module):
    """The mean over pictures of 10 log10(1 + MSE / eps): each picture's error in dB, as PSNR counts
    it, so a picture's gradient scales with 1 / (MSE + eps). A near-clean picture (a sharp or softly
    upscaled patch) then weighs as much per dB as a badly blurred one, where a mean over pixels lets
    a small absolute error on it go unnoticed; eps (50 dB) bounds that weight. 0 for a perfect output."""

    def __init__(self, eps=1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, output, target):
        mse = ((output - target) ** 2).flatten(1).mean(1)
        return (10 * torch.log10(1 + mse / self.eps)).mean()


def _gaussian_window(size, sigma, channels, device, dtype):
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim_torch(x, y, window=11, sigma=1.5, data_range=1.0):
    """Mean SSIM of two NCHW batches (Gaussian window, the constants of Wang et al. 2004)."""
    c = x.shape[1]
    w = _gaussian_window(window, sigma, c, x.device, x.dtype)
    mu_x = F.conv2d(x, w, groups=c)
    mu_y = F.conv2d(y, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mu_x**2
    syy = F.conv2d(y * y, w, groups=c) - mu_y**2
    sxy = F.conv2d(x * y, w, groups=c) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return ssim_map.mean()


@register("ssim")
class SSIMLoss(nn.Module):
    """1 - SSIM (the CelebA seed's structural loss)."""

    def __init__(self, window=11, sigma=1.5):
        super().__init__()
        self.window, self.sigma = window, sigma

    def forward(self, output, target):
        return 1.0 - ssim_torch(output.float(), target.float(), self.window, self.sigma)


@register("fft_l1")
class FFTL1Loss(nn.Module):
    """L1 distance of the 2-D spectra (real and imaginary parts): blur removes high frequencies,
    and a pixel loss alone weighs them little."""

    def forward(self, output, target):
        fo = torch.fft.rfft2(output.float(), norm="ortho")
        ft = torch.fft.rfft2(target.float(), norm="ortho")
        return F.l1_loss(torch.view_as_real(fo), torch.view_as_real(ft))


# VGG19 "features" layout (torchvision's indexing): numbers are conv widths, "M" max-pool.
VGG19_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
# conv5_4 is features[34]; VGG19-54 (ESRGAN) takes its output before the ReLU.
VGG19_54_END = 35
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_features(end=VGG19_54_END):
    layers, cin = [], 3
    for item in VGG19_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, item, 3, 1, 1), nn.ReLU(inplace=False)]
            cin = item
    return nn.Sequential(*layers[:end])


def load_vgg19_weights(features, path):
    """Load ImageNet VGG19 weights from a local file: a torch state dict (.pth/.pt) or
    .safetensors with keys ``features.N.weight`` (torchvision's naming) or ``N.weight``."""
    path = Path(path) if path else None
    if path is None or not path.is_file():
        raise ConfigError(
            f"loss perceptual weights_path={path}",
            "VGG19 weights file not found (nothing is downloaded)",
            "download torchvision's vgg19 ImageNet weights once and set weights_path to that file",
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load/safetensors raise many kinds for a bad file
        raise ConfigError(path, f"not a readable VGG19 weights file ({type(e).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    wanted = features.state_dict()
    picked = {}
    for key in wanted:
        for candidate in (f"features.{key}", key):
            if candidate in state:
                picked[key] = state[candidate]
                break
    missing = [k for k in wanted if k not in picked]
    if missing or any(picked[k].shape != wanted[k].shape for k in picked):
        raise ConfigError(path, f"does not hold VGG19 feature weights (missing or misshapen: {missing[:3] or 'shapes'})")
    features.load_state_dict(picked)


@register("vgg19_54")
class PerceptualLoss(nn.Module):
    """L1 between VGG19 conv5_4 features (before ReLU) of output and target, ImageNet-normalised.
    The VGG network is frozen; gray images are repeated to three channels."""

    def __init__(self, weights_path=None, criterion="l1"):
        super().__init__()
        self.features = vgg19_features()
        load_vgg19_weights(self.features, weights_path)
        self.features.requires_grad_(False).eval()
        self.criterion = F.l1_loss if criterion == "l1" else F.mse_loss
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode=True):  # the feature extractor always stays in eval mode
        return super().train(False)

    def _embed(self, x):
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        return self.features((x - self.mean) / self.std)

    def forward(self, output, target):
        with torch.no_grad():
            target_features = self._embed(target)
        return self.criterion(self._embed(output), target_features)


class AdversarialLoss(nn.Module):
    """Base for GAN losses. Computed in float32 outside autocast: BCE on probabilities is not
    autocast-safe, and the logits difference of the relativistic loss is small."""

    def _bce(self, pred, target_value):
        target = torch.full_like(pred, target_value)
        if self.logits:
            return F.binary_cross_entropy_with_logits(pred, target)
        return F.binary_cross_entropy(pred.clamp(1e-7, 1 - 1e-7), target)


@register("bce")
class BCEAdversarialLoss(AdversarialLoss):
    """Standard GAN loss (GIR, DE-GAN, CelebA). ``logits=False`` for discriminators that end in a
    sigmoid, as the seeds' do."""

    def __init__(self, logits=True):
        super().__init__()
        self.logits = logits

    def generator(self, real_pred, fake_pred):
        with torch.autocast(fake_pred.device.type, enabled=False):
            return self._bce(fake_pred.float(), 1.0)

    def discriminator(self, real_pred, fake_pred):
        with torch.autocast(fake_pred.device.type, enabled=False):
            return 0.5 * (self._bce(real_pred.float(), 1.0) + self._bce(fake_pred.float(), 0.0))


@register("relativistic")
class RelativisticAverageLoss(AdversarialLoss):
    """Relativistic average GAN (ESRGAN): D judges whether a real image is more realistic than the
    average fake, and the generator is trained on both terms, swapped."""

    logits = True

    def generator(self, real_pred, fake_pred):
        with torch.autocast(fake_pred.device.type, enabled=False):
            real_pred, fake_pred = real_pred.float(), fake_pred.float()
            return 0.5 * (self._bce(real_pred - fake_pred.mean(), 0.0) + self._bce(fake_pred - real_pred.mean(), 1.0))

    def discriminator(self, real_pred, fake_pred):
        with torch.autocast(fake_pred.device.type, enabled=False):
            real_pred, fake_pred = real_pred.float(), fake_pred.float()
            return 0.5 * (self._bce(real_pred - fake_pred.mean(), 1.0) + self._bce(fake_pred - real_pred.mean(), 0.0))


ADVERSARIAL = {"bce", "relativistic"}


def build_adversarial_loss(cfg):
    loss = build_loss(cfg)
    if loss.name not in ADVERSARIAL:
        raise ConfigError(f"loss.adversarial type {loss.name!r}", "not an adversarial loss", f"use one of {sorted(ADVERSARIAL)}")
    return loss
