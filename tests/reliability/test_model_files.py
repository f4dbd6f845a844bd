"""A model file never runs code and never builds more than it holds: a real malicious pickle
through every command that loads a checkpoint, and hostile safetensors descriptions through the
one loader (trainer/checkpoint.py)."""
import json
import os
import pickle

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import save_file  # noqa: E402

from restore.runtime.errors import ModelError  # noqa: E402
from restore.trainer.checkpoint import FORMAT, load_checkpoint, model_from_checkpoint, save_checkpoint  # noqa: E402
from restore.trainer.models import build_model  # noqa: E402


class Payload:
    """Unpickling this calls os.system: what a hostile .pt carries."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def malicious_checkpoint(folder, marker, kind="torch.save"):
    path = folder / "model.pt"
    payload = {"format": FORMAT, "arch": "fourier-unet", "config": {}, "state_dict": {}, "x": Payload(marker)}
    if kind == "torch.save":
        torch.save(payload, path)
    else:  # a bare pickle, as torch.save's legacy format writes it (protocol 2) or newest (5)
        path.write_bytes(pickle.dumps(payload, protocol=2 if kind == "pickle" else 5))
    return path


def test_the_payload_is_real(tmp_path):
    """The file does run its command under plain pickle: the tests below would catch a loader that
    unpickles it."""
    marker = tmp_path / "MARKER"
    pickle.loads((malicious_checkpoint(tmp_path, marker, "pickle")).read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("kind, words", [("torch.save", "could run code"), ("pickle", "could run code"),
                                         ("pickle protocol 5", "not a readable checkpoint")])
def test_loader_refuses_a_pickle_that_names_code(tmp_path, kind, words):
    marker = tmp_path / "MARKER"
    path = malicious_checkpoint(tmp_path, marker, kind)
    with pytest.raises(ModelError, match=words) as error:
        load_checkpoint(path)
    assert "\n" not in str(error.value)
    assert not marker.exists()


def tiny_train_config(folder, init):
    (folder / "cfg.yaml").write_text(f"""name: tiny
model: {{type: fourier-unet, widths: [8, 16], blocks: 1}}
data:
  train: {{type: synthetic, patch: 32}}
  batch: 2
  workers: 0
