"""The documentation's Python examples run as written (a new user copies them first)."""
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "runtime/README.md", "export/README.md", "benchmarks/README.md", "trainer/README.md"]


def python_blocks():
    for doc in DOCS:
        path = ROOT / doc
        if not path.is_file():
            continue
        for i, block in enumerate(re.findall(r"^```python\n(.*?)^```", path.read_text(), re.S | re.M)):
            yield pytest.param(block, id=f"{doc}#{i}")


@pytest.mark.parametrize("code", list(python_blocks()))
def test_documented_python_runs(tmp_path, code):
    """Each block in a fresh interpreter, in an empty folder that sees the repository's runtime/
    (the examples read runtime/samples/ as from a clone), with warnings turned into errors."""
    (tmp_path / "runtime").symlink_to(ROOT / "runtime")
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_every_readme_python_block_is_found():
    assert len(list(python_blocks())) >= 2


# --- what the READMEs say about the commands ---------------------------------------------------------
def restore(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "restore.runtime", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from restore.runtime.testing import write_conv_artifact

    root = tmp_path_factory.mktemp("docs")
    model = write_conv_artifact(root / "model", layers=1, tile=32, overlap=8, batch=2)
    samples = root / "samples"
    samples.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(samples / "one.png"), (rng.random((48, 64, 3)) * 255).astype(np.uint8))
    return model, samples


def test_quiet_run_and_demo_print_nothing_but_errors(tmp_path, tiny):
    model, samples = tiny
    run = restore("run", samples / "one.png", "-o", tmp_path / "out.png", "--model", model, "-q")
    assert run.returncode == 0 and run.stderr == "" and run.stdout == "", run.stderr
    demo = restore("demo", "--model", model, "--samples", samples, "-o", tmp_path / "demo", "-q")
    assert demo.returncode == 0 and demo.stderr == "" and demo.stdout == "", demo.stderr
    assert (tmp_path / "demo" / "report.md").is_file()
    loud = restore("run", samples / "one.png", "-o", tmp_path / "loud.png", "--model", model)
    assert loud.stderr.startswith("restore: onnxruntime")


def test_bench_has_quiet(tmp_path, tiny):
    model, _ = tiny
    result = restore("bench", "--model", model, "--backend", "onnxruntime", "--size", "64x48", "--frames", "1", "--warmup", "0",
                     "--no-floor", "--json", tmp_path / "b.json", "-q")
    assert result.returncode == 0, result.stderr
    assert "wrote" not in result.stdout and result.stderr == "", result.stderr
    assert (tmp_path / "b.json").is_file()


def test_description_says_why_this_backend(tiny):
    from restore.runtime import Restorer

    model, _ = tiny
    with Restorer(str(model)) as auto:
        assert "auto picked onnxruntime" in auto.description
    with Restorer(str(model), backend="onnxruntime") as named:
        assert named.description.endswith("--backend onnxruntime as asked")


def test_the_plugin_graph_runs_on_onnx_runtime_through_the_custom_op(tmp_path):
    """export/README: ONNX Runtime runs model.plugin.onnx through the custom op; `restore run
    --model model.plugin.onnx` does, and gives what model.onnx gives."""
    pytest.importorskip("torch")
    import torch

    from restore.trainer.checkpoint import save_checkpoint
    from restore.trainer.models import build_model

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "s.pt", build_model("fourier-unet", widths=[8, 16], blocks=1))
    export = subprocess.run([sys.executable, "-c", "from restore.export.cli import main; main()", str(tmp_path / "s.pt"), "-o", str(tmp_path / "art"),
                             "--tile", "32", "--batch", "1..2", "--target", "onnx", "--no-validate"], capture_output=True, text=True, timeout=600)
    assert export.returncode == 0, export.stderr
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), (np.random.default_rng(1).random((40, 50, 3)) * 255).astype(np.uint8))
    outputs = {}
    for graph in ("model.onnx", "model.plugin.onnx"):
        result = restore("run", src, "-o", tmp_path / f"{graph}.png", "--model", tmp_path / "art" / graph, "-q")
        assert result.returncode == 0 and result.stderr == "", result.stderr
        outputs[graph] = cv2.imread(str(tmp_path / f"{graph}.png")).astype(int)
    assert np.abs(outputs["model.onnx"] - outputs["model.plugin.onnx"]).max() <= 1
