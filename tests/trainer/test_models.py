"""The model zoo: every architecture builds by name and from a config, runs forward and backward
at tiny sizes with the right output shape, and matches its README row."""
import re
from pathlib import Path

import pytest
import torch
from torch.nn.utils import parametrize

from restore.runtime.errors import ConfigError
from restore.trainer.models import FOURIER_UNET_LARGE, MODELS, build_model, count_parameters, list_models

README = Path(__file__).resolve().parents[2] / "trainer" / "models" / "README.md"

# name -> (tiny config, input shape (C, H, W), output shape per sample, output kind)
# output kind: "unit" = sigmoid output in (0, 1); "free" = unbounded.
TINY = {
    "fourier-unet": ({"widths": (8, 16, 32), "blocks": 1, "fourier": 1}, (3, 16, 16), (3, 16, 16), "free"),
    "gir": ({"widths": (8, 16, 32)}, (3, 16, 16), (3, 16, 16), "unit"),
    "gir-discriminator": ({"widths": (4, 8, 8, 8, 8), "dense": 4, "input_size": 32}, (3, 32, 32), (1,), "unit"),
    "degan": ({"widths": (8, 16, 32)}, (1, 16, 16), (1, 16, 16), "unit"),
    "degan-discriminator": ({"widths": (8, 16, 16, 16)}, (1, 32, 32), (1, 2, 2), "unit"),
    "skip-autoencoder": ({"width": 8}, (3, 64, 64), (3, 64, 64), "unit"),
    "skip-autoencoder-discriminator": ({"width": 8}, (3, 64, 64), (1,), "unit"),
    "rrdbnet": ({"scale": 4, "num_feat": 8, "num_block": 1, "num_grow": 4}, (3, 8, 8), (3, 32, 32), "free"),
    "patch": ({"width": 8}, (3, 32, 32), (1, 2, 2), "unit"),
    "vgg-style": ({"width": 8, "stages": 3, "input_size": 32}, (3, 32, 32), (1,), "free"),
    "unet-sn": ({"width": 8}, (3, 16, 16), (1, 16, 16), "free"),
}
CASES = dict(TINY)
CASES["rrdbnet-x1"] = ({"scale": 1, "num_feat": 8, "num_grow": 4}, (3, 12, 12), (3, 12, 12), "free")
ARCH = {"rrdbnet-x1": "rrdbnet"}


def readme_params():
    """{row label: parameter count} from the README table."""
    rows = {}
    for line in README.read_text().splitlines():
        m = re.match(r"\| `([\w-]+)`( with `scale=1`)? \|[^|]*\| ([\d,]+) \|", line)
        if m:
            rows[m.group(1) + ("-x1" if m.group(2) else "")] = int(m.group(3).replace(",", ""))
    return rows


def run(model, x):
    if getattr(model, "conditional", False):
        return model(x, torch.rand_like(x))
    return model(x)


def test_every_registered_model_has_a_tiny_case_and_a_readme_row():
    # Peers registered from elsewhere (benchmarks) are tested there; the zoo's own must all be here.
    zoo = {n for n in list_models() if MODELS[n].__module__.startswith("restore.trainer.models")}
    assert zoo == set(TINY)
    assert set(readme_params()) == set(TINY) | {"rrdbnet-x1"}


@pytest.mark.parametrize("label", sorted(readme_params()))
def test_default_build_by_name_matches_readme_params(label):
    model = build_model(ARCH.get(label, label), **({"scale": 1} if label == "rrdbnet-x1" else {}))
    assert count_parameters(model) == readme_params()[label]


@pytest.mark.parametrize("name", sorted(TINY))
def test_builds_from_config_dict_with_contract_attributes(name):
    cfg = TINY[name][0]
    model = build_model({"type": name, **cfg})
    assert model.arch == name and model.config == cfg
    assert count_parameters(model) > 0
    if name.endswith("discriminator") or name in ("patch", "vgg-style", "unet-sn"):
        assert model.output_kind in ("probability", "logit")
        assert model.in_channels == TINY[name][1][0]
    else:
        for attr in ("in_channels", "out_channels", "scale", "size_multiple", "fixed_size"):
            assert hasattr(model, attr), attr
        assert model.in_channels == TINY[name][1][0]


@pytest.mark.parametrize("label", sorted(CASES))
def test_forward_shape_range_and_backward(label):
    cfg, in_shape, out_shape, kind = CASES[label]
    torch.manual_seed(0)
    model = build_model(ARCH.get(label, label), **cfg)
    x = torch.rand(2, *in_shape)
    y = run(model, x)
    assert y.shape == (2, *out_shape)
    assert torch.isfinite(y).all()
    if kind == "unit":
        assert ((y > 0) & (y < 1)).all()
    if getattr(model, "scale", None) is not None:
        assert y.shape[-1] == in_shape[-1] * model.scale
    y.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"


