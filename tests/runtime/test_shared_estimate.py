"""One blur estimate per picture: a model with an estimator graph (fourier-unet with its
deconvolution front end, exported by restore-export) gets the estimate of the whole picture from
the estimator graph and every tile is restored with it, on every CPU backend; a video's estimate
follows its frames. A tiny model, really exported and run by ONNX Runtime, OpenVINO and torch."""
import numpy as np
import pytest
import torch

from restore.export.exporter import ExportOptions, export_checkpoint
from restore.runtime.api import Restorer
from restore.runtime.errors import BackendError, ModelError
from restore.runtime.sequence import Sequence
from restore.trainer.checkpoint import save_checkpoint
from restore.trainer.models import build_model

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared")
    torch.manual_seed(0)
    model = build_model({"type": "fourier-unet", "widths": [8, 16], "blocks": 1, "fourier": 1, "norm": "none",
                         "deconv": True, "bank": 2, "detail_gate": True})
    with torch.no_grad():  # let the estimate matter: its Wiener estimates reach the output
        model.deconv_gate.fill_(0.5)
    ckpt = save_checkpoint(root / "model.safetensors", model)
    export_checkpoint(ckpt, root / "out", ExportOptions(tile=64, batch=(1, 4), target="onnx"), log=lambda m: None)
    return root / "out", ckpt


def picture(h=150, w=230):
    import cv2

    base = cv2.resize(RNG.random((h // 8, w // 8, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return (np.clip(base, 0, 1) * 255).astype(np.uint8)


def test_every_cpu_backend_shares_the_pictures_estimate_alike(artifact):
    out, ckpt = artifact
    image = picture()
    results = {}
    for backend, model in (("onnxruntime", out), ("openvino", out), ("torch", ckpt)):
        with Restorer(model, backend=backend, tile=64, overlap=16, precision="fp32") as r:  # alike up to summation order
            assert r.backend.takes_posterior, backend
            results[backend] = r.restore(image).astype(int)
    assert np.abs(results["openvino"] - results["onnxruntime"]).max() <= 1
    assert np.abs(results["torch"] - results["onnxruntime"]).max() <= 1


def test_the_estimate_comes_from_tiles_spread_over_the_picture(artifact):
    out, _ = artifact
    with Restorer(out, backend="onnxruntime", tile=64, overlap=16) as r:
        seen = []
        estimate = r.backend.estimate
        r.backend.estimate = lambda tiles: seen.append(tiles) or estimate(tiles)
        top_dark = picture(300, 300)
        top_dark[:100] = 0
        r.restore(top_dark)
        (tiles,) = seen  # once per picture
        assert len(tiles) == 8 and tiles.shape[1:] == (3, 64, 64)
        assert not tiles[0].any() and tiles[-1].any()  # from the top rows and from the bottom ones
        r.restore(np.zeros((40, 40, 3), np.uint8))
        assert len(seen[1]) == 1  # a picture of one tile


def test_a_backend_refuses_a_batch_without_the_estimate(artifact):
    out, _ = artifact
    with Restorer(out, backend="onnxruntime") as r:
        with pytest.raises(BackendError, match="blur estimate"):
            r.backend.infer(np.zeros((1, 3, 64, 64), np.float32))


def test_a_videos_estimate_follows_its_frames_and_resumes_as_one_run(artifact):
    out, _ = artifact
    a, b = picture(), picture()
    with Restorer(out, backend="onnxruntime", tile=64, overlap=16) as r:
        video = Sequence(hold=False)  # the estimate alone (the held correction: test_sequence.py)
        alone = r.restore(b)
        assert np.array_equal(r.restore(b, sequence=video), alone)  # a first frame: its own estimate
        assert np.array_equal(r.restore(b, sequence=video), alone)  # the same estimate again: the same
        r.restore(a, sequence=video)
        after_a = r.restore(b, sequence=video)
        assert not np.array_equal(after_a, alone)  # the estimate carries the frame before
        assert np.array_equal(r.restore(b, sequence=Sequence(hold=False)), alone)  # a new video starts afresh
        resumed = Sequence(hold=False)
        r.restore(b, sequence=resumed)
        r.restore(b, sequence=resumed)
        r.follow(a, resumed)  # a frame kept from an interrupted run, not restored again
        assert np.array_equal(r.restore(b, sequence=resumed), after_a)


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_missing_or_broken_estimator_graph_is_refused_on_open(tmp_path, artifact, damage):
    import shutil
    import subprocess
    import sys

    import cv2

    out, _ = artifact
    broken = shutil.copytree(out, tmp_path / "model")
    if damage == "missing":
        (broken / "estimator.onnx").unlink()
    else:
        (broken / "estimator.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ModelError, match="no estimator graph" if damage == "missing" else "cannot load this estimator graph"):
        Restorer(broken, backend="onnxruntime")
    cv2.imwrite(str(tmp_path / "in.png"), picture())
    run = subprocess.run([sys.executable, "-m", "restore.runtime", "run", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"),
                          "--model", str(broken), "--backend", "onnxruntime", "-q"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 4 and len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    assert not (tmp_path / "out.png").exists()
