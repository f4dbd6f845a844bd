"""``rrdbnet``: the ESRGAN generator (Residual-in-Residual Dense Blocks), seeds 002 and 003.

scale 4 (seed 002, ESRGAN x4 super-resolution): conv -> 23 RRDB -> conv, added to the first
conv's output -> two (nearest x2 upsampling, conv, LeakyReLU) -> conv, LeakyReLU -> conv.

scale 1 (seed 003, JPEG artifact removal): "double Residual in Residual Dense Block (RRDB)
followed [by] convolution layers" is read as the same trunk with two RRDBs (the default
``num_block`` at scale 1) and the two output convs, without the upsampling stages. Like
ESRGAN, neither variant clamps its output; the runtime clips to [0, 1].
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

from restore.runtime.errors import ConfigError

from .registry import register

# Residual scaling of ESRGAN: each dense block and each RRDB adds 0.2 x its residual, which keeps
# a deep trunk without BatchNorm stable at initialisation.
RESIDUAL_SCALE = 0.2
DEFAULT_BLOCKS = {4: 23, 1: 2}


def lrelu():
    return nn.LeakyReLU(0.2, inplace=True)


class DenseBlock(nn.Module):
    """Five 3x3 convs, each seeing the block input and every earlier conv's output."""

    def __init__(self, num_feat, num_grow):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(num_feat + i * num_grow, num_grow, 3, 1, 1) for i in range(4))
        self.fuse = nn.Conv2d(num_feat + 4 * num_grow, num_feat, 3, 1, 1)
        self.act = lrelu()
        # ESRGAN scales Kaiming-normal init by 0.1 so the trunk starts near the identity.
        for conv in [*self.convs, self.fuse]:
            fan_in = conv.weight[0].numel()
            nn.init.normal_(conv.weight, std=0.1 * math.sqrt(2.0 / fan_in))
            nn.init.zeros_(conv.bias)

    def forward(self, x):
        feats = [x]
        for conv in self.convs:
            feats.append(self.act(conv(torch.cat(feats, dim=1))))
        return x + RESIDUAL_SCALE * self.fuse(torch.cat(feats, dim=1))


class RRDB(nn.Module):
    def __init__(self, num_feat, num_grow):
        super().__init__()
        self.blocks = nn.Sequential(*[DenseBlock(num_feat, num_grow) for _ in range(3)])

    def forward(self, x):
        return x + RESIDUAL_SCALE * self.blocks(x)


@register("rrdbnet")
class RRDBNet(nn.Module):
    """num_feat: trunk width (64); num_block: RRDBs (23 at x4, 2 at x1); num_grow: dense growth (32)."""

    def __init__(self, in_channels=3, scale=4, num_feat=64, num_block=None, num_grow=32):
        super().__init__()
        if scale not in DEFAULT_BLOCKS:
            raise ConfigError("rrdbnet", f"scale {scale} is not supported", "use scale 4 (x4 SR) or 1 (JPEG artifacts)")
        num_block = DEFAULT_BLOCKS[scale] if num_block is None else num_block
        self.in_channels = self.out_channels = in_channels
        self.scale = scale
        self.size_multiple = 1
        self.fixed_size = None
        self.conv_first = nn.Conv2d(in_channels, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.upsample = nn.ModuleList(nn.Conv2d(num_feat, num_feat, 3, 1, 1) for _ in range(scale.bit_length() - 1))
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, in_channels, 3, 1, 1)
        self.act = lrelu()

    def forward(self, x):
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for conv in self.upsample:
            feat = self.act(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.act(self.conv_hr(feat)))
