"""Peer architectures a user would otherwise pick, written from their papers for speed comparison.

Importing this module registers them in the model zoo, so ``build_model("nafnet")`` (and the
exporter, which builds through the registry) treats them like our own generators:

- ``nafnet``: NAFNet (Chen et al., "Simple Baselines for Image Restoration", ECCV 2022). Width 32
  with the GoPro deblurring configuration: encoder blocks 1-1-1-28, one middle block, decoder
  blocks 1-1-1-1. A NAFBlock is LayerNorm2d -> 1x1 conv (x2 channels) -> 3x3 depthwise conv ->
  SimpleGate (split channels in half, multiply) -> simplified channel attention (global average
  pool, 1x1 conv, multiply) -> 1x1 conv, scaled by a learned beta and added; then a feed-forward
  half (LayerNorm2d -> 1x1 x2 -> SimpleGate -> 1x1) scaled by gamma and added. No nonlinear
  activation anywhere. Downsampling is a 2x2 stride-2 conv doubling channels, upsampling a 1x1 conv
  doubling channels followed by PixelShuffle(2); skips are added, and the output is added to the
  input image.
- ``mimo-unet``: MIMO-UNet (Cho et al., "Rethinking Coarse-to-Fine Approach in Single Image
  Deblurring", ICCV 2021), the base variant: 32-64-128 channels, 8 residual blocks per encoder
  and decoder block. Multi-input: shallow conv modules (SCM) embed the 1/2 and 1/4 downscaled
  image and feature attention modules (FAM) merge them into the encoder; asymmetric feature
  fusion (AFF) mixes all encoder scales into each decoder skip; multi-output: an image per scale.
  ``forward`` returns the full-resolution image (the one a user keeps); the side outputs are still
  computed, as in the network, and ``forward_all`` returns all three.
- ``deeprft``: DeepRFT-style (Mao et al., "Deep Residual Fourier Transformation for Single Image
  Deblurring"): the MIMO-UNet skeleton with each residual block replaced by a Res FFT-ReLU block,
  y = x + conv3x3(relu(conv3x3(x))) + irfft2(conv1x1(relu(conv1x1(rfft2(x))))), the 1x1 convs
  acting on real and imaginary parts stacked as channels. (The paper's DO-Conv reparameterisation
  folds into plain convs at inference, so it is left out.)

All take and return float NCHW RGB in [0, 1] (residual outputs), like every zoo generator.
"""
import torch
import torch.nn.functional as F
from torch import nn

from restore.trainer.models import register


def _zoo_attributes(model, size_multiple, channels=3):
    model.in_channels = model.out_channels = channels
    model.scale = 1
    model.size_multiple = size_multiple
    model.fixed_size = None


# ---------------------------------------------------------------- NAFNet


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of each pixel (NCHW), with per-channel scale and shift."""

    def __init__(self, channels, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def simple_gate(x):
    a, b = x.chunk(2, dim=1)
    return a * b


class NAFBlock(nn.Module):
    def __init__(self, channels, expand=2):
        super().__init__()
        hidden = channels * expand
        self.norm1 = LayerNorm2d(channels)
        self.expand = nn.Conv2d(channels, hidden, 1)
        self.depthwise = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(hidden // 2, hidden // 2, 1))
        self.project = nn.Conv2d(hidden // 2, channels, 1)
        self.norm2 = LayerNorm2d(channels)
        self.ffn_expand = nn.Conv2d(channels, hidden, 1)
        self.ffn_project = nn.Conv2d(hidden // 2, channels, 1)
        # Zero-initialised residual scales, as in the paper: each block starts as the identity.
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        y = simple_gate(self.depthwise(self.expand(self.norm1(x))))
        y = self.project(y * self.attention(y))
        x = x + y * self.beta
        y = self.ffn_project(simple_gate(self.ffn_expand(self.norm2(x))))
        return x + y * self.gamma


@register("nafnet")
class NAFNet(nn.Module):
    def __init__(self, in_channels=3, width=32, enc_blocks=(1, 1, 1, 28), middle_blocks=1, dec_blocks=(1, 1, 1, 1)):
        super().__init__()
        if len(enc_blocks) != len(dec_blocks):
            raise ValueError("enc_blocks and dec_blocks must have the same length")
        _zoo_attributes(self, 2 ** len(enc_blocks), in_channels)
        self.intro = nn.Conv2d(in_channels, width, 3, padding=1)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        c = width
        for n in enc_blocks:
            self.encoders.append(nn.Sequential(*[NAFBlock(c) for _ in range(n)]))
            self.downs.append(nn.Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.middle = nn.Sequential(*[NAFBlock(c) for _ in range(middle_blocks)])
        self.ups, self.decoders = nn.ModuleList(), nn.ModuleList()
        for n in dec_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(c) for _ in range(n)]))
        self.ending = nn.Conv2d(width, in_channels, 3, padding=1)

    def forward(self, image):
        x = self.intro(image)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle(x)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = decoder(up(x) + skip)
        return image + self.ending(x)


# ---------------------------------------------------------------- MIMO-UNet and DeepRFT-style


def conv(cin, cout, kernel, stride=1, relu=True, transpose=False):
    if transpose:  # kernel 4, stride 2, padding 1: exactly doubles H and W
        layer = nn.ConvTranspose2d(cin, cout, kernel, stride, padding=kernel // 2 - 1)
    else:
        layer = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2)
    return nn.Sequential(layer, nn.ReLU(inplace=True)) if relu else layer


class ResBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(conv(channels, channels, 3), conv(channels, channels, 3, relu=False))

    def forward(self, x):
        return x + self.body(x)


class ResFFTReLUBlock(nn.Module):
    """DeepRFT's block: a spatial residual branch plus a frequency branch (rfft2 -> 1x1 conv ->
    ReLU -> 1x1 conv on [real, imag] channels -> irfft2). The FFT runs in fp32: cuFFT's half
    precision handles only power-of-two sizes."""

    def __init__(self, channels):
        super().__init__()
        self.spatial = nn.Sequential(conv(channels, channels, 3), conv(channels, channels, 3, relu=False))
        self.frequency = nn.Sequential(conv(2 * channels, 2 * channels, 1), conv(2 * channels, 2 * channels, 1, relu=False))

    def forward(self, x):
        h, w = x.shape[-2:]
        spectrum = torch.fft.rfft2(x.float())
        mixed = self.frequency(torch.cat([spectrum.real, spectrum.imag], dim=1).to(x.dtype)).float()
        real, imag = mixed.chunk(2, dim=1)
        frequency = torch.fft.irfft2(torch.complex(real, imag), s=(h, w)).to(x.dtype)
        return x + self.spatial(x) + frequency


class ShallowConvModule(nn.Module):
    """SCM: embeds a downscaled input image into ``channels`` features (image kept as 3 of them)."""

    def __init__(self, channels, in_channels=3):
        super().__init__()
        self.body = nn.Sequential(
            conv(in_channels, channels // 4, 3),
            conv(channels // 4, channels // 2, 1),
            conv(channels // 2, channels // 2, 3),
            conv(channels // 2, channels - in_channels, 1),
        )
        self.merge = conv(channels, channels, 1, relu=False)

    def forward(self, image):
        return self.merge(torch.cat([image, self.body(image)], dim=1))


class FeatureAttention(nn.Module):
    """FAM: the SCM features gate the encoder features, refined by a 3x3 conv, added back."""

    def __init__(self, channels):
        super().__init__()
        self.refine = conv(channels, channels, 3, relu=False)

    def forward(self, encoder, shallow):
        return encoder + self.refine(encoder * shallow)


class AsymmetricFusion(nn.Module):
    """AFF: all encoder scales, resized to one scale and concatenated, fused to that scale's width."""

    def __init__(self, cin, cout):
        super().__init__()
        self.body = nn.Sequential(conv(cin, cout, 1), conv(cout, cout, 3, relu=False))

    def forward(self, *features):
        return self.body(torch.cat(features, dim=1))


