"""``fourier-unet``: the flagship deblurring generator.

A U-Net (Conv-BN-ReLU blocks, or Conv-ReLU with ``norm="none"``; stride-2 downsampling,
transposed-conv upsampling, skip concatenation) with a Fourier bottleneck at its deepest level,
and a residual output:
sharp = blurred + G(blurred). Blur is a product in the frequency domain, so the bottleneck's
per-channel spectral response gives every output pixel a global receptive field at little cost.
"""
import torch
import torch.nn.functional as F
from torch import nn

from restore.runtime.errors import ConfigError

from .deconv import SHARP, DeconvFrontEnd, grow_classifier
from .fourier import FourierBottleneck
from .registry import register

# The large preset (12.8 M parameters vs 2.3 M at the defaults): build_model(FOURIER_UNET_LARGE).
FOURIER_UNET_LARGE = {"type": "fourier-unet", "widths": (64, 128, 256, 512), "blocks": 3}


def conv_bn_relu(cin, cout, stride=1, norm="batch"):
    """3x3 conv, BatchNorm (``norm="batch"``) or none (``norm="none"``: the conv keeps its bias), ReLU."""
    if norm not in ("batch", "none"):
        raise ConfigError("norm", f"unknown normalisation {norm!r}", "use 'batch' or 'none'")
    if norm == "none":
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.ReLU(inplace=True))
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class Level(nn.Module):
    def __init__(self, cin, cout, blocks, norm="batch"):
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(cin, cout, norm=norm),
                                  *[conv_bn_relu(cout, cout, norm=norm) for _ in range(blocks - 1)])

    def forward(self, x):
        return self.body(x)


