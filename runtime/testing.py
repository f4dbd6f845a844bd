"""Tiny real models for tests and benchmarks of the runtime (no torch, no training).

``write_conv_artifact`` writes an artifact directory like restore-export's (model.onnx +
metadata.json) holding a small random convolutional net built with onnx.helper: fast to run on
CPU, a known receptive field (radius = number of 3x3 layers), optional x4 pixel-shuffle head.
Needs the ``onnx`` package (restore[train]); the runtime itself does not. ``write_test_video`` makes
real media with PyAV for the video tests and benchmarks.
"""
import contextlib
import json
from pathlib import Path

import numpy as np

from .metadata import ARTIFACT_FORMAT

ONNX_IR_VERSION = 10  # ONNX Runtime 1.31 reads at most IR 13; onnx 1.23 writes 14 by default
ONNX_OPSET = 17


def conv_model(channels=3, layers=2, width=8, scale=1, tile=None, seed=0):
    """A conv-only ONNX ModelProto: ``layers`` 3x3 convs (ReLU between), input + residual.

    ``tile``: fixed H = W (like the exporter's portable graph), or None for dynamic H/W.
    ``layers=0`` gives the identity (cheapest possible model, for memory benchmarks)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    hw = [tile, tile] if tile else ["height", "width"]
    out_hw = [tile * scale, tile * scale] if tile else ["out_height", "out_width"]
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", channels, *hw])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", channels, *out_hw])
    nodes, inits, x = [], [], "input"
    if layers == 0 and scale == 1:
        nodes.append(helper.make_node("Identity", ["input"], ["output"]))
    else:
        cin = channels
        for i in range(layers):
            last = i == layers - 1
            cout = channels * scale * scale if last else width
            weight = rng.normal(0, 0.3 / np.sqrt(9 * cin), (cout, cin, 3, 3)).astype(np.float32)
            inits += [numpy_helper.from_array(weight, f"w{i}"), numpy_helper.from_array(np.zeros(cout, np.float32), f"b{i}")]
            y = f"conv{i}"
            nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [y], pads=[1, 1, 1, 1]))
            if not last:
                nodes.append(helper.make_node("Relu", [y], [f"relu{i}"]))
                y = f"relu{i}"
            x, cin = y, cout
        if scale > 1:
            nodes.append(helper.make_node("DepthToSpace", [x], ["shuffled"], blocksize=scale, mode="CRD"))
            nodes.append(helper.make_node("Resize", ["input", "", "scales"], ["upsampled"], mode="nearest"))
            inits.append(numpy_helper.from_array(np.array([1, 1, scale, scale], np.float32), "scales"))
            nodes.append(helper.make_node("Add", ["upsampled", "shuffled"], ["output"]))
        else:
            nodes.append(helper.make_node("Add", ["input", x], ["output"]))
    graph = helper.make_graph(nodes, "tiny_conv", [inp], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model)
    return model


def write_conv_artifact(directory, channels=3, layers=2, scale=1, tile=64, overlap=16, batch=4, seed=0, width=8):
    """Write model.onnx + metadata.json (the restore-artifact/1 schema) and return the directory."""
    import onnx

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(conv_model(channels, layers, width, scale, tile, seed), str(directory / "model.onnx"))
    metadata = {
        "format": ARTIFACT_FORMAT,
        "model": {"arch": f"tiny-conv-{layers}", "config": {"layers": layers}, "params": None, "checkpoint_sha256": None, "metrics": {}},
        "io": {"in_channels": channels, "out_channels": channels, "scale": scale, "size_multiple": 1, "value_range": [0, 1],
               "normalisation": {"mean": [0.0] * channels, "std": [1.0] * channels}, "layout": "NCHW",
               "color": "RGB" if channels == 3 else "GRAY"},
        "tiling": {"tile": tile or 64, "overlap": overlap},
        "shapes": {"tile": tile, "batch": {"min": 1, "opt": batch, "max": 2 * batch}},
        "files": {"onnx": "model.onnx"},
    }
    (directory / "metadata.json").write_text(json.dumps(metadata, indent=2))
    return directory


def write_test_video(path, frames=12, size=(64, 48), fps=10, codec="libx264", pix_fmt="yuv420p", audio=None, pts=None,
                     rotation=0, colour=None, format=None, seed=0, options=None):
    """A real video made with PyAV: a moving pattern plus noise (so every frame differs).

    ``audio``: an encoder name ("aac", "libopus"...) for a 48 kHz stereo tone alongside;
    ``pts``: explicit timestamps in 1/1000 s (VFR); ``rotation``: display matrix degrees;
    ``colour``: codec-context colour fields (e.g. ``{"color_primaries": 1, ...}``)."""
    from fractions import Fraction

    import av

    w, h = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    target = path if hasattr(path, "write") else str(path)
    with av.open(target, "w", format=format) as out:
        video = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options=options or {})
        video.width, video.height, video.pix_fmt = w, h, pix_fmt
        video.codec_context.time_base = video.time_base = Fraction(1, 1000) if pts is not None else 1 / video.codec_context.framerate
        for field, value in (colour or {}).items():
            setattr(video.codec_context, field, value)
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = out.add_stream(audio, rate=48000, layout="stereo")
        deep = av.VideoFormat(pix_fmt).components[0].bits > 8
        samples = 0
        for i in range(frames):
            base = 127 + 100 * np.sin((x + 3 * i) / 9.0) * np.cos((y - 2 * i) / 7.0)
            rgb = np.clip(base[..., None] + rng.normal(0, 12, (h, w, 3)), 0, 255)
            image = (rgb * 257).astype(np.uint16) if deep else rgb.astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb48le" if deep else "rgb24").reformat(format=pix_fmt)
            frame.pts = pts[i] if pts is not None else i
            frame.time_base = video.codec_context.time_base
            out.mux(video.encode(frame))
            if sound is not None:  # audio up to this frame's end
                until = int(48000 * ((pts[i] / 1000 + 0.1) if pts is not None else (i + 1) / fps))
                while samples + 1024 <= until:
                    t = (samples + np.arange(1024)) / 48000
                    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
                    chunk = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
                    chunk.sample_rate, chunk.pts = 48000, samples
                    out.mux(sound.encode(chunk))
                    samples += 1024
        out.mux(video.encode(None))
        if sound is not None:
            out.mux(sound.encode(None))
    return path


def decodable_frames(path):
    """How many video frames FFmpeg decodes from a file, reading to the end (the container's
    frame count can lie about a cut-off file)."""
    import av

    try:
        with av.open(str(path)) as container:
            count = 0
            for packet in container.demux(container.streams.video[0]):
                try:
                    count += len(packet.decode())
                except av.FFmpegError:
                    break
            return count
    except (av.FFmpegError, IndexError):
        return 0


@contextlib.contextmanager
def loopback_ray_cluster(nodes=2, cpus_per_node=1, env=None, object_store_bytes=100_000_000):
    """A Ray cluster of ``nodes`` nodes on 127.0.0.1 (``ray start --head`` + ``ray start
    --address``), yielding its address; torn down after. It has its own temporary folder (short:
    Ray's socket paths must fit 107 bytes), which tells its processes from any other Ray on the
    machine -- `ray stop` would stop those too. ``env`` needs RAY_AUTH_TOKEN where Ray wants one."""
    import shutil
    import socket
    import subprocess
    import sys
    import tempfile

    ray = str(Path(sys.executable).parent / "ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    common = ["--num-cpus", str(cpus_per_node), "--object-store-memory", str(object_store_bytes), "--node-ip-address", "127.0.0.1",
              "--disable-usage-stats"]
    try:
        subprocess.run([ray, "start", "--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", temp, *common], env=env,
                       check=True, capture_output=True, timeout=300)
        for _ in range(nodes - 1):
            subprocess.run([ray, "start", "--address", f"127.0.0.1:{port}", *common], env=env, check=True, capture_output=True, timeout=300)
        yield f"127.0.0.1:{port}"
    finally:
        _stop_processes_of(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _stop_processes_of(temp):
    """Terminate the processes started with ``temp`` on their command line, and their children."""
    import psutil

    ours = [p for p in psutil.process_iter(["cmdline"]) if any(temp in arg for arg in p.info["cmdline"] or [])]
    for p in list(ours):
        with contextlib.suppress(psutil.NoSuchProcess):
            ours += p.children(recursive=True)
    for p in ours:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(ours, timeout=5)  # some agents ignore SIGTERM
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
