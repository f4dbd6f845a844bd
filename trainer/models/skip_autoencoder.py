"""``skip-autoencoder`` and ``skip-autoencoder-discriminator``: the CelebA deblurring GAN of
"Research of Image Deblurring Based on the Deep Neural Network" as tabulated in seed 001.

Every conv is unpadded, so sizes follow the table exactly and the model only takes 64x64:
encoder 64 -> 62 -> 30 -> 28 -> 13 -> 11, decoder 11 -> 13 -> 28 -> 30 -> 61 -> 62 -> 64.
The table lists no activations for the generator: ReLU follows every layer but the last, which
ends in a sigmoid so the output lies in [0, 1] like every generator here (the seed normalised
with ImageNet statistics and left the range open). The ``width`` argument scales every hidden
width (64 = the table) for quick tests.
"""
import torch
from torch import nn

from .registry import register


def relu_after(layer):
    return nn.Sequential(layer, nn.ReLU(inplace=True))


@register("skip-autoencoder")
class SkipAutoencoder(nn.Module):
    def __init__(self, in_channels=3, width=64):
        super().__init__()
        w = width
        self.in_channels = self.out_channels = in_channels
        self.scale = 1
        self.size_multiple = 1
        self.fixed_size = 64
        conv, deconv = nn.Conv2d, nn.ConvTranspose2d
        self.e1 = relu_after(conv(in_channels, w, 3, 1))  # 62
        self.e2 = relu_after(conv(w, 2 * w, 3, 2))  # 30
        self.e3 = relu_after(conv(2 * w, 4 * w, 3, 1))  # 28
        self.e4 = relu_after(conv(4 * w, 8 * w, 3, 2))  # 13
        self.e5 = relu_after(conv(8 * w, 8 * w, 3, 1))  # 11
        self.d1 = relu_after(deconv(8 * w, 2 * w, 3, 1))  # 13, then + e4
        self.d2 = relu_after(deconv(10 * w, 2 * w, 4, 2))  # 28, then + e3
        self.d3 = relu_after(deconv(6 * w, w, 3, 1))  # 30, then + e2
        self.d4 = relu_after(deconv(3 * w, w // 2, 3, 2))  # 61
        self.d5 = relu_after(deconv(w // 2, w // 4, 2, 1))  # 62, then + e1
        self.d6 = deconv(w // 4 + w, in_channels, 3, 1)  # 64

    def forward(self, x):
        e1 = self.e1(x)
        e2 = self.e2(e1)
        e3 = self.e3(e2)
        e4 = self.e4(e3)
        y = self.d1(self.e5(e4))
        y = self.d2(torch.cat([y, e4], dim=1))
        y = self.d3(torch.cat([y, e3], dim=1))
        y = self.d5(self.d4(torch.cat([y, e2], dim=1)))
        return torch.sigmoid(self.d6(torch.cat([y, e1], dim=1)))


@register("skip-autoencoder-discriminator")
class SkipAutoencoderDiscriminator(nn.Module):
    """Conv-ReLU-BN x3 then Conv-ReLU (the table puts BN after the first three convs only; its
    prose says "after every conv": the table wins), flatten 512 x 13 x 13, Linear, sigmoid."""

    def __init__(self, in_channels=3, width=64):
        super().__init__()
        w = width
        self.in_channels = in_channels
        self.fixed_size = 64
        self.output_kind = "probability"
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, 1), nn.ReLU(inplace=True), nn.BatchNorm2d(w),
            nn.Conv2d(w, 2 * w, 3, 2), nn.ReLU(inplace=True), nn.BatchNorm2d(2 * w),
            nn.Conv2d(2 * w, 4 * w, 3, 1), nn.ReLU(inplace=True), nn.BatchNorm2d(4 * w),
            nn.Conv2d(4 * w, 8 * w, 3, 2), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(8 * w * 13 * 13, 1))

    def forward(self, x):
        return torch.sigmoid(self.classifier(self.features(x)))