def test_gir_forward_matches_a_torch_fft_reference():
    """Recompute gir's forward from its layers with the bottleneck written out in torch.fft."""
    torch.manual_seed(1)
    model = build_model("gir", widths=(8, 16, 32)).eval()
    x = torch.rand(1, 3, 16, 16)
    s0 = model.stem(x)
    s1 = model.encoder[0](torch.max_pool2d(s0, 2))
    z = model.encoder[1](torch.max_pool2d(s1, 2))
    assert z.shape == (1, 32, 4, 4)
    magnitude = torch.fft.ifft2(torch.fft.fft2(z.to(torch.complex64))).abs()
    y = torch.cat([z, magnitude], dim=1)
    y = model.decoder[0](torch.cat([torch.repeat_interleave(torch.repeat_interleave(y, 2, 2), 2, 3), s1], 1))
    y = model.decoder[1](torch.cat([torch.repeat_interleave(torch.repeat_interleave(y, 2, 2), 2, 3), s0], 1))
    expected = torch.sigmoid(model.head(y))
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=1e-6, rtol=1e-5)
        # fft2 -> ifft2 -> abs of a ReLU output is that output again (the report's bottleneck).
        torch.testing.assert_close(model.spectral(z), z, atol=1e-5, rtol=1e-5)
    assert model.spectral.mode == "gir" and model.spectral.weight is None


def test_gir_discriminator_follows_the_report_at_256():
    model = build_model("gir-discriminator")
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 128, 256]
    assert all(c.stride == (2, 2) for c in convs)
    assert model.classifier[1].in_features == 256 * 8 * 8 and model.classifier[1].out_features == 16


def test_skip_autoencoder_matches_the_seed_layer_table():
    model = build_model("skip-autoencoder")
    sizes, x = [], torch.rand(1, 3, 64, 64)
    hooks = [getattr(model, n).register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:])))
             for n in ("e1", "e2", "e3", "e4", "e5", "d1", "d2", "d3", "d4", "d5", "d6")]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    assert sizes == [(64, 62, 62), (128, 30, 30), (256, 28, 28), (512, 13, 13), (512, 11, 11),
                     (128, 13, 13), (128, 28, 28), (64, 30, 30), (32, 61, 61), (16, 62, 62), (3, 64, 64)]
    assert model.fixed_size == 64


def test_rrdbnet_block_counts_follow_the_seeds():
    tiny = {"num_feat": 4, "num_grow": 4}
    assert len(build_model("rrdbnet", **tiny).body) == 23
    x1 = build_model("rrdbnet", scale=1, **tiny)
    assert len(x1.body) == 2 and x1.scale == 1 and len(x1.upsample) == 0
    with pytest.raises(ConfigError, match="scale 2"):
        build_model("rrdbnet", scale=2)


def test_unet_sn_convs_are_spectrally_normalised():
    model = build_model("unet-sn", width=4)
    sn = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and parametrize.is_parametrized(m)]
    assert len(sn) == 8  # 3 down, 3 up, 2 refine; the first and last convs stay plain


def test_vgg_style_rejects_an_input_size_its_dense_layer_cannot_take():
    with pytest.raises(ConfigError, match="input_size 100"):
        build_model("vgg-style", input_size=100)


def test_fourier_unet_large_preset():
    large = build_model(FOURIER_UNET_LARGE)
    assert large.arch == "fourier-unet" and large.size_multiple == 8
    assert count_parameters(large) == 12_793_923 > count_parameters(build_model("fourier-unet"))


def test_fourier_unet_without_batchnorm():
    model = build_model("fourier-unet", widths=(8, 16, 32), blocks=1, fourier=1, norm="none")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert all(m.bias is not None for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    x = torch.rand(2, 3, 16, 16)
    model(x).square().mean().backward()
    # same function in train and eval mode: nothing depends on batch statistics
    with torch.no_grad():
        assert torch.equal(model.train()(x[:1]), model.eval()(x[:1]))
    with pytest.raises(ConfigError, match="normalisation 'layer'"):
        build_model("fourier-unet", norm="layer")


def test_fourier_unet_level_fourier_blocks():
    from restore.trainer.models import SpectralFilter

    plain = build_model("fourier-unet", widths=(8, 16, 32), blocks=1, fourier=1, norm="none")
    model = build_model("fourier-unet", widths=(8, 16, 32), blocks=1, fourier=1, norm="none",
                        level_fourier=1, level_grid=12)
    shapes = sorted(tuple(m.weight.shape) for m in model.modules() if isinstance(m, SpectralFilter))
    # one block per level above the bottleneck (grid 12), the bottleneck's own (grid 8)
    assert shapes == [(8, 12, 12, 2), (16, 12, 12, 2), (32, 8, 8, 2)]
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    model(x).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    # without level blocks the weights are those of the plain model: older checkpoints still load
    build_model("fourier-unet", widths=(8, 16, 32), blocks=1, fourier=1, norm="none",
                level_fourier=0).load_state_dict(plain.state_dict())
