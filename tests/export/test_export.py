"""restore-export on every zoo generator (tiny configs): artifacts, ORT vs torch, plugin graph
surgery, fp16, TensorRT-RTX engines. Exports are shared per model (module-scoped) to keep the
suite short."""
import importlib.util
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from restore.export.exporter import ExportOptions, export_checkpoint
from restore.export.validate import psnr, sample_inputs
from restore.trainer.checkpoint import model_from_checkpoint, save_checkpoint
from restore.trainer.models import SpectralFilter, build_model, list_models

HAS_RTX = importlib.util.find_spec("tensorrt_rtx_bindings") is not None

# Tiny configs of every generator; the tile is the smallest that exercises the whole network.
TINY = {
    # the shipped model's layout: a Fourier block above the bottleneck too (3 plugin nodes) and the
    # deconvolution front end with bank 2 (a 64 tile: one whole window of its spectrum estimate),
    # whose estimate is its own graph
    "fourier-unet": ({"widths": [8, 16], "blocks": 1, "fourier": 2, "level_fourier": 1, "level_grid": 6,
                      "deconv": True, "bank": 2, "detail_gate": True}, 64),
    "gir": ({"widths": [8, 16, 32]}, 32),
    "degan": ({"widths": [4, 8, 16]}, 32),
    "skip-autoencoder": ({"width": 4}, 64),
    "rrdbnet-x1": ({"scale": 1, "num_feat": 8, "num_block": 1, "num_grow": 4}, 32),
    "rrdbnet-x4": ({"scale": 4, "num_feat": 8, "num_block": 1, "num_grow": 4}, 32),
}


def plugin_session(path):
    # onnxruntime-extensions is imported here, not at collection: the GPU machine lacks it, and
    # `pytest -m gpu` there must still collect this file
    return pytest.importorskip("restore.kernels.fourier_bottleneck.ort_op").plugin_session(path)


def arch_of(key):
    return key.split("-x")[0]


def feeds(out, x, dtype=np.float32):
    """A restorer graph's inputs for the tiles ``x`` of one picture: with an estimator graph beside
    it, also the picture's posterior, made by that graph from the same tiles."""
    given = {"input": x.astype(dtype)}
    if (out / "estimator.onnx").is_file():
        estimator = ort.InferenceSession(str(out / "estimator.onnx"), providers=["CPUExecutionProvider"])
        given["posterior"] = estimator.run(None, {"tiles": x})[0]
    return given


def torch_output(model, x):
    """The torch model's output on the tiles ``x`` of one picture (sharing its estimate, if it makes one)."""
    with torch.no_grad():
        t = torch.from_numpy(x)
        return (model(t, model.estimate(t)) if getattr(model, "deconv", None) is not None else model(t)).numpy()


def test_every_zoo_generator_has_a_tiny_config():
    zoo = {n: build_model(n) for n in list_models()}
    generators = {n for n, m in zoo.items() if hasattr(m, "out_channels") and type(m).__module__.startswith("restore.trainer.models")}
    assert generators == {arch_of(k) for k in TINY}


