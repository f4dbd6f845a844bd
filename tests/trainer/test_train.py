"""The trainer: configs load and override, every shipped config trains two steps at tiny size, a
tiny run writes its run directory, --resume continues the same run, and two gloo processes under
torchrun give the weights of one process with the same global batch."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from restore.runtime.errors import ConfigError, InputError, ModelError
from restore.trainer.checkpoint import load_checkpoint, model_from_checkpoint
from restore.trainer.config import load_config, parse_value
from restore.trainer.losses import vgg19_features
from restore.trainer.train import Trainer, lr_factor, phase_of, train

CONFIGS = Path(__file__).resolve().parents[2] / "trainer" / "configs"

# Tiny sizes for each shipped config: same code path, seconds on a CPU.
COMMON = ["train.steps=2", "data.batch=2", "data.workers=0", "val.every=0", "train.log_every=1", "train.ckpt_every=1"]
DECONV_TINY = ["model.widths=[8,16]", "model.blocks=1", "model.fourier=1", "model.level_grid=4", "data.train.patch=64",
               "train.init=null"]
TINY = {
    "fourier-unet-deblur": ["model.widths=[8,16]", "model.blocks=1", "model.fourier=1", "data.train.patch=32"],
    "fourier-unet-deblur-finetune": ["model.widths=[8,16]", "model.blocks=1", "model.fourier=1", "model.level_grid=4",
                                     "data.train.patch=32", "train.init=null"],
    **dict.fromkeys(["fourier-unet-deblur-deconv", "fourier-unet-deblur-field", "fourier-unet-deblur-field5",
                     "fourier-unet-deblur-field6", "fourier-unet-deblur-field7", "fourier-unet-deblur-field8"], DECONV_TINY),
    "fourier-unet-large": ["model.widths=[8,16]", "model.blocks=1", "model.fourier=1", "data.train.patch=32"],
    "gir": ["model.widths=[8,16,32]", "discriminator.widths=[4,8,8,8,8]", "discriminator.dense=4",
            "discriminator.input_size=32", "data.train.patch=32"],
    "degan-documents": ["model.widths=[8,16,32]", "discriminator.widths=[8,16,16,16]", "data.train.patch=32"],
    "skip-autoencoder-faces": ["model.width=4", "discriminator.width=4"],
    "rrdbnet-x4-sr": ["model.num_feat=8", "model.num_block=1", "model.num_grow=4", "discriminator.width=8",
                      "data.train.patch=32", "schedule.nogan_g_steps=1", "schedule.warmup=0"],
    "rrdbnet-x1-jpeg-qf10": ["model.num_feat=8", "model.num_block=1", "model.num_grow=4", "discriminator.width=8",
                             "discriminator.input_size=32", "data.train.patch=32", "train.steps=3",
                             "schedule.nogan_g_steps=1", "schedule.nogan_d_steps=1"],
}
PERCEPTUAL_INDEX = {"rrdbnet-x4-sr": 0, "rrdbnet-x1-jpeg-qf10": 1}


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory):
    """Random VGG19 feature weights in torchvision's naming (ImageNet weights are not bundled)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save({f"features.{k}": v.half() for k, v in vgg19_features().state_dict().items()}, path)
    return path


def tiny_run_config(**extra):
    """fourier-unet at toy size with validation on two 64-pixel holdout crops."""
    overrides = [*COMMON, *TINY["fourier-unet-deblur"], "train.steps=4", "val.every=2", "val.max_crops=2",
                 "val.crop=64", "train.ckpt_every=2", "schedule.lr=constant", "schedule.warmup=0", "train.ema=0.9"]
    overrides += [f"{k}={v}" for k, v in extra.items()]
    return load_config(CONFIGS / "fourier-unet-deblur.yaml", overrides)


def test_every_config_is_listed_here():
    assert {p.stem for p in CONFIGS.glob("*.yaml")} == set(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_config_builds_and_trains_two_steps(name, tmp_path, vgg_weights):
    overrides = [*COMMON, *TINY[name]]
    if name in PERCEPTUAL_INDEX:
        overrides.append(f"loss.generator.{PERCEPTUAL_INDEX[name]}.weights_path={vgg_weights}")
    cfg = load_config(CONFIGS / f"{name}.yaml", overrides)
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["step"] == cfg["train"]["steps"]
    losses = [r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) if "step" in r and "lr" in r]
    assert len(losses) == cfg["train"]["steps"]
    assert all(torch.isfinite(torch.tensor(v)) for r in losses for k, v in r.items() if isinstance(v, float))
    if cfg["schedule"]["type"] != "pixel":
        assert any("d_loss" in r for r in losses), "the discriminator never trained"
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert ckpt["arch"] == cfg["model"]["type"] and ckpt["training"]["step"] == cfg["train"]["steps"]


