"""The Fourier bottleneck module: 1x1 conv -> spectral filter (rfft2, learned per-channel
response, irfft2) -> 1x1 conv, added back to its input. The 1x1 convs are ordinary layers so
TensorRT runs them on tensor cores; only the spectral op becomes a plugin node."""
import torch
from torch import nn

from restore.kernels.fourier_bottleneck.torch_op import fourier_bottleneck


class SpectralFilter(nn.Module):
    """The op alone (the part the exporter replaces by one ``FourierBottleneck`` node)."""

    def __init__(self, channels, grid=8, mode="spectral"):
        super().__init__()
        self.mode = mode
        self.grid = grid
        if mode == "spectral":
            # Start as the identity filter (real part 1) plus a little noise, so the block starts
            # as a plain residual 1x1 path and learns its frequency response from there.
            weight = torch.zeros(channels, grid, grid, 2)
            weight[..., 0] = 1.0
            self.weight = nn.Parameter(weight + 0.01 * torch.randn_like(weight))
        else:
            self.register_parameter("weight", None)

    def forward(self, x):
        return fourier_bottleneck(x, self.weight, self.mode)


class FourierBottleneck(nn.Module):
    """``zero_init``: the last 1x1 conv starts at zero, so the block starts as the identity (a block
    added to a trained model leaves its function unchanged until training moves it)."""

    def __init__(self, channels, grid=8, mode="spectral", zero_init=False):
        super().__init__()
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.spectral = SpectralFilter(channels, grid, mode)
        self.proj_out = nn.Conv2d(channels, channels, 1)
        if zero_init:
            nn.init.zeros_(self.proj_out.weight)
            nn.init.zeros_(self.proj_out.bias)

    def forward(self, x):
        return x + self.proj_out(torch.relu(self.spectral(self.proj_in(x))))
