"""restore bench on a CPU at tiny sizes, the FLOP counter, the peers, the Real-ESRGAN tiler."""
import json
import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from click.testing import CliRunner  # noqa: E402
from torch import nn  # noqa: E402

import restore.benchmarks.peers  # noqa: E402,F401  (registers the peers)
from restore.benchmarks.cli import bench  # noqa: E402
from restore.benchmarks.esrgan_tiler import cells, restore_esrgan_style, seam_ratio_at  # noqa: E402
from restore.benchmarks.flops import count_model  # noqa: E402
from restore.benchmarks.harness import STAGES, overlap_efficiency  # noqa: E402
from restore.runtime.errors import ConfigError  # noqa: E402
from restore.trainer.models import build_model, count_parameters  # noqa: E402


def test_cli_writes_table_json_and_png(tmp_path):
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    result = CliRunner().invoke(bench, ["--model", "fourier-unet", "--backend", "torch", "--size", "32x24", "--tile", "0,16", "--frames", "2",
                                        "--warmup", "1", "--device", "cpu", "--json", str(out_json), "--plot", str(out_png)])
    assert result.exit_code == 0, result.output
    assert "p50 ms" in result.output and "fourier-unet" in result.output and "TFLOP/s" in result.output
    report = json.loads(out_json.read_text())
    assert report["format"] == "restore-bench/1"
    assert report["rates"]["matmul_tflops"] > 0 and report["rates"]["bandwidth_gbs"] > 0
    whole, tiled = report["results"]
    assert whole["tile"] is None and tiled["tile"] == 16
    for r in (whole, tiled):
        assert "error" not in r
        assert r["output_shape"] == [24, 32, 3]
        assert set(r["latency_ms"]) >= {"p50", "p95", "p99"}
        assert r["latency_ms"]["p50"] <= r["latency_ms"]["p99"]
        assert r["fps"] > 0 and math.isclose(r["megapixels_per_s"], r["fps"] * 32 * 24 / 1e6)
        assert set(r["stages_ms"]) == set(STAGES)
        assert r["stages_ms"]["compute"] > 0 and r["stages_ms"]["decode"] > 0 and r["stages_ms"]["encode"] > 0
        assert r["peak_host_rss_mb"] > 0 and r["peak_device_mb"] is None  # no GPU here
        assert r["flops_per_pixel"] > 0 and r["achieved_tflops"] > 0
        assert r["floor"]["floor_ms"] > 0 and r["floor"]["compute_over_floor"] > 0
    assert whole["stages_ms"]["stitch"] is None  # whole frames: no stitching (n/a)
    assert tiled["stages_ms"]["stitch"] is not None and tiled["tiles_per_frame"] > 1
    assert tiled["flops_per_frame"] > whole["flops_per_frame"]  # overlapping tiles recompute pixels
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_rejects_unknown_model_before_running():
    result = CliRunner().invoke(bench, ["--model", "no-such-net", "--size", "32x24", "--device", "cpu"])
    assert isinstance(result.exception, ConfigError) and result.exception.exit_code == 7
    assert "no-such-net" in str(result.exception)


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.point = nn.Conv2d(8, 4, 1)
        self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)
        self.linear = nn.Linear(24, 5)

    def forward(self, x):
        y = self.up(self.point(torch.relu(self.conv(x))))  # (1, 2, 20, 24)
        spectrum = torch.fft.rfft2(y)
        return self.linear(y) + spectrum.abs().sum()


def test_flop_counter_matches_hand_count():
    # Input (1, 3, 10, 12): 120 pixels.
    conv = 8 * 120 * (3 * 3 * 3)  # MACs: each output element sums 27 products
    point = 4 * 120 * 8
    up = (4 * 120) * (2 * 2 * 2)  # each input element scattered into Cout x 2 x 2 outputs
    linear = (2 * 20) * 24 * 5
    fft = 2 * 2.5 * 480 * math.log2(480)  # two real 20x24 planes
    expected = 2 * (conv + point + up + linear) + int(fft)
    for device in ("meta", "cpu"):
        count = count_model(TinyNet(), (1, 3, 10, 12), device=device)
        assert abs(count.flops - expected) <= 2, (device, count.by_op)
    assert count.by_op["convolution"] == 2 * (conv + point + up)
    # bytes of the first conv alone: input + weight + output, fp32
    first = count_model(nn.Conv2d(3, 8, 3, padding=1), (1, 3, 10, 12))
    assert first.bytes_moved == 4 * (3 * 120 + 8 * 27 + 8 * 120)
    assert count_model(nn.Conv2d(3, 8, 3, padding=1), (1, 3, 10, 12), torch.float16).bytes_moved == first.bytes_moved // 2


