import numpy as np
import pytest
import torch

from restore.runtime.errors import ConfigError
from restore.trainer.losses import (
    LOSSES,
    PerceptualLoss,
    build_adversarial_loss,
    build_generator_loss,
    build_loss,
    ssim_torch,
    vgg19_features,
)
from restore.trainer.metrics import ssim as ssim_numpy


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 32, 32, generator=g)
    output = (target + 0.1 * torch.randn(2, 3, 32, 32, generator=g)).clamp(0, 1)
    return output, target


@pytest.mark.parametrize("name", ["l1", "mse", "charbonnier", "ssim", "fft_l1", "log_mse"])
def test_pixel_losses_are_zero_for_identical_images_and_positive_otherwise(name, pair):
    output, target = pair
    loss = build_loss({"type": name})
    assert float(loss(target, target)) == pytest.approx(0.0, abs=2e-3)  # charbonnier's floor is eps
    assert float(loss(output, target)) > float(loss(target, target)) + 1e-3


def test_l1_mse_charbonnier_closed_forms(pair):
    output, target = pair
    diff = output - target
    assert float(build_loss("l1")(output, target)) == pytest.approx(float(diff.abs().mean()), rel=1e-6)
    assert float(build_loss("mse")(output, target)) == pytest.approx(float((diff**2).mean()), rel=1e-6)
    charb = build_loss({"type": "charbonnier", "eps": 1e-3})(output, target)
    assert float(charb) == pytest.approx(float(torch.sqrt(diff**2 + 1e-6).mean()), rel=1e-6)


def test_log_mse_is_the_mean_per_picture_error_in_db(pair):
    output, target = pair
    mse = ((output - target) ** 2).flatten(1).mean(1)
    expected = (10 * torch.log10(1 + mse / 1e-5)).mean()
    assert float(build_loss("log_mse")(output, target)) == pytest.approx(float(expected), rel=1e-6)


def test_log_mse_weighs_a_near_clean_picture_more_than_a_badly_blurred_one():
    # Two pictures in one batch: one off by 0.005 (46 dB), one by 0.1 (20 dB). Under MSE the near-clean
    # one's gradient is 20x smaller; under log_mse 14x larger (dB per unit of error ~ 1 / error).
    target = torch.zeros(2, 1, 8, 8)
    output = torch.stack([torch.full((1, 8, 8), 0.005), torch.full((1, 8, 8), 0.1)]).requires_grad_()
    for name, near_over_far in (("mse", 0.05), ("log_mse", (0.005 / (0.005**2 + 1e-5)) / (0.1 / (0.1**2 + 1e-5)))):
        output.grad = None
        build_loss(name)(output, target).backward()
        grads = output.grad.flatten(1).mean(1)
        assert float(grads[0] / grads[1]) == pytest.approx(near_over_far, rel=1e-4)