# Models whose one shared export also carries the fp16 graphs (one export per model in all).
WITH_FP16 = {"fourier-unet", "gir"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """key -> (checkpoint path, artifact dir, metadata); exports lazily, once per model."""
    cache = {}

    def get(key):
        if key not in cache:
            config, tile = TINY[key]
            root = tmp_path_factory.mktemp(key)
            torch.manual_seed(0)
            model = build_model({"type": arch_of(key), **config})
            with torch.no_grad():  # blocks that start as the identity (zero weights): exercise them too
                for p in model.parameters():
                    if not p.any():
                        p.normal_(0.0, 0.1)
            ckpt = save_checkpoint(root / "model.pt", model)
            options = ExportOptions(tile=tile, batch=(1, 3), fp16=key in WITH_FP16, target="all")
            metadata = export_checkpoint(ckpt, root / "out", options, log=lambda m: None)
            cache[key] = ckpt, root / "out", metadata
        return cache[key]

    return get


@pytest.mark.parametrize("key", sorted(TINY))
def test_export_writes_artifacts_that_onnxruntime_runs_like_torch(exported, key):
    ckpt, out, metadata = exported(key)
    model = model_from_checkpoint(ckpt)
    tile = metadata["shapes"]["tile"]
    assert json.loads((out / "metadata.json").read_text()) == metadata
    assert metadata["io"]["scale"] == model.scale and metadata["model"]["arch"] == arch_of(key)
    assert sorted(p.name for p in out.iterdir()) == sorted({"metadata.json", *metadata["files"].values()})

    portable = onnx.load(out / "model.onnx")
    assert portable.ir_version <= 13
    assert json.loads({p.key: p.value for p in portable.metadata_props}["restore"]) == metadata
    assert not {n.op_type for n in portable.graph.node} & {"DFT", "STFT", "FourierBottleneck"}

    inputs = sample_inputs(model.in_channels, tile, 3, seed=1)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    plugin = plugin_session(out / "model.plugin.onnx")
    for x in inputs.values():
        expected = torch_output(model, x)
        assert expected.shape == (3, model.out_channels, tile * model.scale, tile * model.scale)
        assert np.abs(session.run(None, feeds(out, x))[0] - expected).max() <= 1e-4
        assert np.abs(plugin.run(None, feeds(out, x))[0] - expected).max() <= 1e-4


def test_the_blur_estimate_is_its_own_graph_once_per_picture(exported):
    """The estimator graph makes one posterior from any number of a picture's tiles, as torch's
    ``estimate``; the restorer graph takes it as "posterior" and has no estimator inside."""
    ckpt, out, metadata = exported("fourier-unet")
    model = model_from_checkpoint(ckpt)
    assert metadata["estimate"] == {"file": "estimator.onnx", "input": "tiles", "output": "posterior", "restorer_input": "posterior",
                                    "tiles": 8, "classes": 1801}
    restorer = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in restorer.get_inputs()][1] == ("posterior", [1, 1801])
    estimator = ort.InferenceSession(str(out / "estimator.onnx"), providers=["CPUExecutionProvider"])
    x = sample_inputs(3, 64, 8, seed=4)["real"]
    for n in (1, 5, 8):
        posterior = estimator.run(None, {"tiles": x[:n]})[0]
        assert posterior.shape == (1, 1801) and abs(posterior.sum() - 1) < 1e-5
        with torch.no_grad():
            assert np.abs(posterior - model.estimate(torch.from_numpy(x[:n])).numpy()).max() < 1e-6
    scopes = [dict((p.key, p.value) for p in n.metadata_props).get("pkg.torch.onnx.name_scopes", "")
              for n in onnx.load(out / "model.onnx").graph.node]
    assert not any("estimator" in scope and "classify" in scope for scope in scopes)


@pytest.mark.parametrize("key", sorted(TINY))
def test_plugin_graph_has_one_node_per_bottleneck_and_no_dft(exported, key):
    ckpt, out, metadata = exported(key)
    filters = [m for m in model_from_checkpoint(ckpt).modules() if isinstance(m, SpectralFilter)]
    graph = onnx.load(out / "model.plugin.onnx").graph
    nodes = [n for n in graph.node if n.op_type == "FourierBottleneck"]
    assert len(nodes) == len(filters) == metadata["plugin"]["count"]
    assert not {n.op_type for n in graph.node} & {"DFT", "STFT"}
    # MatMul only where the model itself multiplies matrices (the deconvolution front end), never
    # in place of a Fourier bottleneck
    scopes = [dict((p.key, p.value) for p in n.metadata_props).get("pkg.torch.onnx.name_scopes", "")
              for n in graph.node if n.op_type == "MatMul"]
    assert all("'deconv'" in scope for scope in scopes)
    initializers = {i.name: i for i in graph.initializer}
    for node, spectral in zip(nodes, filters):
        attrs = {a.name: a.s.decode() for a in node.attribute}
        assert node.domain == "restore"
        assert attrs == {"mode": spectral.mode, "plugin_version": "1", "plugin_namespace": "restore"}
        weight = initializers[node.input[1]]
        assert weight.data_type == onnx.TensorProto.FLOAT and len(weight.dims) == 4 and weight.dims[-1] == 2


