"""trainer/gpu_train.sh in a CPU dry run (two steps of a shrunk model): it trains the shipped
model's last stage's data and layout and returns a run folder that ``restore.trainer.ship`` takes."""
import os
import subprocess
from pathlib import Path

from restore.trainer.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
SHRUNK = ["train.steps=2", "data.batch=2", "data.train.patch=64", "data.workers=0", "val.every=0",
          "model.widths=[8,16]", "model.blocks=1", "model.level_grid=6"]


def test_gpu_recipe_dry_run_returns_a_shippable_run_of_the_field_stage(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "TRAIN_MIN": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(["bash", str(REPO / "trainer" / "gpu_train.sh"), *SHRUNK], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    run = tmp_path / "out" / "train"
    assert {p.name for p in run.iterdir()} == {"checkpoints", "metrics.jsonl", "curves.png", "config.yaml"}
    ckpt = load_checkpoint(run / "checkpoints" / "final.safetensors")
    assert ckpt["config"]["bank"] == 2 and ckpt["config"]["deconv"] is True
    assert ckpt["config"]["backoff_dropout"] == 0.3  # stage 6's data and layout (field6.yaml)
    config = (run / "config.yaml").read_text()
    assert "h264" in config and "rescale" in config and "trajectory_length" in config
