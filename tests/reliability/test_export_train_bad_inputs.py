"""Bad input to `restore-export` and `restore train`, run as real subprocesses (these import torch,
so each case costs a few seconds: one case per error class and kind of file)."""
import cv2
import pytest

torch = pytest.importorskip("torch")

from restore.trainer.checkpoint import save_checkpoint  # noqa: E402
from restore.trainer.models import build_model  # noqa: E402


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "small ü.pt"
    save_checkpoint(path, build_model("fourier-unet", widths=[8, 16], blocks=1))
    return path


def checkpoint_variant(kind, good, folder):
    path = folder / f"{kind}.pt"
    if kind == "garbage":
        path.write_bytes(b"not a checkpoint at all\n" * 10)
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "other architecture":  # fourier-unet weights under another architecture's name
        ckpt = torch.load(good, weights_only=False)
        torch.save({**ckpt, "arch": "gir", "config": {}}, path)
    elif kind == "not a restore checkpoint":
        torch.save({"model": {"w": torch.zeros(3)}}, path)
    return path


@pytest.mark.parametrize("kind, code, words", [
    ("missing", 3, "checkpoint not found"),
    pytest.param("empty", 3, "empty", marks=pytest.mark.slow),
    pytest.param("garbage", 4, "not a readable checkpoint", marks=pytest.mark.slow),
    pytest.param("truncated", 4, "not a readable checkpoint", marks=pytest.mark.slow),
    ("other architecture", 4, "weights do not fit architecture 'gir'"),
    pytest.param("not a restore checkpoint", 4, "not a restore checkpoint", marks=pytest.mark.slow),
])
def test_export_bad_checkpoints(tmp_path, kit, small_checkpoint, kind, code, words):
    path = checkpoint_variant(kind, small_checkpoint, tmp_path)
    out = tmp_path / "artifact"
    result = kit.run_cli("restore-export", path, "-o", out, "--target", "onnx", "--no-validate")
    line = kit.assert_user_error(result, "restore-export", code, path)
    assert words in line
    assert not out.exists(), "no artifact directory may be left behind"


@pytest.mark.slow
def test_export_tile_the_model_cannot_take(tmp_path, kit, small_checkpoint):
    out = tmp_path / "artifact"
    result = kit.run_cli("restore-export", small_checkpoint, "-o", out, "--tile", "51", "--target", "onnx", "--no-validate")
    kit.assert_user_error(result, "restore-export", 7, "51")
    assert not out.exists()


def test_export_into_an_unwritable_place(tmp_path, kit, small_checkpoint):
    blocker = tmp_path / "a file"
    blocker.write_bytes(b"")
    result = kit.run_cli("restore-export", small_checkpoint, "-o", blocker / "artifact", "--target", "onnx")
    kit.assert_user_error(result, "restore-export", 5, blocker)
    assert "traced" not in result.stdout + result.stderr, "it should fail before exporting anything"


def test_export_on_a_full_disk_leaves_no_complete_looking_artifact(tmp_path, kit, small_checkpoint):
    out = tmp_path / "artifact"
    result = kit.run_cli("restore-export", small_checkpoint, "-o", out, "--tile", "32", "--target", "onnx", "--no-validate",
                         fsize_limit=100_000)  # model.onnx of this net is ~340 kB
    line = kit.assert_user_error(result, "restore-export", 5, out)
    assert "disk full or file size limit" in line
    assert not (out / "metadata.json").exists()
    assert kit.leftovers(tmp_path) == []


# --- restore train -----------------------------------------------------------------------------
def paired_data(kit, root, damaged=None):
    for sub in ("blur", "sharp"):
        (root / sub).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(root / sub / f"img{i}.png"), kit.noise((48, 48, 3), seed=i))
    if damaged:
        (root / "blur" / "img1.png").write_bytes(damaged)
    return root


def config_text(root):
    return f"""name: tiny
model: {{type: fourier-unet, widths: [8, 16], blocks: 1}}
data:
  train: {{type: paired, root: "{root}", patch: 32}}
  batch: 2
  workers: 0
loss:
  generator:
    - {{type: charbonnier, weight: 1.0}}
train: {{steps: 1, log_every: 1, ckpt_every: 1}}
schedule: {{type: pixel, lr: constant}}
"""


@pytest.mark.parametrize("kind, code, words", [
    pytest.param("missing config", 3, "config file not found", marks=pytest.mark.slow),
    ("not yaml", 7, "not valid YAML at line 2"),
    pytest.param("unknown section", 7, "unknown section", marks=pytest.mark.slow),
    pytest.param("bad override", 7, "section.key=value", marks=pytest.mark.slow),
    pytest.param("missing data folder", 3, "folder not found", marks=pytest.mark.slow),
    ("damaged image in the data", 3, "truncated or damaged"),
])
def test_train_bad_inputs(tmp_path, kit, kind, code, words):
    config = tmp_path / "cfg ü.yaml"
    args = []
    if kind == "not yaml":
        config.write_text("model: [unclosed\n  - x: {\n")
    elif kind == "unknown section":
        config.write_text("name: x\nmodle: {type: fourier-unet}\n")
    elif kind == "bad override":
        config.write_text(config_text(paired_data(kit, tmp_path / "data")))
        args = ["train.steps"]
    elif kind == "missing data folder":
        config.write_text(config_text(tmp_path / "nowhere"))
    elif kind == "damaged image in the data":
        png = kit.encoded(".png", kit.noise((48, 48, 3), seed=1))
        config.write_text(config_text(paired_data(kit, tmp_path / "data", damaged=png[: len(png) // 2])))
    run_dir = tmp_path / "run"
    result = kit.run_cli("restore", "train", config, *args, "--run-dir", run_dir, "--no-progress", cwd=tmp_path)
    line = kit.assert_user_error(result, "restore", code)
    assert words in line, line
    assert not list(run_dir.glob("**/*.pt")) and not list(run_dir.glob("**/*.safetensors")), "no checkpoint from a failed run"


def test_run_with_a_checkpoint_of_another_architecture(tmp_path, kit, small_checkpoint):
    """`restore run --model CHECKPOINT` (torch backend) with weights that do not fit the architecture
    the checkpoint names."""
    bad = checkpoint_variant("other architecture", small_checkpoint, tmp_path)
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), kit.noise((32, 32, 3)))
    result = kit.run_cli("restore", "run", image, "-o", tmp_path / "out.png", "--model", bad)
    line = kit.assert_user_error(result, "restore", 4, bad)
    assert "weights do not fit architecture 'gir'" in line
    assert not (tmp_path / "out.png").exists()