train: {{steps: 1, init: "{init}"}}
schedule: {{type: pixel, lr: constant}}
""")
    return folder / "cfg.yaml"


@pytest.mark.parametrize("command", ["run --model FILE", "run --model DIR", "restore-export", "eval", "train train.init="])
def test_no_command_runs_a_malicious_checkpoint(tmp_path, kit, command):
    marker = tmp_path / "MARKER"
    folder = tmp_path / "only the pickle"
    folder.mkdir()
    evil = malicious_checkpoint(folder, marker)
    image = tmp_path / "in.png"
    image.write_bytes(kit.encoded(".png", kit.noise((16, 16, 3))))
    prog, args = "restore", []
    if command == "run --model FILE":
        args = ["run", image, "-o", tmp_path / "out.png", "--model", evil]
    elif command == "run --model DIR":
        args = ["run", image, "-o", tmp_path / "out.png", "--model", folder]
    elif command == "restore-export":
        prog, args = "restore-export", [evil, "-o", tmp_path / "artifact", "--target", "onnx"]
    elif command == "eval":
        args = ["eval", evil, "--no-baselines"]
    else:
        args = ["train", tiny_train_config(tmp_path, evil), "--run-dir", tmp_path / "run", "--no-progress"]
    result = kit.run_cli(prog, *args)
    line = kit.assert_user_error(result, prog, 4, evil)
    assert "could run code" in line
    assert not marker.exists(), "the checkpoint's pickle ran its command"


def test_a_training_checkpoint_still_loads(tmp_path):
    """What `restore train` keeps in latest.pt (optimizer state, NumPy/Python RNG state, the
    experiment config) is plain data the weights-only loader accepts."""
    import random

    import numpy as np

    model = build_model("fourier-unet", widths=[8, 16], blocks=1)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.rand(1, 3, 16, 16)).mean().backward()
    optimizer.step()
    training = {"step": 3, "opt_g": optimizer.state_dict(), "scaler_g": torch.amp.GradScaler("cpu", enabled=False).state_dict(),
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}}
    path = save_checkpoint(tmp_path / "latest.pt", model, training=training, extra={"experiment": {"model": {"widths": [8, 16]}}})
    ckpt = load_checkpoint(path)
    assert ckpt["training"]["rng"]["numpy"][0] == "MT19937"
    assert torch.equal(ckpt["training"]["opt_g"]["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    np.random.set_state(ckpt["training"]["rng"]["numpy"])


def safetensors_with(path, description, state=None):
    state = state if state is not None else {"w": torch.zeros(4)}
    save_file(state, str(path), metadata={"restore": json.dumps(description)})
    return path


HOSTILE_DESCRIPTIONS = {
    "config a list": ({"config": [1, 2]}, "field config: expected an object"),
    "config a string": ({"config": "x"}, "field config: expected an object"),
    "config null": ({"config": None}, "field config: expected an object"),
    "widths 1e6 float": ({"config": {"widths": [1e6]}}, "field config.widths[0]"),
    "widths 1000000": ({"config": {"widths": [1000000]}}, "field config.widths[0]"),
    "widths huge within bounds": ({"config": {"widths": [8000, 8000, 8000, 8000]}}, "the file holds 4"),
    "blocks NaN": ({"config": {"blocks": float("nan")}}, "field config.blocks"),
    "nested list": ({"config": {"widths": [[8]]}}, "field config.widths[0]"),
    "object value": ({"config": {"widths": {"a": 1}}}, "field config.widths"),
    "type override": ({"config": {"type": "gir"}}, "field config.type"),
    "arch a number": ({"arch": 7}, "field arch"),
    "arch unknown": ({"arch": "no-such-net"}, "unknown architecture"),
    "widths negative": ({"config": {"widths": [-8, 16]}}, "field config"),
    "widths empty (found by fuzzing)": ({"config": {"widths": []}}, "field config"),
    "widths zero": ({"config": {"widths": [0]}}, "field config"),
    "unknown option": ({"config": {"no_such_option": 1}}, "field config"),
    "an option named by a line break (found by fuzzing)": ({"config": {"widths": [8, 16], "\n": None}}, "argument '\\n'"),
    "metrics a list": ({"metrics": [1]}, "field metrics"),
}


@pytest.mark.parametrize("name", list(HOSTILE_DESCRIPTIONS))
def test_hostile_safetensors_description_is_refused_before_building(tmp_path, name):
    change, words = HOSTILE_DESCRIPTIONS[name]
    description = {"format": FORMAT, "arch": "fourier-unet", "config": {"widths": [8, 16], "blocks": 1}, "metrics": {}, **change}
    path = safetensors_with(tmp_path / "m.safetensors", description)
    with pytest.raises(ModelError) as error:
        model_from_checkpoint(path)
    message = str(error.value)
    assert words in message and str(path) in message and "\n" not in message


@pytest.mark.filterwarnings("error")
def test_a_zero_width_next_to_real_weights_is_refused_without_a_warning(tmp_path):
    # found by fuzzing: the meta-device check passed (fewer weights needed than held), and building
    # the model printed torch's "zero-element tensors" warning before the weights were refused
    model = build_model("fourier-unet", widths=[4, 8], blocks=1, fourier=1)
    description = {"format": FORMAT, "arch": "fourier-unet", "config": {"widths": [0, 8], "blocks": 1, "fourier": 1}, "metrics": {}}
    path = safetensors_with(tmp_path / "m.safetensors", description, state=model.state_dict())
    with pytest.raises(ModelError, match="weights do not fit"):
        model_from_checkpoint(path)


def test_hostile_config_through_the_cli_is_exit_4(tmp_path, kit):
    path = safetensors_with(tmp_path / "wide.safetensors", {"format": FORMAT, "arch": "fourier-unet", "config": {"widths": [1e6]}})
    result = kit.run_cli("restore-export", path, "-o", tmp_path / "artifact", "--target", "onnx", memory_limit=8 << 30)
    line = kit.assert_user_error(result, "restore-export", 4, path)
    assert "config.widths[0]" in line
