"""``degan`` and ``degan-discriminator``: DE-GAN document enhancement (seed 000, after Souibgui &
Kessentini, arXiv 2010.08764).

Seed 000 describes the generator only in words: an encoder-decoder of convolutions and
transposed convolutions, with skip connections that copy and concatenate encoder maps into the
decoder, and batch normalisation; grayscale documents in and out. It gives no widths, so the
levels follow the U-Net that DE-GAN builds on: two 3x3 convs per level, 2x2 max-pool down,
widths 64-128-256-512-1024, dropout 0.5 on the two deepest levels (as DE-GAN's own generator),
2x2 stride-2 transposed convs up, a 1x1 conv and sigmoid out. DE-GAN's released code caps the
bottleneck at 512 (``widths=(64, 128, 256, 256, 512)`` comes close to it).

The discriminator is conditional, as the seed says ("two inputs"): it sees the degraded image
and a clean or generated one, concatenated on channels, and answers per patch (DE-GAN's:
4x4 stride-2 Conv-LeakyReLU(0.2)-BN layers 64-128-256-256, the first without BN, then a 4x4
conv to one sigmoid channel; 256x256 in, 16x16 patches out).
"""
import torch
from torch import nn

from .fourier_unet import conv_bn_relu
from .registry import register


def double_conv(cin, cout, dropout=0.0):
    layers = [conv_bn_relu(cin, cout), conv_bn_relu(cout, cout)]
    if dropout:
        layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)


@register("degan")
class DEGANGenerator(nn.Module):
    """widths: channels per level, the last one being the bottleneck; dropout on the deepest two."""

    def __init__(self, in_channels=1, widths=(64, 128, 256, 512, 1024), dropout=0.5):
        super().__init__()
        widths = list(widths)
        self.in_channels = self.out_channels = in_channels
        self.scale = 1
        self.size_multiple = 2 ** (len(widths) - 1)
        self.fixed_size = None
        deep = len(widths) - 2  # index of the first level that gets dropout
        self.encoder = nn.ModuleList(
            double_conv(cin, cout, dropout if i >= deep else 0.0)
            for i, (cin, cout) in enumerate(zip([in_channels] + widths[:-1], widths))
        )
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(nn.ConvTranspose2d(b, a, 2, 2) for a, b in zip(widths, widths[1:]))
        self.decoder = nn.ModuleList(double_conv(2 * a, a) for a in widths[:-1])
        self.head = nn.Conv2d(widths[0], in_channels, 1)

    def forward(self, x):
        skips = []
        y = x
        for i, block in enumerate(self.encoder):
            y = block(self.pool(y) if i else y)
            skips.append(y)
        skips.pop()
        for up, block in zip(reversed(self.up), reversed(self.decoder)):
            y = block(torch.cat([skips.pop(), up(y)], dim=1))
        return torch.sigmoid(self.head(y))


class SamePad4x4(nn.ZeroPad2d):
    """TensorFlow's 'same' padding for a 4x4 kernel at stride 1 (one before, two after)."""

    def __init__(self):
        super().__init__((1, 2, 1, 2))


@register("degan-discriminator")
class DEGANDiscriminator(nn.Module):
    """``forward(candidate, degraded)``: probability per patch that ``candidate`` is the clean
    image of ``degraded``. ``in_channels`` is the channel count of one image."""

    def __init__(self, in_channels=1, widths=(64, 128, 256, 256)):
        super().__init__()
        self.in_channels = in_channels
        self.conditional = True
        self.output_kind = "probability"
        self.fixed_size = None
        layers, cin = [], 2 * in_channels
        for i, cout in enumerate(widths):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            if i:
                layers.append(nn.BatchNorm2d(cout, momentum=0.2))  # Keras momentum 0.8
            cin = cout
        layers += [SamePad4x4(), nn.Conv2d(cin, 1, 4, 1, 0)]
        self.body = nn.Sequential(*layers)
        self.size_multiple = 2 ** len(widths)

    def forward(self, candidate, degraded):
        return torch.sigmoid(self.body(torch.cat([candidate, degraded], dim=1)))