@pytest.mark.parametrize("name,size,params", [("nafnet", 32, 17.11e6), ("mimo-unet", 16, 6.81e6), ("deeprft", 16, None)])
def test_peers_build_and_run(name, size, params):
    torch.manual_seed(0)
    model = build_model(name).eval()
    assert model.arch == name and model.scale == 1 and size % model.size_multiple == 0
    if params:  # the papers' configurations: NAFNet-32 17.11 M, MIMO-UNet 6.8 M parameters
        assert abs(count_parameters(model) - params) / params < 0.01
    x = torch.rand(1, 3, size, size + model.size_multiple)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    if name != "nafnet":
        with torch.no_grad():
            outputs = model.forward_all(x)
        assert [tuple(o.shape[-2:]) for o in outputs] == [(size // 4, x.shape[-1] // 4), (size // 2, x.shape[-1] // 2), (size, x.shape[-1])]


def test_deeprft_frequency_branch_is_global():
    """A Res FFT-ReLU block couples distant pixels (a plain ResBlock of two 3x3 convs cannot)."""
    from restore.benchmarks.peers import ResBlock, ResFFTReLUBlock

    torch.manual_seed(0)
    x = torch.rand(1, 4, 16, 16)
    poked = x.clone()
    poked[..., 0, 0] += 1.0
    for block, reaches in ((ResFFTReLUBlock(4), True), (ResBlock(4), False)):
        with torch.no_grad():
            far = (block(poked) - block(x))[..., 10:, 10:].abs().max().item()
        assert (far > 1e-4) == reaches


def test_esrgan_tiler_reconstructs_conv_model_interior():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)).eval()
    image = np.random.default_rng(0).random((45, 58, 3), dtype=np.float32)

    def infer(batch):
        with torch.no_grad():
            return model(torch.from_numpy(batch)).numpy()

    whole = infer(image.transpose(2, 0, 1)[None].copy())[0].transpose(1, 2, 0)
    tiled = restore_esrgan_style(infer, image, tile=16, tile_pad=10)
    # receptive radius 3 <= tile_pad: every kept pixel saw exactly the context it sees whole
    np.testing.assert_allclose(tiled[4:-4, 4:-4], whole[4:-4, 4:-4], atol=1e-5)
    # with too little context the cells disagree at their boundaries: a seam the measure sees
    poor = restore_esrgan_style(infer, image, tile=16, tile_pad=0)
    starts = [s for s, _ in cells(45, 16)[1:]], [s for s, _ in cells(58, 16)[1:]]
    assert np.abs(poor - whole).max() > 1e-3
    assert seam_ratio_at(poor - whole, *starts) > 5 * seam_ratio_at(tiled - whole + 1e-3 * image, *starts)


def test_esrgan_tiler_respects_size_multiple():
    calls = []

    def infer(batch):
        calls.append(batch.shape)
        assert batch.shape[2] % 8 == 0 and batch.shape[3] % 8 == 0
        return batch * 2

    image = np.random.default_rng(1).random((30, 37, 3), dtype=np.float32)
    out = restore_esrgan_style(infer, image, tile=16, tile_pad=10, multiple=8)
    np.testing.assert_allclose(out, image * 2, rtol=1e-6)
    assert len(calls) == len(cells(30, 16)) * len(cells(37, 16))


def test_overlap_efficiency():
    assert overlap_efficiency([1.0, 5.0, 1.0], 5.0) == 1.0  # copies fully hidden
    assert overlap_efficiency([1.0, 5.0, 1.0], 7.0) == 0.0  # back to back
    assert overlap_efficiency([1.0, 5.0, 1.0], 6.0) == pytest.approx(0.5)
    assert overlap_efficiency([None, 5.0, None], 5.0) is None