def test_fft_l1_of_a_constant_offset_is_its_dc_term():
    h, w, d = 16, 16, 0.25
    target = torch.zeros(1, 1, h, w)
    output = target + d
    # ortho rfft2: DC = d * sqrt(HW), every other bin 0; the mean runs over H x (W/2+1) x 2 values
    expected = d * np.sqrt(h * w) / (h * (w // 2 + 1) * 2)
    assert float(build_loss("fft_l1")(output, target)) == pytest.approx(expected, rel=1e-5)


def test_ssim_torch_agrees_with_numpy_metric(pair):
    output, target = pair
    ours = float(ssim_torch(output[:1], target[:1]))
    reference = ssim_numpy(target[0].permute(1, 2, 0).numpy(), output[0].permute(1, 2, 0).numpy())
    assert ours == pytest.approx(reference, abs=0.03)  # windows and borders differ slightly
    assert float(build_loss("ssim")(output, target)) == pytest.approx(1 - float(ssim_torch(output, target)), abs=1e-6)


def test_weighted_sum_and_logged_parts(pair):
    output, target = pair
    total, parts = build_generator_loss([{"type": "l1", "weight": 2.0}, {"type": "mse", "weight": 0.5}])(output, target)
    assert set(parts) == {"l1", "mse"}
    assert float(total) == pytest.approx(2.0 * parts["l1"] + 0.5 * parts["mse"], rel=1e-5)


def test_unknown_loss_and_non_adversarial_adversarial_are_config_errors():
    with pytest.raises(ConfigError, match="unknown loss"):
        build_loss({"type": "nope"})
    with pytest.raises(ConfigError, match="not an adversarial loss"):
        build_adversarial_loss({"type": "l1"})
    with pytest.raises(ConfigError, match="bad options"):
        build_loss({"type": "l1", "strength": 3})


def test_bce_on_logits_equals_bce_on_probabilities():
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.1, 1.0])
    with_logits = build_adversarial_loss({"type": "bce"})
    with_probs = build_adversarial_loss({"type": "bce", "logits": False})
    assert float(with_logits.generator(None, fake)) == pytest.approx(float(with_probs.generator(None, torch.sigmoid(fake))), rel=1e-5)
    d_logits = with_logits.discriminator(real, fake)
    d_probs = with_probs.discriminator(torch.sigmoid(real), torch.sigmoid(fake))
    assert float(d_logits) == pytest.approx(float(d_probs), rel=1e-5)
    # a discriminator that is right about both has a lower loss than one that is wrong
    assert float(with_logits.discriminator(real.abs() * 5, -fake.abs() * 5)) < float(with_logits.discriminator(-real.abs(), fake.abs()))


def test_relativistic_average_is_symmetric_and_rewards_realistic_fakes():
    loss = build_adversarial_loss({"type": "relativistic"})
    real, fake = torch.tensor([1.0, 2.0, 0.0]), torch.tensor([-1.0, 0.5, -0.5])
    # the generator's loss is the discriminator's with real and fake swapped
    assert float(loss.generator(real, fake)) == pytest.approx(float(loss.discriminator(fake, real)), rel=1e-6)
    assert float(loss.generator(real, fake + 3.0)) < float(loss.generator(real, fake))
    assert float(loss.discriminator(real + 3.0, fake)) < float(loss.discriminator(real, fake))


def test_perceptual_loss_needs_a_local_weights_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        build_loss({"type": "vgg19_54", "weights_path": str(tmp_path / "missing.pth")})
    with pytest.raises(ConfigError, match="not found"):
        build_loss({"type": "vgg19_54"})
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(3, 3, 3, 3)}, wrong)
    with pytest.raises(ConfigError, match="VGG19"):
        build_loss({"type": "vgg19_54", "weights_path": str(wrong)})
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a state dict")
    with pytest.raises(ConfigError, match="not a readable"):
        build_loss({"type": "vgg19_54", "weights_path": str(garbage)})


def test_perceptual_loss_with_weights_from_file(tmp_path, pair):
    torch.manual_seed(0)
    features = vgg19_features()
    path = tmp_path / "vgg19.pth"
    # torchvision's naming; half precision keeps the test file small
    torch.save({f"features.{k}": v.half() for k, v in features.state_dict().items()}, path)
    loss = build_loss({"type": "vgg19_54", "weights_path": str(path), "weight": 0.5})
    assert isinstance(loss, PerceptualLoss) and loss.weight == 0.5
    first_conv = loss.features[0].weight
    assert torch.allclose(first_conv, features[0].weight.half().float())
    assert not any(p.requires_grad for p in loss.features.parameters())
    output, target = pair
    output = output.clone().requires_grad_(True)
    assert float(loss(target, target)) == pytest.approx(0.0, abs=1e-6)
    value = loss(output, target)
    value.backward()
    assert float(value.detach()) > 0 and output.grad.abs().sum() > 0
    loss.train()
    assert not loss.features.training  # the extractor stays in eval mode
    # gray images are repeated to three channels
    assert float(loss(target[:, :1], target[:, :1])) == pytest.approx(0.0, abs=1e-6)


def test_registry_lists_every_loss_of_the_brief():
    assert {"l1", "charbonnier", "mse", "ssim", "fft_l1", "log_mse", "vgg19_54", "bce", "relativistic"} <= set(LOSSES)
