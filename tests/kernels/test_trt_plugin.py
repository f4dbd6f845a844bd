"""The FourierBottleneck plugin registered with TensorRT-RTX: a graph with the node parses, and a
real fp32 / fp16 engine with an optimization profile is built on this CPU-only machine."""
import subprocess
import sys
from pathlib import Path

import pytest

trt = pytest.importorskip("tensorrt_rtx_bindings")
pytest.importorskip("onnx")

from restore.kernels.fourier_bottleneck import plugin_graph, trt_plugin  # noqa: E402


def test_creator_is_registered_under_the_exporters_name():
    creator = trt_plugin.register_trt_plugin(trt)
    assert trt_plugin.register_trt_plugin(trt) is creator
    found = trt.get_plugin_registry().get_creator("FourierBottleneck", "1", "restore")
    assert found is not None
    assert (creator.name, creator.plugin_version, creator.plugin_namespace) == ("FourierBottleneck", "1", "restore")


def test_parser_can_open_the_unversioned_runtime_library():
    link = trt_plugin.ensure_rtx_parser_can_open_runtime(trt)
    assert link is not None and link.name == "libtensorrt_rtx.so" and link.exists()


@pytest.mark.parametrize("fp16", [False, True])
@pytest.mark.parametrize("mode", ["spectral", "gir"])
def test_engine_with_the_plugin_is_built(fp16, mode):
    model, _weights = plugin_graph.make_plugin_graph(channels=4, height=32, width=32, mode=mode, fp16=fp16)
    engine, plugin_layers = plugin_graph.build_engine(trt, model, (1, 4, 32, 32), (2, 4, 32, 32), (8, 4, 32, 32))
    assert plugin_layers == ["fourier_bottleneck"]
    assert len(engine) > 10_000
    # TensorRT-RTX cannot deserialize without a GPU (so no engine inspector here): the plugin's
    # name and its serialized "mode" field are in the engine bytes.
    assert b"FourierBottleneck" in engine and mode.encode() in engine


def test_unknown_mode_fails_the_parse_with_a_message_not_an_abort():
    model, _ = plugin_graph.make_plugin_graph(mode="blur")
    with pytest.raises(RuntimeError, match="Could not create the plugin"):
        plugin_graph.parse_plugin_graph(trt, model)


def test_a_fresh_process_builds_without_aborting(tmp_path):
    """The original failure was a process abort inside parser.parse: run the whole path in a child."""
    script = (
        "import tensorrt_rtx_bindings as trt\n"
        "from restore.kernels.fourier_bottleneck import plugin_graph\n"
        "model, _ = plugin_graph.make_plugin_graph(channels=2, height=16, width=16)\n"
        "engine, layers = plugin_graph.build_engine(trt, model, (1, 2, 16, 16), (1, 2, 16, 16), (4, 2, 16, 16))\n"
        f"open({str(tmp_path / 'e.engine')!r}, 'wb').write(engine)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Path(tmp_path / "e.engine").stat().st_size > 10_000