def _resize(x, factor):
    return F.interpolate(x, scale_factor=factor, mode="nearest")


class MIMOUNet(nn.Module):
    def __init__(self, in_channels=3, width=32, blocks=8, block="res"):
        super().__init__()
        _zoo_attributes(self, 4, in_channels)
        block_cls = {"res": ResBlock, "fft-relu": ResFFTReLUBlock}[block]
        c1, c2, c3 = width, 2 * width, 4 * width

        def stage(c):
            return nn.Sequential(*[block_cls(c) for _ in range(blocks)])

        self.head = conv(in_channels, c1, 3)
        self.enc1, self.enc2, self.enc3 = stage(c1), stage(c2), stage(c3)
        self.down1, self.down2 = conv(c1, c2, 3, stride=2), conv(c2, c3, 3, stride=2)
        self.scm2, self.scm3 = ShallowConvModule(c2, in_channels), ShallowConvModule(c3, in_channels)
        self.fam2, self.fam3 = FeatureAttention(c2), FeatureAttention(c3)
        self.aff1 = AsymmetricFusion(c1 + c2 + c3, c1)
        self.aff2 = AsymmetricFusion(c1 + c2 + c3, c2)
        self.dec3, self.dec2, self.dec1 = stage(c3), stage(c2), stage(c1)
        self.up3, self.up2 = conv(c3, c2, 4, stride=2, transpose=True), conv(c2, c1, 4, stride=2, transpose=True)
        self.merge2, self.merge1 = conv(2 * c2, c2, 1), conv(2 * c1, c1, 1)
        self.out3, self.out2 = conv(c3, in_channels, 3, relu=False), conv(c2, in_channels, 3, relu=False)
        self.out1 = conv(c1, in_channels, 3, relu=False)

    def forward_all(self, image):
        """The three outputs, coarse to fine: 1/4, 1/2 and full resolution."""
        image2 = _resize(image, 0.5)
        image4 = _resize(image2, 0.5)
        e1 = self.enc1(self.head(image))
        e2 = self.enc2(self.fam2(self.down1(e1), self.scm2(image2)))
        e3 = self.enc3(self.fam3(self.down2(e2), self.scm3(image4)))
        skip1 = self.aff1(e1, _resize(e2, 2), _resize(e3, 4))
        skip2 = self.aff2(_resize(e1, 0.5), e2, _resize(e3, 2))
        d3 = self.dec3(e3)
        out4 = image4 + self.out3(d3)
        d2 = self.dec2(self.merge2(torch.cat([self.up3(d3), skip2], dim=1)))
        out2 = image2 + self.out2(d2)
        d1 = self.dec1(self.merge1(torch.cat([self.up2(d2), skip1], dim=1)))
        return [out4, out2, image + self.out1(d1)]

    def forward(self, image):
        return self.forward_all(image)[-1]


@register("mimo-unet")
def mimo_unet(in_channels=3, width=32, blocks=8):
    return MIMOUNet(in_channels, width, blocks, block="res")


@register("deeprft")
def deeprft(in_channels=3, width=32, blocks=8):
    return MIMOUNet(in_channels, width, blocks, block="fft-relu")
