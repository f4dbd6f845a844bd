"""Discriminators shared by several generators.

- ``patch``: PatchGAN (pix2pix): one real/fake probability per overlapping patch, for BCE.
- ``vgg-style``: ESRGAN's VGG-style classifier (conv 3x3 / conv 4x4 stride 2 pairs, BN,
  LeakyReLU 0.2, two dense layers), one logit per image. Seed 003's "6 convolution layers with
  LeakyReLU" is the same design with ``stages=3`` (six convs); the seed gives no more detail.
- ``unet-sn``: Real-ESRGAN's U-Net discriminator with spectral normalisation, one logit per
  pixel (for the relativistic average loss of seed 002).

Every discriminator says what it returns in ``output_kind`` ("probability" after a sigmoid,
"logit" before one) so the loss picks BCE or BCE-with-logits / relativistic losses.
"""
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from restore.runtime.errors import ConfigError

from .registry import register


def lrelu():
    return nn.LeakyReLU(0.2, inplace=True)


@register("patch")
class PatchDiscriminator(nn.Module):
    """num_layers stride-2 convs (the first without BN), one stride-1 conv, a 1-channel conv:
    the 70x70-receptive-field PatchGAN at the defaults. Inputs of at least 32x32."""

    def __init__(self, in_channels=3, width=64, num_layers=3):
        super().__init__()
        self.in_channels = in_channels
        self.fixed_size = None
        self.output_kind = "probability"
        layers = [nn.Conv2d(in_channels, width, 4, 2, 1), lrelu()]
        cin = width
        for i in range(1, num_layers + 1):
            cout = width * min(2**i, 8)
            stride = 2 if i < num_layers else 1
            layers += [nn.Conv2d(cin, cout, 4, stride, 1, bias=False), nn.BatchNorm2d(cout), lrelu()]
            cin = cout
        layers.append(nn.Conv2d(cin, 1, 4, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return torch.sigmoid(self.body(x))


def conv_bn_lrelu(cin, cout, kernel, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, 1, bias=False), nn.BatchNorm2d(cout), lrelu())


@register("vgg-style")
class VGGStyleDiscriminator(nn.Module):
    """ESRGAN's VGG-style discriminator: ``stages`` pairs of (3x3 conv, 4x4 stride-2 conv), widths
    width x 1, 2, 4, 8, 8; dense 100 + LeakyReLU; dense 1. The dense layer fixes the input size
    (``input_size``, 128 in ESRGAN)."""

    def __init__(self, in_channels=3, width=64, stages=5, input_size=128):
        super().__init__()
        if input_size % 2**stages:
            raise ConfigError(
                "vgg-style", f"input_size {input_size} is not a multiple of {2**stages}", "pick a multiple"
            )
        self.in_channels = in_channels
        self.fixed_size = input_size
        self.output_kind = "logit"
        widths = [width * min(2**s, 8) for s in range(stages)]
        layers = [nn.Conv2d(in_channels, width, 3, 1, 1), lrelu(), conv_bn_lrelu(width, width, 4, 2)]
        for cin, cout in zip(widths, widths[1:]):
            layers += [conv_bn_lrelu(cin, cout, 3, 1), conv_bn_lrelu(cout, cout, 4, 2)]
        self.features = nn.Sequential(*layers)
        side = input_size // 2**stages
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(widths[-1] * side * side, 100), lrelu(), nn.Linear(100, 1)
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def sn_conv(cin, cout, kernel, stride=1):
    return spectral_norm(nn.Conv2d(cin, cout, kernel, stride, 1, bias=False))


@register("unet-sn")
class UNetDiscriminatorSN(nn.Module):
    """Three spectral-normalised stride-2 convs down (width x 2, 4, 8), three bilinear x2 + conv
    up with additive skips, two more convs and a 1-channel conv: a realness logit per pixel.
    H and W must be multiples of 8."""

    def __init__(self, in_channels=3, width=64):
        super().__init__()
        w = width
        self.in_channels = in_channels
        self.size_multiple = 8
        self.fixed_size = None
        self.output_kind = "logit"
        self.conv_in = nn.Conv2d(in_channels, w, 3, 1, 1)
        self.down = nn.ModuleList([sn_conv(w, 2 * w, 4, 2), sn_conv(2 * w, 4 * w, 4, 2), sn_conv(4 * w, 8 * w, 4, 2)])
        self.up = nn.ModuleList([sn_conv(8 * w, 4 * w, 3), sn_conv(4 * w, 2 * w, 3), sn_conv(2 * w, w, 3)])
        self.refine = nn.Sequential(sn_conv(w, w, 3), lrelu(), sn_conv(w, w, 3), lrelu())
        self.conv_out = nn.Conv2d(w, 1, 3, 1, 1)

    def forward(self, x):
        skips = [F.leaky_relu(self.conv_in(x), 0.2)]
        for conv in self.down:
            skips.append(F.leaky_relu(conv(skips[-1]), 0.2))
        y = skips.pop()
        for conv in self.up:
            y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
            y = F.leaky_relu(conv(y), 0.2) + skips.pop()
        return self.conv_out(self.refine(y))