@pytest.mark.parametrize("key", sorted(WITH_FP16))
def test_fp16_graphs_stay_within_45_db_of_fp32(exported, key):
    _, out, metadata = exported(key)
    inputs = sample_inputs(3, metadata["shapes"]["tile"], 2, seed=2)
    fp32 = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    fp16 = ort.InferenceSession(str(out / "model.fp16.onnx"), providers=["CPUExecutionProvider"])
    plugin16 = plugin_session(out / "model.fp16.plugin.onnx")
    if key == "fourier-unet":  # the Wiener filter's division asks for fp32 itself
        assert "deconv" in metadata["fp16"]["kept_fp32_modules"]
    assert onnx.load(out / "model.fp16.onnx").graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    for x in inputs.values():
        reference = fp32.run(None, feeds(out, x))[0]
        for session in (fp16, plugin16):
            y = session.run(None, feeds(out, x, np.float16))[0]
            assert y.dtype == np.float16
            assert psnr(reference, y.astype(np.float32)) >= 45.0


@pytest.mark.skipif(not HAS_RTX, reason="tensorrt_rtx_bindings not installed")
@pytest.mark.parametrize("key", ["fourier-unet", "gir", "degan", "rrdbnet-x4"])
def test_engine_built_by_tensorrt_rtx_from_the_plugin_graph(exported, key):
    _, out, metadata = exported(key)
    fp16 = key in WITH_FP16
    engine = metadata["engine"]
    assert engine["builder"] == "tensorrt-rtx"
    assert engine["source"] == ("model.fp16.plugin.onnx" if fp16 else "model.plugin.onnx")
    assert (out / engine["file"]).stat().st_size == engine["bytes"] > 0
    assert engine["profile"] == {"batch": [1, 3, 3], "tile": [metadata["shapes"]["tile"]] * 3}


@pytest.mark.skipif(not HAS_RTX, reason="tensorrt_rtx_bindings not installed")
def test_engine_built_by_tensorrt_rtx_from_the_portable_graph(exported, tmp_path):
    from restore.export.trt_build import build_engine

    _, out, metadata = exported("fourier-unet")
    tile = metadata["shapes"]["tile"]
    info = build_engine(out / "model.fp16.onnx", tmp_path / "portable.engine", batch=(1, 2, 3), tile=(tile,) * 3, progress=False)
    assert info["builder"] == "tensorrt-rtx" and (tmp_path / "portable.engine").stat().st_size == info["bytes"] > 0


def test_failed_validation_leaves_no_output_directory(exported, tmp_path, monkeypatch):
    from restore.export import validate
    from restore.runtime.errors import ModelError

    ckpt, _, _ = exported("gir")
    monkeypatch.setattr(validate, "FP32_TOLERANCE", 0.0)  # no float graph matches torch to 0
    with pytest.raises(ModelError, match="validation failed"):
        export_checkpoint(ckpt, tmp_path / "out", ExportOptions(tile=32, batch=(1, 2), target="onnx"), log=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_values_beyond_fp16_make_an_fp32_island_that_keeps_the_output(tmp_path):
    """A bottleneck whose inside reaches ~1e6 (its output does not): exported fp16 as measured,
    the whole FourierBottleneck becomes an fp32 island and the output stays right; without the
    island the fp16 graph is wrong."""
    from restore.export.fp16 import activation_peaks, fp32_islands
    from restore.export.onnx_export import trace_to_onnx
    from restore.export.spectral import probe_plane_shapes

    torch.manual_seed(0)
    model = build_model({"type": "fourier-unet", "widths": [8, 16], "blocks": 1, "fourier": 1}).eval()
    block = model.bottleneck[0]
    with torch.no_grad():
        block.proj_in.weight *= 1e5
        block.proj_in.bias *= 1e5
        block.proj_out.weight *= 1e-5
    probe_plane_shapes(model, 32, 3)
    inputs = sample_inputs(3, 32, 2, seed=3)
    islands = fp32_islands(activation_peaks(model, [torch.from_numpy(x) for x in inputs.values()]))
    assert islands == ["bottleneck.0"]

    def fp16_psnr(fp32_modules):
        proto = trace_to_onnx(model, "matmul", 32, (1, 2), half=True, fp32_modules=fp32_modules)
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        x = inputs["real"]
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        y = session.run(None, {"input": x.astype(np.float16)})[0].astype(np.float32)
        return psnr(expected, np.nan_to_num(y, nan=1e3, posinf=1e3, neginf=-1e3))

    assert fp16_psnr(islands) >= 45.0
    assert fp16_psnr([]) < 30.0
