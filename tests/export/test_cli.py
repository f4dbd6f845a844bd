"""restore-export's bad-input handling through the real console script: one-line error, the
error class's exit code, no traceback, no output directory left behind. The processes run in
parallel (each spends its time importing torch)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from restore.trainer.checkpoint import save_checkpoint
from restore.trainer.models import build_model


def console_script(name):
    beside_python = Path(sys.executable).with_name(name)
    return str(beside_python) if beside_python.exists() else name


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    save_checkpoint(root / "fu.pt", build_model({"type": "fourier-unet", "widths": [8, 16], "blocks": 1, "fourier": 1}))
    save_checkpoint(root / "sae.pt", build_model({"type": "skip-autoencoder", "width": 4}))
    save_checkpoint(root / "disc.pt", build_model({"type": "patch"}))
    (root / "corrupt.pt").write_bytes(b"\x80\x02not a pickle at all" * 10)
    torch.save({"format": "restore-checkpoint/1", "arch": "no-such-net", "config": {}, "state_dict": {}}, root / "alien.pt")
    # Packages that fail to import: the builder modules as on a machine without TensorRT.
    shim = root / "no_tensorrt"
    for module in ("tensorrt", "tensorrt_rtx_bindings"):
        (shim / module).mkdir(parents=True)
        (shim / module / "__init__.py").write_text(f"raise ImportError('{module} hidden by the test')\n")
    return root


# name -> (argv after the program, expected exit code, words the one-line error must contain)
CASES = {
    "missing": (["missing.pt"], 3, "checkpoint not found"),
    "corrupt": (["corrupt.pt"], 4, "not a readable checkpoint"),
    "unknown_arch": (["alien.pt"], 4, "unknown architecture"),
    "tile_not_multiple": (["fu.pt", "--tile", "33"], 7, "multiples of 2"),
    "tile_not_fixed_size": (["sae.pt", "--tile", "32"], 7, "64x64"),
    "discriminator": (["disc.pt"], 7, "not a generator"),
    "bad_batch": (["fu.pt", "--batch", "4..2"], 7, "MIN <= MAX"),
    "bad_opset": (["fu.pt", "--opset", "13"], 7, "use 18.."),
    "trt_without_builder": (["fu.pt", "--tile", "32", "--target", "trt"], 6, "pip install"),
}


@pytest.fixture(scope="module")
def results(files):
    no_trt = dict(os.environ, PYTHONPATH=str(files / "no_tensorrt"))

    def start(argv, env=None):
        return subprocess.Popen(argv, cwd=files, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    procs = {
        name: start([console_script("restore-export"), *args, "-o", f"out_{name}"], no_trt if "without_builder" in name else None)
        for name, (args, _, _) in CASES.items()
    }
    procs["root_command"] = start([console_script("restore"), "export", "missing.pt", "-o", "out_root"])
    procs["all_without_builder"] = start(
        [console_script("restore-export"), "fu.pt", "-o", "out_all", "--tile", "32", "--batch", "1..2", "--no-validate"], no_trt)
    stderr = {name: p.communicate(timeout=600)[1] for name, p in procs.items()}
    return {name: (p.returncode, stderr[name]) for name, p in procs.items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_with_its_exit_code_and_no_output(files, results, name):
    _, code, words = CASES[name]
    returncode, stderr = results[name]
    assert returncode == code, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("restore-export: error: ") and words in lines[0], stderr
    assert not (files / f"out_{name}").exists()
    assert not [p for p in files.iterdir() if p.name.startswith(f".out_{name}")]


def test_restore_export_is_the_same_command(results):
    returncode, stderr = results["root_command"]
    assert returncode == 3 and "checkpoint not found" in stderr and "Traceback" not in stderr


def test_target_all_without_builder_writes_onnx_and_says_the_engine_was_skipped(files, results):
    returncode, stderr = results["all_without_builder"]
    assert returncode == 0, stderr
    assert "engine skipped" in stderr and "Traceback" not in stderr
    names = sorted(p.name for p in (files / "out_all").iterdir())
    assert names == ["metadata.json", "model.onnx", "model.plugin.onnx"]