def test_gpu_matrix_runs_end_to_end_on_cpu(tmp_path):
    from restore.benchmarks import gpu_matrix

    rc = gpu_matrix.main(["--device", "cpu", "--models", "fourier-unet", "--sizes", "32x24", "--frames", "1",
                          "--warmup", "0", "--stream-frames", "2", "--out", str(tmp_path)])
    assert rc == 0
    (written,) = tmp_path.glob("*.json")
    report = json.loads(written.read_text())
    assert written.with_suffix(".png").is_file()
    assert report["per_frame"]["results"][0]["fps"] > 0
    assert report["streaming"][0]["fps"] > 0
    assert report["video_codec"][0]["decoded_frames"] > 0
    assert {"feathered", "esrgan"} <= set(report["tiling"])
    assert "targets" in report


def test_cli_defaults_bench_the_shipped_model_through_the_runtime(tmp_path, monkeypatch):
    """No model/backend/output options: the shipped model, the runtime's own backend choice,
    JSON and PNG written here under new names (an earlier run's files are kept)."""
    monkeypatch.chdir(tmp_path)
    earlier = tmp_path / f"restore-bench-cpu-{__import__('datetime').date.today().isoformat()}.json"
    earlier.write_text("an earlier run")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning may leak (matplotlib's included)
        result = CliRunner().invoke(bench, ["--device", "cpu", "--size", "64x48", "--frames", "1", "--warmup", "0"])
    assert result.exit_code == 0, result.output
    assert earlier.read_text() == "an earlier run"
    out_json = earlier.with_name(earlier.stem + "-2.json")
    report = json.loads(out_json.read_text())
    (record,) = report["results"]
    assert record["model"] == "default" and record["backend"] == "auto" and "error" not in record
    assert record["backend_picked"] in ("onnxruntime", "openvino") and record["backend_choice"].startswith("auto picked")
    assert record["output_shape"] == [48, 64, 3] and record["fps"] > 0
    assert report["device"]["name"] and report["rates"] is None  # no torch case: no floor to measure
    assert out_json.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "auto picked" in result.output


def test_cli_all_cases_failed_says_so_and_writes_no_plot(tmp_path):
    out_json, out_png = tmp_path / "b.json", tmp_path / "b.png"
    result = CliRunner().invoke(bench, ["--backend", "tensorrt", "--device", "cpu", "--size", "64x48", "--frames", "1",
                                        "--json", str(out_json), "--plot", str(out_png)])
    assert result.exception.exit_code == 8
    assert "nothing was measured" in str(result.exception) and "the other" not in str(result.exception)
    assert json.loads(out_json.read_text())["results"][0]["error"]
    assert not out_png.exists()


def test_vsmlrt_cut_lines_and_sample_frames():
    from restore.benchmarks.vsmlrt import peer_lines, sample_frames

    # 640 px, tiles of 256 stepping 224, the last aligned to the end: starts 0, 224, 384
    assert peer_lines(640) == [240, 400, 464]
    assert peer_lines(256) == []
    (frame,) = sample_frames(640, 360)
    assert frame.shape == (360, 640, 3) and frame.dtype == np.float32 and 0 <= frame.min() and frame.max() <= 1
    assert frame.std() > 0.05  # a photo, not a blank
    from restore.runtime import Restorer

    with Restorer("default", backend="onnxruntime", device="cpu") as r:
        assert np.abs(r.restore(frame) - frame).mean() * 255 > 1  # blurred: the model has something to undo


def test_vsmlrt_worker_runs_the_shipped_model_like_our_runtime(tmp_path):
    """Where vs-mlrt's venv exists (made by the benchmark), its plugin's output on one frame is the
    shipped model's: close to ours except near its crop lines."""
    from restore.benchmarks import vsmlrt
    from restore.runtime import Restorer

    exe = vsmlrt.cache_venv_python()
    if not exe.exists():
        pytest.skip("vs-mlrt's venv not made on this machine (python -m restore.benchmarks.vsmlrt makes it)")
    frames = vsmlrt.sample_frames(300, 260)
    with Restorer("default", backend="onnxruntime", device="cpu") as r:
        ours = r.restore(frames[0])
    graph = vsmlrt.self_contained(r.source, tmp_path).onnx  # one input: the blur estimated per tile
    ms, (theirs,), info = vsmlrt.run_peer(exe, frames, graph, 2, 1, tmp_path)
    assert ms > 0 and info["ort_plugin"]["onnxruntime_version"]
    mse = np.mean((np.clip(theirs, 0, 1) - np.clip(ours, 0, 1)) ** 2)
    assert 10 * np.log10(1 / mse) > 30


def test_shake_kernel_forms():
    from restore.benchmarks.shake_kernels import curve_bank, nearest, point_reflection, zero_phase
    from restore.trainer.degradations import trajectory_kernel

    k = trajectory_kernel(np.random.default_rng(0), size=39, length=25, anxiety=0.5).astype(np.float64)
    assert np.abs(k - point_reflection(k)).max() > 1e-3  # a curve is not point-symmetric
    z = zero_phase(k)  # |K| kept, the phase dropped: point-symmetric, same total
    assert np.allclose(np.abs(np.fft.fft2(np.fft.ifftshift(z))), np.abs(np.fft.fft2(np.fft.ifftshift(k))), atol=1e-9)
    assert np.allclose(z, point_reflection(z), atol=1e-12) and abs(z.sum() - 1) < 1e-6
    bank = curve_bank(5, 39)
    assert bank.shape == (5, 39 * 39) and np.allclose(bank.sum(1), 1, atol=1e-5)
    assert all(np.allclose(b.reshape(39, 39), point_reflection(b.reshape(39, 39))) for b in bank)
    assert np.array_equal(nearest(bank, bank[3].reshape(39, 39) + 1e-4), bank[3].reshape(39, 39))


def test_kernel_choice_rule_and_summary():
    from restore.benchmarks.kernel_choice import BAND, SPARSER, choose, summary

    unsure = (BAND[0] + BAND[1]) / 2
    assert choose(True, unsure, 1.0)
    assert not choose(False, unsure, 1.0)  # an estimate that is not trusted
    assert not choose(True, BAND[0] / 2, 1.0)  # a sharp picture: its kernel is a trusted point
    assert not choose(True, BAND[1], 1.0)  # the bank is sure: its kernel is the better one
    assert not choose(True, unsure, SPARSER + 0.01)  # the blind kernel rings where the bank's does not
    rows = [{"kind": "shake", "chosen": c, "gain_db": {"as shipped": a, "chosen": b}}
            for c, a, b in ((True, 0.0, 2.0), (False, 0.5, 0.5))]
    assert summary(rows) == {"shake": {"crops": 2, "chosen": 1, "mean as shipped": 0.25, "worst as shipped": 0.0,
                                       "mean chosen": 1.25, "worst chosen": 0.5}}


def test_outside_photo_cases():
    from restore.benchmarks.outside_photo import NOISE, cases

    made = cases()
    assert [name.split(",")[0] for name, _, _ in made][-2:] == ["upscaled 3x", "sharp (noise only)"]
    for name, gt, lq in made:
        assert gt.shape == lq.shape and lq.dtype == np.float32 and 0 <= lq.min() and lq.max() <= 1
    _, gt, lq = made[-1]  # the sharp photo: only the noise
    assert abs(float((lq - gt).std()) - NOISE) < 1e-3
    assert made[-2][1].shape[:2] == tuple(3 * s for s in gt.shape[:2])
    assert all(float(np.abs(lq - gt).mean()) > 0.01 for _, gt, lq in made[:3])  # the shakes blur


def test_calibration_reports_the_gain_as_shipped_and_at_full_strength(tmp_path, monkeypatch):
    from restore.benchmarks.calibration import main
    from restore.trainer import holdout
    from restore.trainer.checkpoint import save_checkpoint

    crops = holdout.field_crops(crop=128)[:6]  # the benchmark's own protocol, fewer and smaller crops
    monkeypatch.setattr(holdout, "field_crops", lambda: crops)
    monkeypatch.setattr(holdout, "holdout_crops", lambda: crops[:2])
    torch.manual_seed(0)
    spec = {"type": "fourier-unet", "widths": [8, 16], "blocks": 1, "fourier": 1, "norm": "none", "deconv": True, "bank": 2,
            "detail_gate": True}
    model = build_model(spec)
    with torch.no_grad():  # a correction the backoff visibly scales
        model.deconv_gate.fill_(0.5)
    reports = {}
    for ramp in ([0.0, 0.01], [0.99999, 1.0]):  # this untrained estimator's confidence is about 0.9994 everywhere
        shipped = build_model({**spec, "backoff": ramp})
        shipped.load_state_dict(model.state_dict())
        ckpt = save_checkpoint(tmp_path / f"{ramp[0]}.safetensors", shipped)
        out = tmp_path / f"{ramp[0]}.json"
        assert main([str(ckpt), "--out", str(out)]) == 0
        reports[ramp[0]] = json.loads(out.read_text())
        assert out.with_suffix(".png").stat().st_size > 10_000
    opened, shut = reports[0.0]["crops"], reports[0.99999]["crops"]
    assert len(opened) == len(shut) == reports[0.0]["summary"]["crops"] == 8
    for a, b in zip(opened, shut):
        assert abs(a["gain_db"] - a["gain_full_strength_db"]) < 1e-3, a  # scaled by 1: as shipped is full strength
        assert b["gain_db"] == 0 and b["gain_full_strength_db"] == a["gain_full_strength_db"], b  # scaled by 0
        assert a["gain_full_strength_db"] != 0


def test_field_draws_redraws_the_protocol_and_names_every_crop_below_the_bound(tmp_path, monkeypatch):
    from restore.benchmarks.field_draws import main
    from restore.trainer import holdout
    from restore.trainer.checkpoint import save_checkpoint

    drawn = holdout.field_crops

    def few(images, crop, seed):  # the protocol itself, fewer and smaller crops
        return drawn(images[:1], crop=128, seed=seed)[:4]

    monkeypatch.setattr(holdout, "field_crops", few)
    torch.manual_seed(0)
    model = build_model({"type": "fourier-unet", "widths": [8, 16], "blocks": 1, "fourier": 1, "norm": "none", "deconv": True,
                         "bank": 2, "detail_gate": True, "backoff": [0.0, 0.01]})
    with torch.no_grad():  # an untrained correction: some crops lose
        model.deconv_gate.fill_(0.5)
    ckpt = save_checkpoint(tmp_path / "m.safetensors", model)
    out = tmp_path / "draws.json"
    assert main([str(ckpt), "--seeds", "5,6", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["command"] == f"python -m restore.benchmarks.field_draws {ckpt} --seeds 5,6 --out {out}"
    crops = report["crops"]
    assert [(r["pictures"], r["seed"]) for r in crops] == [(p, s) for p in ("holdout", "train") for s in (5, 6) for _ in range(4)]
    by_seed = {s: [r["blur"] for r in crops if r["seed"] == s and r["pictures"] == "holdout"] for s in (5, 6)}
    assert by_seed[5] != by_seed[6]  # another seed, another draw
    below = sorted(f"{r['name']} seed {r['seed']}" for r in crops if r["gain_db"] < report["bound_db"])
    listed = sorted(n.split(" (")[0] for kinds in report["summary"].values() for k in kinds.values() for n in k["worse_than_bound"])
    assert listed == below and sum(k["crops"] for kinds in report["summary"].values() for k in kinds.values()) == 16
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_a_results_file_names_the_command_run_from_the_shell(monkeypatch):
    from restore.benchmarks.report import command_line

    monkeypatch.setattr("sys.argv", ["field_draws.py", "runs/my run/final.safetensors", "--seeds", "1"])
    assert command_line("field_draws", None) == "python -m restore.benchmarks.field_draws 'runs/my run/final.safetensors' --seeds 1"
    assert command_line("field_draws", []) == "python -m restore.benchmarks.field_draws"


def test_ort_profile_counts_the_graphs_flops_per_operator(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from restore.benchmarks.ort_profile import main

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.random((16, 3, 3, 3), dtype=np.float32), "w"),
               numpy_helper.from_array(rng.random((128, 64), dtype=np.float32), "m")]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("MatMul", ["c", "m"], ["output"])],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 128, 128])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 16, 128, 64])], weights)
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    out = tmp_path / "profile.json"
    assert main([str(path), "--batch", "2", "--threads", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    ops = {row["op"]: row for row in report["ops"]}
    assert ops["Conv"]["gflop"] == pytest.approx(2 * 2 * 16 * 128 * 128 * 3 * 9 / 1e9, rel=0.02)  # 0.028
    assert ops["MatMul"]["gflop"] == pytest.approx(2 * 2 * 16 * 128 * 64 * 128 / 1e9, rel=0.02)  # 0.067
    assert ops["Conv"]["nodes"] == ops["MatMul"]["nodes"] == 1
    assert report["sgemm_gflop_per_s"] > 0 and report["fp32_ceiling"] > 0
