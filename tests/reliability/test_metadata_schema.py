"""An artifact's metadata.json is untrusted: one schema check (runtime/metadata.py) before use, every
file it names inside the artifact folder. Each listed hostile document, and hypothesis-generated
ones (random JSON, mutations of the shipped metadata), through the real loader and a real ONNX
Runtime session: the result is a working model or one ModelError, never another exception."""
import copy
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from restore.runtime.api import Restorer
from restore.runtime.artifact import DEFAULT_MODEL_DIR, resolve_model
from restore.runtime.errors import ModelError
from restore.runtime.testing import write_conv_artifact

_spec = importlib.util.spec_from_file_location("restore_fuzz", Path(__file__).parents[2] / "scripts" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

SHIPPED = json.loads((DEFAULT_MODEL_DIR / "metadata.json").read_text())
PRISTINE = {  # what write_conv_artifact writes for the tiny model (dynamic H and W)
    "format": "restore-artifact/1",
    "model": {"arch": "tiny-conv-1", "config": {"layers": 1}, "params": None, "checkpoint_sha256": None, "metrics": {}},
    "io": {"in_channels": 3, "out_channels": 3, "scale": 1, "size_multiple": 1, "value_range": [0, 1],
           "normalisation": {"mean": [0.0] * 3, "std": [1.0] * 3}, "layout": "NCHW", "color": "RGB"},
    "tiling": {"tile": 64, "overlap": 16}, "shapes": {"tile": None, "batch": {"min": 1, "opt": 2, "max": 4}},
    "files": {"onnx": "model.onnx"},
}
IMAGE = (np.random.default_rng(0).random((20, 18, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    root = tmp_path_factory.mktemp("meta")
    directory = write_conv_artifact(root / "artifact", layers=1, tile=None, overlap=4, batch=2)
    (root / "other").mkdir()
    (root / "other" / "model.onnx").write_bytes((directory / "model.onnx").read_bytes())
    return directory


def with_field(doc, path, value):
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


DELETE = object()
# name -> (document or (field path, value) applied to the tiny artifact's metadata, field named in the error)
CASES = {
    "top level a list": ([1, 2], "top level"),
    "top level a string": ("restore-artifact/1", "top level"),
    "top level null": (None, "top level"),
    "io null": ((("io",), None), "io"),
    "files null": ((("files",), None), "files"),
    "file name a number": ((("files", "onnx"), 7), "files: onnx"),
    "tiling a string": ((("tiling",), "x"), "tiling"),
    "overlap a string": ((("tiling", "overlap"), "16"), "tiling.overlap"),
    "overlap as big as the tile": ((("tiling", "overlap"), 64), "tiling.overlap"),
    "overlap past half the tile": ((("tiling", "overlap"), 33), "tiling.overlap"),
    "batch a string": ((("shapes", "batch", "opt"), "abc"), "shapes.batch.opt"),
    "batch 0": ((("shapes", "batch", "opt"), 0), "shapes.batch.opt"),
    "batch min above max": ((("shapes", "batch", "min"), 9), "shapes.batch"),
    "mean a string": ((("io", "normalisation", "mean"), "0,0,0"), "io.normalisation.mean"),
    "std a string": ((("io", "normalisation", "std"), "1"), "io.normalisation.std"),
    "mean wrong length": ((("io", "normalisation", "mean"), [0.0, 0.0]), "io.normalisation.mean"),
    "std wrong length": ((("io", "normalisation", "std"), [1.0] * 4), "io.normalisation.std"),
    "std 0": ((("io", "normalisation", "std"), [1.0, 0.0, 1.0]), "io.normalisation.std"),
    "std negative": ((("io", "normalisation", "std"), [1.0, -1.0, 1.0]), "io.normalisation.std"),
    "mean NaN": ((("io", "normalisation", "mean"), [0.0, float("nan"), 0.0]), "io.normalisation.mean"),
    "scale x4": ((("io", "scale"), "x4"), "io.scale"),
    "scale -1": ((("io", "scale"), -1), "io.scale"),
    "scale 1000": ((("io", "scale"), 1000), "io.scale"),
    "scale true": ((("io", "scale"), True), "io.scale"),
    "scale 1.5": ((("io", "scale"), 1.5), "io.scale"),
    "tile NaN": ((("tiling", "tile"), float("nan")), "tiling.tile"),
    "tile Infinity": ((("tiling", "tile"), float("inf")), "tiling.tile"),
    "tile huge": ((("tiling", "tile"), 10**30), "tiling.tile"),
    "channels 0": ((("io", "in_channels"), 0), "io.in_channels"),
    "size multiple 0": ((("io", "size_multiple"), 0), "io.size_multiple"),
    "plugin count a string": ((("plugin",), {"count": "5"}), "plugin.count"),
    "plugin name a list": ((("plugin",), {"name": ["x"]}), "plugin.name"),
    "wrong format": ((("format",), "restore-artifact/0"), "format"),
    "no format": ((("format",), DELETE), "format"),
    "parent directory": ((("files", "onnx"), "../other/model.onnx"), "files: onnx"),
    "absolute path": ((("files", "onnx"), "OTHER"), "files: onnx"),
    "empty file name": ((("files", "onnx"), ""), "files: onnx"),
    "checkpoint outside": ((("model", "checkpoint"), "../x.safetensors"), "model.checkpoint"),
    "out channels not the model's": ((("io", "out_channels"), 4), "out_channels"),
    "in channels not the model's": ((("io", "in_channels"), 1), "channels"),
    "mean not the model's channels": ((("io",), {"normalisation": {"mean": [0.5, 0.5], "std": [0.5, 0.5]}}), "io.normalisation"),
}


def write_case(directory, name):
    """Write case ``name`` as the metadata.json of ``directory`` (made by ``case_dir``)."""
    doc, field = CASES[name]
    if isinstance(doc, tuple):
        path, value = doc
        value = str(directory.parent / "other" / "model.onnx") if value == "OTHER" else value
        doc = with_field(PRISTINE, path, value)
    (directory / "metadata.json").write_text(json.dumps(doc))
    return field


@pytest.fixture
def case_dir(artifact, tmp_path):
    """A copy of the tiny artifact whose metadata.json the test replaces."""
    directory = tmp_path / "case"
    directory.mkdir()
    (directory / "model.onnx").write_bytes((artifact / "model.onnx").read_bytes())
    (directory / "metadata.json").write_text(json.dumps(PRISTINE))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.onnx").write_bytes((artifact / "model.onnx").read_bytes())
    return directory


@pytest.mark.parametrize("name", list(CASES))
def test_listed_hostile_metadata_is_one_model_error(case_dir, name):
    field = write_case(case_dir, name)
    with pytest.raises(ModelError) as error:
        Restorer(case_dir, backend="onnxruntime").restore(IMAGE)
    message = str(error.value)
    assert "\n" not in message and str(case_dir) in message
    assert field in message, message


def test_json_nested_100k_deep(case_dir):
    (case_dir / "metadata.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelError, match="nested deeper than"):
        resolve_model(case_dir)
    doc = {"format": "restore-artifact/1"}
    node = doc
    for _ in range(100):  # parses, but deeper than the schema allows
        node["x"] = {}
        node = node["x"]
    (case_dir / "metadata.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="nested deeper than"):
        resolve_model(case_dir)


def test_huge_metadata_file_is_refused_unread(case_dir):
    with open(case_dir / "metadata.json", "w") as f:
        f.write('{"format": "restore-artifact/1", "pad": "')
        f.truncate(64 << 20)  # 64 MB, mostly a hole
    with pytest.raises(ModelError, match="larger than"):
        resolve_model(case_dir)


def test_symlink_leading_out_of_the_artifact(case_dir):
    (case_dir / "model.onnx").unlink()
    os.symlink(case_dir.parent / "other" / "model.onnx", case_dir / "model.onnx")
    with pytest.raises(ModelError, match="outside the artifact folder"):
        resolve_model(case_dir)


def test_the_listed_cases_through_the_cli_are_exit_4(case_dir, kit, tmp_path):
    image = tmp_path / "in.png"
    image.write_bytes(kit.encoded(".png", IMAGE))
    for name in ("top level a list", "parent directory", "std 0"):
        write_case(case_dir, name)
        result = kit.run_cli("restore", "run", image, "-o", tmp_path / "out.png", "--model", case_dir, "--backend", "onnxruntime")
        kit.assert_user_error(result, "restore", 4, case_dir / "metadata.json")
        assert not (tmp_path / "out.png").exists()


def test_shipped_metadata_passes():
    assert resolve_model("default").tiling == {"tile": 256, "overlap": 32, "batch": 4}


PROPERTY = settings(max_examples=int(os.environ.get("RESTORE_PROPERTY_EXAMPLES", 60)), deadline=None,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    return fuzz.MetadataTarget(tmp_path_factory.mktemp("property"))


@PROPERTY
@given(doc=fuzz.mutated_document(SHIPPED) | fuzz.json_values)
def test_generated_metadata_gives_a_model_or_a_model_error(target, doc):
    assert target.check(doc) in ("restored", "refused")


@PROPERTY
@given(doc=fuzz.mutated_document(PRISTINE))
def test_mutated_tiny_metadata_gives_a_model_or_a_model_error(target, doc):
    assert target.check(doc) in ("restored", "refused")