def test_tiny_run_writes_the_run_directory(tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(
        __import__("restore.trainer.cli", fromlist=["train"]).train,
        [str(CONFIGS / "fourier-unet-deblur.yaml"), *COMMON, *TINY["fourier-unet-deblur"], "train.steps=4", "val.every=2",
         "val.max_crops=2", "val.crop=64", "--run-dir", str(run), "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["step"] == 4 and summary["final_val"]["psnr"] > 10
    for name in ("config.yaml", "metrics.jsonl", "curves.png", "best.json", "checkpoints/latest.pt",
                 "checkpoints/best.safetensors", "checkpoints/final.safetensors", "samples/step_0000002.png"):
        assert (run / name).is_file(), name
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["widths"] == [8, 16] and saved["train"]["steps"] == 4
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    vals = [r["val"] for r in records if "val" in r]
    assert vals and {"psnr", "ssim", "input_psnr"} <= set(vals[0])
    final = load_checkpoint(run / "checkpoints" / "final.safetensors")
    assert final["arch"] == "fourier-unet" and final["experiment"]["name"] == "fourier-unet-deblur"


def test_resume_continues_the_same_run(tmp_path):
    no_val = {"val.every": 0}
    straight = train(tiny_run_config(**no_val), tmp_path / "straight", progress=False)
    first = train(tiny_run_config(**no_val, **{"train.steps": 2}), tmp_path / "resumed", progress=False)
    assert first["step"] == 2
    with pytest.raises(ConfigError, match="already holds a run"):
        train(tiny_run_config(**no_val), tmp_path / "resumed", progress=False)
    second = train(tiny_run_config(**no_val), tmp_path / "resumed", resume=True, progress=False)
    assert straight["step"] == second["step"] == 4
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "latest.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "latest.pt")
    for key in a["state_dict"]:
        assert torch.allclose(a["state_dict"][key].float(), b["state_dict"][key].float(), atol=1e-6), key
    for key in a["training"]["ema"]:
        assert torch.allclose(a["training"]["ema"][key].float(), b["training"]["ema"][key].float(), atol=1e-6), key
    events = [json.loads(line).get("event") for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert events.count("resume") == 1
    with pytest.raises(InputError, match="nothing to resume"):
        train(tiny_run_config(), tmp_path / "empty", resume=True, progress=False)


def test_init_starts_from_trained_weights(tmp_path):
    """Stage 2 of the shipped model: the fine-tune config starts from a stage-1 run's weights,
    with its added Fourier blocks as the identity, so it starts from stage 1's function exactly."""
    train(tiny_run_config(**{"val.every": 0}), tmp_path / "stage1", progress=False)
    weights = tmp_path / "stage1" / "checkpoints" / "final.safetensors"
    overrides = [*COMMON, *TINY["fourier-unet-deblur-finetune"][:-1], f"train.init={weights}"]
    cfg = load_config(CONFIGS / "fourier-unet-deblur-finetune.yaml", overrides)
    G = Trainer(cfg, torch.device("cpu"), 1).G.eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        # (channels_last in the fine-tune config: same weights, other conv kernels, float rounding)
        assert torch.allclose(G(x), model_from_checkpoint(weights)(x), atol=1e-6)
    summary = train(cfg, tmp_path / "stage2", progress=False)
    assert summary["step"] == 2
    start = json.loads((tmp_path / "stage2" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["init"] == {"weights": str(weights), "new_tensors": 5}  # 1 block: 2 convs x 2 + grid
    wider = load_config(CONFIGS / "fourier-unet-deblur-finetune.yaml", [*overrides, "model.widths=[8,24]"])
    with pytest.raises(ModelError, match="do not fit the model"):
        Trainer(wider, torch.device("cpu"), 1)


def test_deconv_stage_starts_from_stage_2_and_learns_the_kernels(tmp_path):
    """Stage 3: the deconvolution front end joins through zero-initialised paths, so the model
    starts as stage 2's function; its kernel estimate trains on the pairs' true kernels."""
    overrides = [*COMMON, *TINY["fourier-unet-deblur-finetune"], "data.train.patch=64"]
    train(load_config(CONFIGS / "fourier-unet-deblur-finetune.yaml", overrides), tmp_path / "stage2", progress=False)
    weights = tmp_path / "stage2" / "checkpoints" / "final.safetensors"
    overrides = [*COMMON, *TINY["fourier-unet-deblur-deconv"][:-1], f"train.init={weights}", "train.steps=3"]
    cfg = load_config(CONFIGS / "fourier-unet-deblur-deconv.yaml", overrides)
    G = Trainer(cfg, torch.device("cpu"), 1).G.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(G(x), model_from_checkpoint(weights)(x), atol=1e-6)
    train(cfg, tmp_path / "stage3", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "stage3" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["init"]["new_tensors"] == len([k for k in G.state_dict() if k.startswith("deconv")])
    assert all(0 < r["kernel_ce"] < 20 for r in rows if "lr" in r)
    no_deconv = load_config(CONFIGS / "fourier-unet-deblur-deconv.yaml", [*overrides, "model.deconv=false"])
    with pytest.raises(ConfigError, match="loss.kernel"):
        Trainer(no_deconv, torch.device("cpu"), 1)


def test_kernel_estimator_pretrains_alone_inside_the_previous_model(tmp_path):
    """pretrain_kernel: the estimator trains on its own; the file it writes computes what the
    previous stage did (the front end's joins are still zero) and is the next stage's init."""
    from restore.trainer.pretrain_kernel import pretrain

    overrides = [*COMMON, *TINY["fourier-unet-deblur-finetune"], "data.train.patch=64"]
    train(load_config(CONFIGS / "fourier-unet-deblur-finetune.yaml", overrides), tmp_path / "stage2", progress=False)
    stage2 = tmp_path / "stage2" / "checkpoints" / "final.safetensors"
    cfg = load_config(CONFIGS / "fourier-unet-deblur-deconv.yaml", [*COMMON, *TINY["fourier-unet-deblur-deconv"]])
    summary = pretrain(cfg, stage2, tmp_path / "pre.safetensors", minutes=0.05, batch=4, progress=False)
    assert summary["steps"] > 0 and 0 < summary["cross_entropy_last_200"] < 20
    before = Trainer(cfg, torch.device("cpu"), 1).G.state_dict()
    after = load_checkpoint(tmp_path / "pre.safetensors")["state_dict"]
    assert not torch.equal(after["deconv.estimator.classify.3.weight"], before["deconv.estimator.classify.3.weight"])
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model_from_checkpoint(tmp_path / "pre.safetensors")(x), model_from_checkpoint(stage2)(x), atol=1e-6)
    stage3 = load_config(CONFIGS / "fourier-unet-deblur-deconv.yaml",
                         [*COMMON, *TINY["fourier-unet-deblur-deconv"][:-1], f"train.init={tmp_path / 'pre.safetensors'}"])
    assert train(stage3, tmp_path / "stage3", progress=False)["step"] == 2
    with pytest.raises(ConfigError, match="no kernel estimator"):
        pretrain(load_config(CONFIGS / "fourier-unet-deblur-finetune.yaml", overrides), stage2, tmp_path / "x.pt", minutes=0.01)


def test_channels_last_trains_the_same_weights(tmp_path):
    runs = {}
    for flag in (False, True):
        cfg = tiny_run_config(**{"val.every": 0, "train.channels_last": flag})
        train(cfg, tmp_path / str(flag), progress=False)
        runs[flag] = load_checkpoint(tmp_path / str(flag) / "checkpoints" / "latest.pt")["state_dict"]
    for key, value in runs[False].items():
        assert runs[True][key].is_contiguous()  # checkpoints stay in the default layout
        assert torch.allclose(value.float(), runs[True][key].float(), atol=1e-5), key


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(tmp_path):
    """Two gloo ranks x 2 samples == one process x 4 samples: same data (items are chosen by
    index), gradients averaged by DDP. rrdbnet has no BatchNorm, whose per-rank statistics would
    legitimately differ on CPU (SyncBatchNorm is CUDA-only)."""
    cfg = {
        "name": "ddp-check",
        "model": {"type": "rrdbnet", "scale": 1, "num_feat": 8, "num_block": 1, "num_grow": 4},
        "data": {"train": {"type": "builtin", "split": "train", "patch": 16, "length": 1000,
                           "degradation": {"blur": {"kinds": ["gaussian"], "sigma": [1, 2]}}},
                 "batch": 4, "workers": 0},
        "val": {"every": 0},
        "loss": {"generator": [{"type": "l1"}]},
        "train": {"steps": 3, "lr": 1.0e-3, "log_every": 1, "ckpt_every": 10},
        "schedule": {"type": "pixel", "lr": "constant"},
    }
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "restore.runtime", "train", str(path), "--run-dir", str(tmp_path / "two"), "--no-progress"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert events[0]["world"] == 2
    train(load_config(path), tmp_path / "one", progress=False)
    two = load_checkpoint(tmp_path / "two" / "checkpoints" / "final.safetensors")["state_dict"]
    one = load_checkpoint(tmp_path / "one" / "checkpoints" / "final.safetensors")["state_dict"]
    initial = {k: v.clone() for k, v in __import__("restore.trainer.models", fromlist=["build_model"])
               .build_model(cfg["model"]).state_dict().items()}
    assert any(not torch.allclose(one[k], initial[k]) for k in one), "weights did not move"
    for key in one:
        assert torch.allclose(one[key], two[key], atol=1e-5, rtol=1e-4), key


def test_overrides_parse_numbers_lists_and_nested_keys():
    cfg = load_config(CONFIGS / "fourier-unet-deblur.yaml",
                      ["train.lr=1e-4", "train.steps=7", "model.widths=[16,32]", "data.train.degradation.noise.sigma=0.02",
                       "loss.generator.1.weight=0.5", "train.amp=false"])
    assert cfg["train"]["lr"] == 1e-4 and cfg["train"]["steps"] == 7
    assert cfg["model"]["widths"] == [16, 32]
    assert cfg["data"]["train"]["degradation"]["noise"]["sigma"] == 0.02
    assert cfg["loss"]["generator"][1] == {"type": "fft_l1", "weight": 0.5}
    assert cfg["train"]["amp"] is False
    assert parse_value("3") == 3 and parse_value("2.5e-3") == 0.0025 and parse_value("gan") == "gan"


def test_config_errors_are_one_line_user_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="unknown config section"):
        load_config(CONFIGS / "fourier-unet-deblur.yaml", ["trian.steps=3"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(CONFIGS / "fourier-unet-deblur.yaml", ["train.steps"])
    with pytest.raises(ConfigError, match="positive integer"):
        load_config(CONFIGS / "fourier-unet-deblur.yaml", ["train.steps=0"])
    with pytest.raises(ConfigError, match="needs a discriminator"):
        load_config(CONFIGS / "fourier-unet-deblur.yaml", ["schedule.type=gan"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {type: fourier-unet}\noptimiser: {lr: 1}\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_config(bad)


def test_schedules():
    sched = {"type": "nogan", "lr": "cosine", "warmup": 10, "min_lr_ratio": 0.0, "nogan_g_steps": 5, "nogan_d_steps": 3}
    assert [phase_of(s, sched) for s in (0, 4, 5, 7, 8, 100)] == ["g", "g", "d", "d", "gan", "gan"]
    assert phase_of(0, {**sched, "type": "pixel"}) == "g" and phase_of(0, {**sched, "type": "gan"}) == "gan"
    assert lr_factor(0, 110, sched) == pytest.approx(0.1)
    assert lr_factor(10, 110, sched) == pytest.approx(1.0)
    assert lr_factor(60, 110, sched) == pytest.approx(0.5)
    assert lr_factor(110, 110, sched) == pytest.approx(0.0, abs=1e-9)
    # a spent wall-clock budget anneals the LR even when few steps were taken
    assert lr_factor(20, 110, sched, time_fraction=1.0) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.gpu
def test_amp_gan_run_on_cuda(tmp_path):
    """fp16 autocast + GradScaler for both networks (CUDA only; skipped on CPU machines)."""
    cfg = load_config(CONFIGS / "gir.yaml", [*COMMON, *TINY["gir"], "train.amp=true", "train.steps=3"])
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["step"] == 3
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["training"]
    assert state["scaler_g"] and state["scaler_d"]  # enabled scalers have state
