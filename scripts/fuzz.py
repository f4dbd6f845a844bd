"""Fuzz the three parsers a user's files reach: the image header reader (runtime/image_header.py),
the artifact metadata loader (runtime/metadata.py through Restorer) and the checkpoint reader
(trainer/checkpoint.py on .safetensors files), each for a fixed time budget, with hypothesis.

    OMP_NUM_THREADS=1 python scripts/fuzz.py [--seconds 300] [--target image_header metadata checkpoint] [--json OUT]

A run passes when every input ends in a result or in the error the contract allows (None /
"truncated" / "unsupported ..." / a size for the header reader, one-line InputError for the file check, ModelError for metadata, ModelError or InputError for
checkpoints) with no warning; anything else is a crash, reported with its shrunk input. The suite runs it for a few
seconds (tests/reliability/test_fuzz.py); RESTORE_FUZZ_SECONDS sets its budget.
"""
import argparse
import copy
import io
import json
import struct
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

# --- generic strategies --------------------------------------------------------------------------
HOSTILE = [None, True, 0, -1, 1000, 2**63, 1e308, float("nan"), float("inf"), "x4", "16", "", "../other/model.onnx",
           "/etc/passwd", [], {}, [0.0], [1.0, 1.0], "a" * 300]
scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=12) | st.sampled_from(HOSTILE))
# copies: a drawn [] or {} from HOSTILE must not be shared by two places (or grow between cases)
json_values = st.recursive(scalars, lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
                           max_leaves=16).map(copy.deepcopy)


def _spots(node, path=()):
    """Every (container path, key) of a JSON document, in a fixed order."""
    keys = list(node) if isinstance(node, dict) else range(len(node)) if isinstance(node, list) else []
    for key in keys:
        yield path, key
        yield from _spots(node[key], path + (key,))


def _at(doc, path):
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def mutated_document(draw, base):
    """``base`` with 1..4 fields replaced, deleted or added (values from json_values)."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        spots = list(_spots(doc))
        if not spots or draw(st.integers(0, 40)) == 0:
            return draw(json_values)  # the whole document replaced
        path, key = draw(st.sampled_from(spots))
        parent = _at(doc, path)
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "delete":
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(json_values)
        else:
            parent[key] = draw(json_values)
    return doc


@st.composite
def mutated_bytes(draw, seeds):
    """A seed file with byte-level damage: flips, overwritten runs, insertions, cuts."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "set", "insert", "cut", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            run = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(run)] = run
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif action == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            del data[at:]
    return bytes(data)


# --- target 1: image headers ---------------------------------------------------------------------
class ImageHeaderTarget:
    name = "image_header"

    def __init__(self, work):
        import cv2

        rng = np.random.default_rng(0)
        image = (rng.random((9, 13, 3)) * 255).astype(np.uint8)
        self.seeds = [cv2.imencode(s, image)[1].tobytes() for s in (".png", ".jpg", ".tif", ".bmp", ".webp")]
        self.seeds.append(cv2.imencode(".tif", image.astype(np.float32))[1].tobytes())
        self.seeds.append(cv2.imencode(".png", image[..., 0].astype(np.uint16))[1].tobytes())
        self.path = Path(work) / "image.bin"
        prefixes = st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8", b"II*\x00", b"MM\x00*", b"II+\x00", b"BM", b"RIFF\x00\x00\x00\x00WEBP"])
        self.strategy = mutated_bytes(self.seeds) | st.builds(lambda p, rest: p + rest, prefixes, st.binary(max_size=64))

    def check(self, data):
        from restore.runtime.errors import InputError
        from restore.runtime.image_header import check_image_file, read_image_size

        size = read_image_size(io.BytesIO(data))
        assert size is None or isinstance(size, str) or (len(size) == 2 and all(isinstance(v, int) and v >= 0 for v in size)), size
        self.path.write_bytes(data)
        try:
            check_image_file(self.path)
        except InputError as e:
            assert "\n" not in str(e)
            return "refused"
        return "accepted"


# --- target 2: artifact metadata -----------------------------------------------------------------
class MetadataTarget:
    name = "metadata"

    def __init__(self, work):
        from restore.runtime.artifact import DEFAULT_MODEL_DIR
        from restore.runtime.testing import write_conv_artifact

        self.dir = write_conv_artifact(Path(work) / "artifact", layers=1, tile=None, overlap=4, batch=2)
        self.tiny = json.loads((self.dir / "metadata.json").read_text())
        self.shipped = json.loads((DEFAULT_MODEL_DIR / "metadata.json").read_text())
        (Path(work) / "other").mkdir(exist_ok=True)
        (Path(work) / "other" / "model.onnx").write_bytes((self.dir / "model.onnx").read_bytes())
        texts = [json.dumps(self.tiny).encode(), json.dumps(self.shipped).encode()]
        self.strategy = (mutated_document(self.tiny) | mutated_document(self.shipped) | json_values
                         | st.builds(lambda b: ("raw", b), mutated_bytes(texts)))
        self.image = (np.random.default_rng(1).random((20, 18, 3)) * 255).astype(np.uint8)

    def check(self, doc):
        from restore.runtime.api import Restorer
        from restore.runtime.errors import ModelError

        if isinstance(doc, tuple) and doc[:1] == ("raw",):
            data = doc[1]
        else:
            data = json.dumps(doc).encode()
        (self.dir / "metadata.json").write_bytes(data)
        try:
            with Restorer(self.dir, backend="onnxruntime") as restorer:
                out = restorer.restore(self.image)
        except ModelError as e:
            assert "\n" not in str(e)
            return "refused"
        assert out.shape == (20 * restorer.scale, 18 * restorer.scale, 3) and out.dtype == np.uint8
        return "restored"


