"""``gir`` and ``gir-discriminator``: the hybrid Fourier-CNN U-Net of the GIR report (seed 004).

The report's layer list ("The Structure of Each Layer") is followed exactly where it is explicit.
Where it is not, these readings were taken (closest to its prose):

- Downsampling: the generator's convs list no strides (only the discriminator's do) and the
  decoder names ``UpSampling2D``, so each encoder block is preceded by a 2x2 max-pool, the
  Keras U-Net pairing with ``UpSampling2D``. Two encoder blocks, two upsamplings: H/4 at the
  bottleneck, so H and W must be multiples of 4.
- Bottleneck: "the magnitude tensor is concatenated with the decoder pathway's feature maps" and
  the decoder "upsample[s] the combined feature maps from the magnitude and the encoder": the
  encoder output z and abs(ifft2(fft2(z))) are concatenated (2 x 256 channels) and fed to the
  first upsampling. Note abs(ifft2(fft2(z))) equals abs(z) up to rounding, and z comes out of a
  ReLU, so the magnitude is a copy of z: reproduced as written (DESIGN.md: the flagship
  ``fourier-unet`` is where the bottleneck does real frequency-domain work).
- Skip connections ("Concatenate layers ... encoder with the corresponding up-sampled decoder
  maps"): each decoder block sees [upsampled maps, encoder maps of the same resolution]; the
  report's "256 -> 128" / "128 -> 64" are read as the level transitions, the block's output
  widths being 128 and 64.
- Biases of convs followed by BatchNorm are dropped (BN's shift cancels them).
"""
import torch
from torch import nn

from .fourier import SpectralFilter
from .fourier_unet import conv_bn_relu
from .registry import register


def double_conv(cin, cout):
    return nn.Sequential(conv_bn_relu(cin, cout), conv_bn_relu(cout, cout))


@register("gir")
class GIRGenerator(nn.Module):
    """widths: input-conv width, then one width per encoder block (the report: 64, 128, 256)."""

    def __init__(self, in_channels=3, widths=(64, 128, 256)):
        super().__init__()
        widths = list(widths)
        self.in_channels = self.out_channels = in_channels
        self.scale = 1
        self.size_multiple = 2 ** (len(widths) - 1)
        self.fixed_size = None
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1), nn.ReLU(inplace=True))
        self.pool = nn.MaxPool2d(2)
        self.encoder = nn.ModuleList(double_conv(a, b) for a, b in zip(widths, widths[1:]))
        # Exported as one FourierBottleneck plugin node (mode "gir"); the weight is unused.
        self.spectral = SpectralFilter(widths[-1], mode="gir")
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        # Decoder inputs: [bottleneck z, |ifft2(fft2 z)|] then [previous decoder level], each
        # concatenated with the encoder maps at the same resolution.
        dec_in = [2 * widths[-1]] + widths[-2:0:-1]
        self.decoder = nn.ModuleList(
            double_conv(cin + skip, skip) for cin, skip in zip(dec_in, reversed(widths[:-1]))
        )
        self.head = nn.Conv2d(widths[0], in_channels, 1)

    def forward(self, x):
        skips = [self.stem(x)]
        for block in self.encoder:
            skips.append(block(self.pool(skips[-1])))
        z = skips.pop()
        y = torch.cat([z, self.spectral(z)], dim=1)
        for block in self.decoder:
            y = block(torch.cat([self.up(y), skips.pop()], dim=1))
        return torch.sigmoid(self.head(y))


@register("gir-discriminator")
class GIRDiscriminator(nn.Module):
    """Input conv 16 (stride 2, LeakyReLU 0.2), four stride-2 Conv-BN-LeakyReLU blocks to 256,
    flatten, dense 16 + ReLU, dense 1 + sigmoid. The dense layer fixes the input size
    (``input_size``, 256 in the report: 256 x 8 x 8 features)."""

    def __init__(self, in_channels=3, widths=(16, 32, 64, 128, 256), dense=16, input_size=256):
        super().__init__()
        self.in_channels = in_channels
        self.fixed_size = input_size
        self.output_kind = "probability"
        layers = [nn.Conv2d(in_channels, widths[0], 3, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for a, b in zip(widths, widths[1:]):
            layers += [nn.Conv2d(a, b, 3, 2, 1), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, inplace=True)]
        self.features = nn.Sequential(*layers)
        side = input_size
        for _ in widths:
            side = (side + 1) // 2  # 'same' padding, stride 2
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(widths[-1] * side * side, dense), nn.ReLU(inplace=True), nn.Linear(dense, 1)
        )

    def forward(self, x):
        return torch.sigmoid(self.classifier(self.features(x)))