class DetailGate(nn.Module):
    """How much a pixel may change, from 0 to 1: the local detail of the grey input (the RMS, over a
    ``window`` px box, of its difference from its box mean: about its standard deviation, without
    the cancellation of E[x^2] - E[x]^2), mapped linearly from 0 at ``low`` to 1 at ``high``
    (levels of 1/255).

    A blur keeps a flat region flat, so where the input has no detail there is nothing to undo and
    the output is the input exactly: a grey card, a clipped sky or a fade to black round-trips
    within a level instead of taking the residual's small bias. Noise of the training level
    (sigma 0.01, 2.6 levels) and every blurred edge pass at 1. Fixed, not learned."""

    keep_fp32 = True  # a level is 0.004: fp16's squares of it lose the threshold's precision

    def __init__(self, low=1.0, high=2.0, window=15):
        super().__init__()
        self.low, self.high, self.window = low / 255, high / 255, window

    def forward(self, x):
        if torch.amp.is_autocast_available(x.device.type) and torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return self(x.float()).to(x.dtype)
        g = x.mean(1, keepdim=True)
        detail = self.box_mean((g - self.box_mean(g)) ** 2).sqrt()
        return ((detail - self.low) / (self.high - self.low)).clamp(0, 1)

    def box_mean(self, g):
        """The mean over a ``window`` px box clipped to the picture, as a column pass then a row pass:
        the same mean (a clipped box's pixel count is its rows times its columns) for 2/``window``
        of the work, which an engine's 2-D pooling kernel does not save on its own."""
        for kernel in ((self.window, 1), (1, self.window)):
            g = F.avg_pool2d(g, kernel, stride=1, padding=(kernel[0] // 2, kernel[1] // 2), count_include_pad=False)
        return g


@register("fourier-unet")
class FourierUNet(nn.Module):
    """Default: about 2.3 M parameters. The large preset is ``FOURIER_UNET_LARGE``.

    widths: channels per level (the last is the bottleneck level); blocks: convs per level;
    fourier: Fourier bottleneck blocks at the bottleneck; grid: spectral control-grid size;
    norm: "batch" or "none"; level_fourier: Fourier blocks (grid ``level_grid``, default ``grid``)
    at the end of every encoder level above the bottleneck too, where they act as large per-channel
    filters at that level's resolution (what undoing a long motion blur needs); they start as the
    identity, so they can be added to a trained model (``train.init``). Without BatchNorm nothing
    makes a layer's scale free, so weight decay keeps activations in fp16's range (with BatchNorm
    and plain Adam they drifted to 1e4-1e5). deconv: a blind deconvolution front end
    (``deconv.DeconvFrontEnd``: kernel estimate + Wiener filter at two strengths) whose estimates
    join the stem's features and the output through zero-initialised paths, so it too can be added
    to a trained model. bank: the front end's kernel bank (``deconv.kernel_bank``); bank 2 ends
    in the identity, and the model backs off by its probability: the whole correction is scaled by
    the blur confidence c = 1 - P(no blur), mapped linearly from 0 at ``backoff[0]`` to 1 at
    ``backoff[1]`` (default (0, 1): c itself), so a picture the estimator finds sharp comes back as
    it was. The mapping has no weights: ``trainer/calibrate.py`` sets it for a trained model from
    training pictures. backoff_dropout: in training only, the fraction of pictures whose correction
    is applied at full strength whatever the confidence, so the correction itself learns to leave
    a picture the estimator misjudges alone (a wider calibrated mapping can then trust it). A
    bank-1 model grows into bank 2 (``grow_state_dict``). detail_gate: the
    output stays the input where the input has no detail (``DetailGate``); it has no weights, so it
    can be switched on for a trained model.

    ``forward(x, posterior)``: ``posterior`` (1 or B, N), from ``estimate``, replaces each image's
    own kernel estimate, so the tiles of one picture share the estimate of the whole; ``kernel``
    (1 or B, k, k), a kernel of any shape, replaces the posterior's mean in the Wiener step
    (``DeconvFrontEnd``)."""

    def __init__(self, in_channels=3, widths=(32, 64, 128, 256), blocks=2, fourier=2, grid=8, mode="spectral",
                 norm="batch", level_fourier=0, level_grid=None, deconv=False, detail_gate=False, bank=1, backoff=(0.0, 1.0),
                 backoff_dropout=0.0):
        super().__init__()
        widths = list(widths)
        self.in_channels = self.out_channels = in_channels
        self.scale = 1
        self.size_multiple = 2 ** (len(widths) - 1)
        self.fixed_size = None
        self.stem = Level(in_channels, widths[0], blocks, norm)
        self.down = nn.ModuleList(conv_bn_relu(a, b, 2, norm) for a, b in zip(widths, widths[1:]))
        self.enc = nn.ModuleList(Level(b, b, blocks - 1 or 1, norm) for b in widths[1:])
        self.level_fourier = nn.ModuleList(
            nn.Sequential(*[FourierBottleneck(w, level_grid or grid, mode, zero_init=True)
                            for _ in range(level_fourier)])
            for w in widths[:-1])
        self.bottleneck = nn.Sequential(*[FourierBottleneck(widths[-1], grid, mode) for _ in range(fourier)])
        self.up = nn.ModuleList(nn.ConvTranspose2d(b, a, 2, 2) for a, b in zip(widths, widths[1:]))
        self.dec = nn.ModuleList(Level(2 * a, a, blocks, norm) for a in widths[:-1])
        self.head = nn.Conv2d(widths[0], in_channels, 3, 1, 1)
        self.deconv = DeconvFrontEnd(bank=bank) if deconv else None
        low, high = (float(v) for v in backoff)
        if not 0 <= low < high <= 1:
            raise ConfigError("model.backoff", f"expected [low, high] with 0 <= low < high <= 1, got {list(backoff)}")
        self.backoff = (low, high) if deconv and bank == 2 else None
        if not 0 <= backoff_dropout <= 1:
            raise ConfigError("model.backoff_dropout", f"expected a fraction in [0, 1], got {backoff_dropout}")
        self.backoff_dropout = float(backoff_dropout)
        if deconv:
            n = len(self.deconv.log_lams)
            self.deconv_in = nn.Conv2d(n * in_channels, widths[0], 3, 1, 1)
            nn.init.zeros_(self.deconv_in.weight)
            nn.init.zeros_(self.deconv_in.bias)
            self.deconv_gate = nn.Parameter(torch.zeros(n, 1, 1, 1))  # out += gate_i * (estimate_i - x)
        self.detail_gate = DetailGate() if detail_gate else None

    def estimate(self, tiles):
        """One posterior (1, N) for the picture ``tiles`` (T, C, h, w) come from: the estimator's
        CNN on their pooled spectrum."""
        return getattr(self.deconv, "inner", self.deconv).estimate(tiles)  # also inside an fp16 copy's fp32 island

    def grow_state_dict(self, state_dict):
        """A checkpoint's weights made to fit this model: a bank-1 estimator grows into bank 2."""
        if self.deconv is not None and self.deconv.estimator.bank != 1:
            grow_classifier(state_dict, "deconv.estimator.", self.deconv.estimator.bank)
        return state_dict

    def forward(self, x, posterior=None, kernel=None):
        skips = [self.stem(x)]
        if self.deconv is not None:
            estimates, posterior = self.deconv(x, posterior, kernel)
            skips[0] = skips[0] + self.deconv_in(estimates)
        for down, enc, spectral in zip(self.down, self.enc, self.level_fourier):
            skips[-1] = spectral(skips[-1])
            skips.append(enc(down(skips[-1])))
        y = self.bottleneck(skips.pop())
        for up, dec in zip(reversed(self.up), reversed(self.dec)):
            y = dec(torch.cat([up(y), skips.pop()], dim=1))
        out = x + self.head(y)
        if self.deconv is not None:
            estimates = estimates.view(x.shape[0], -1, *x.shape[1:])  # (B, strengths, C, H, W)
            out = out + (self.deconv_gate * (estimates - x[:, None])).sum(1)
        if self.backoff is not None:
            low, high = self.backoff
            scale = ((1 - posterior[:, SHARP] - low) / (high - low)).clamp(0, 1)
            if self.training and self.backoff_dropout:
                full = torch.rand(x.shape[0], device=scale.device) < self.backoff_dropout  # drawn per picture
                scale = torch.where(full, torch.ones_like(full, dtype=scale.dtype), scale)
            out = x + scale.to(x.dtype)[:, None, None, None] * (out - x)
        if self.detail_gate is not None:
            out = x + self.detail_gate(x) * (out - x)
        return out