# --- target 3: checkpoint (safetensors) headers ----------------------------------------------------
class CheckpointTarget:
    name = "checkpoint"

    def __init__(self, work):
        import torch

        from restore.trainer.checkpoint import save_checkpoint
        from restore.trainer.models import build_model

        torch.manual_seed(0)
        self.path = Path(work) / "model.safetensors"
        save_checkpoint(self.path, build_model("fourier-unet", widths=[4, 8], blocks=1, fourier=1))
        self.seed = self.path.read_bytes()
        (length,) = struct.unpack("<Q", self.seed[:8])
        header = json.loads(self.seed[8 : 8 + length])
        self.description = json.loads(header["__metadata__"]["restore"])
        self.header, self.body = header, self.seed[8 + length :]
        self.strategy = (st.builds(lambda d: ("description", d), mutated_document(self.description))
                         | st.builds(lambda h: ("header", h), mutated_document(header))
                         | st.builds(lambda b: ("raw", b), mutated_bytes([self.seed[: 8 + length + 64]]).map(lambda b: b + self.body)))

    def check(self, case):
        from restore.runtime.errors import InputError, ModelError
        from restore.trainer.checkpoint import model_from_checkpoint

        kind, value = case
        if kind == "raw":
            data = value
        else:
            header = copy.deepcopy(self.header)
            if kind == "description":
                header["__metadata__"]["restore"] = json.dumps(value)
            else:
                header = value
            text = json.dumps(header).encode()
            data = struct.pack("<Q", len(text)) + text + self.body
        self.path.write_bytes(data)
        try:
            model_from_checkpoint(self.path)
        except (ModelError, InputError) as e:
            assert "\n" not in str(e)
            return "refused"
        return "built"


TARGETS = {t.name: t for t in (ImageHeaderTarget, MetadataTarget, CheckpointTarget)}


def fuzz(name, seconds, chunk=50, log=print):
    """Run target ``name`` for ``seconds``; returns {executions, outcomes, crashes: [{error, where, input}]}."""
    with tempfile.TemporaryDirectory(prefix="restore-fuzz-") as work:
        target = TARGETS[name](work)
        count, outcomes, crashes, seen = [0], Counter(), [], set()
        end = time.monotonic() + seconds
        start = time.monotonic()
        while time.monotonic() < end:
            @settings(max_examples=chunk, deadline=None, database=None, phases=[Phase.generate, Phase.shrink],
                      suppress_health_check=list(HealthCheck))
            @given(target.strategy)
            def case(value):
                count[0] += 1
                with warnings.catch_warnings():
                    warnings.simplefilter("error")  # a stray warning is a crash too
                    outcomes[target.check(value)] += 1

            try:
                case()
            except Exception as group:  # a crash: keep one per (kind, place); hypothesis groups distinct ones
                for e in getattr(group, "exceptions", [group]):
                    frame = traceback.extract_tb(e.__traceback__)[-1]
                    key = (type(e).__name__, frame.filename, frame.lineno)
                    if key not in seen:
                        seen.add(key)
                        shown = repr(getattr(e, "__notes__", None) or "")[:300]
                        crashes.append({"error": f"{type(e).__name__}: {str(e)[:200]}", "where": f"{Path(frame.filename).name}:{frame.lineno}", "input": shown})
                        log(f"{name}: crash {crashes[-1]['error']} at {crashes[-1]['where']}")
        result = {"target": name, "seconds": round(time.monotonic() - start, 1), "executions": count[0],
                  "outcomes": dict(outcomes), "crashes": crashes}
        log(f"{name}: {result['executions']} executions in {result['seconds']} s ({dict(outcomes)}), {len(crashes)} distinct crashes")
        return result


def _cpu():
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="budget per target")
    parser.add_argument("--target", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    results = [fuzz(name, args.seconds) for name in args.target]
    if args.json:
        args.json.write_text(json.dumps({"command": "OMP_NUM_THREADS=1 python scripts/fuzz.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                                         "cpu": _cpu(), "results": results}, indent=2) + "\n")
    return 1 if any(r["crashes"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
