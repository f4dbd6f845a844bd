"""The timing core: run one (model, backend, size, tile, precision) case and measure it.

A case processes ``warmup + frames`` host frames (uint8 HxWx3, RGB) one at a time, host frame in
to host frame out, and times each stage:

  decode   JPEG bytes -> host frame (OpenCV), as a video/image reader would hand frames over
  upload   host frame -> model input (H2D copy of uint8, convert to fp16/fp32, pad to size multiple)
  compute  the model itself (tiles batched through it when tiled)
  download model output -> host uint8 frame (clamp, quantise, D2H copy, crop)
  stitch   tile blending (tiled runs only)
  encode   host frame -> JPEG bytes

Latency per frame is upload..download (decode and encode are reported separately, as a video
pipeline runs them on other threads). On a GPU every stage is bracketed by CUDA events on the
compute stream (the frame is synchronised once, at its end); on a CPU by ``perf_counter``.
A stage a runner does not have is ``None`` (shown as n/a).

Runners: ``TorchRunner`` runs any torch model in-process (our zoo, the peers, checkpoints);
``RestorerRunner`` runs the product runtime's ``Restorer`` (ONNX Runtime / TensorRT / torch
backends), where the per-stage split is whatever the runtime reports.
"""
import math
import os
import time

import cv2
import numpy as np

STAGES = ("decode", "upload", "compute", "download", "stitch", "encode")
LATENCY_STAGES = ("upload", "compute", "download", "stitch")


# ---------------------------------------------------------------- frames and sizes


def parse_size(text):
    """"1920x1080" -> (1920, 1080) (width, height)."""
    from restore.runtime.errors import ConfigError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(text, "not a frame size", "write WIDTHxHEIGHT, e.g. 1920x1080") from None
    if w < 8 or h < 8:
        raise ConfigError(text, "frame size too small", "use at least 8x8")
    return w, h


def synthetic_frame(width, height, seed=0):
    """A deterministic photo-like RGB frame: smooth colour gradients, edges and some texture, so
    JPEG decode/encode cost is realistic (flat or pure-noise frames would flatter or punish it)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin((x + y) / 37.0)], axis=-1)
    frame = (base * 180).astype(np.uint8)
    for _ in range(12):  # rectangles: hard edges
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        cv2.rectangle(frame, (int(x0), int(y0)), (int(x0 + width // 6), int(y0 + height // 6)),
                      tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
    noise = rng.normal(0, 6, frame.shape)
    return np.clip(frame + noise, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- memory


class MemoryProbe:
    """Peak host RSS and peak device memory over one case."""

    def __init__(self, device=None):
        self.device = device
        self._rss_floor = None

    def reset(self):
        # Linux: writing 5 to clear_refs resets VmHWM, so each case gets its own peak.
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        if self._cuda():
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            free, total = torch.cuda.mem_get_info(self.device)
            self._device_used_before = total - free

    def host_peak_mb(self):
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        try:
            import psutil

            return psutil.Process().memory_info().rss / 2**20  # current, not peak
        except ImportError:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def device_peak_mb(self):
        """Peak bytes torch allocated during the case; for backends that allocate outside torch
        (ONNX Runtime, TensorRT), the growth of used device memory seen by the driver."""
        if not self._cuda():
            return None
        import torch

        torch.cuda.synchronize(self.device)
        by_torch = torch.cuda.max_memory_allocated(self.device)
        free, total = torch.cuda.mem_get_info(self.device)
        by_driver = max(0, (total - free) - self._device_used_before)
        return max(by_torch, by_driver) / 2**20

    def _cuda(self):
        return self.device is not None and str(self.device).startswith("cuda")


# ---------------------------------------------------------------- clocks


class HostClock:
    """Stage marks with perf_counter (CPU work is synchronous)."""

    def start(self):
        self.marks = [("start", time.perf_counter())]

    def mark(self, name):
        self.marks.append((name, time.perf_counter()))

    def stages_ms(self):
        return {name: (t - self.marks[i][1]) * 1e3 for i, (name, t) in enumerate(self.marks[1:])}


class CudaClock:
    """Stage marks with CUDA events on the current stream; one synchronisation per frame."""

    def __init__(self, device):
        import torch

        self.torch, self.device = torch, device

    def start(self):
        self.marks = []
        self.mark("start")

    def mark(self, name):
        event = self.torch.cuda.Event(enable_timing=True)
        event.record()
        self.marks.append((name, event))

    def stages_ms(self):
        self.marks[-1][1].synchronize()
        return {name: self.marks[i][1].elapsed_time(e) for i, (name, e) in enumerate(self.marks[1:])}


# ---------------------------------------------------------------- runners


class TorchRunner:
    """A torch model on whole frames (or tiles through ``restore.runtime.tiler`` when ``tile``).

    fp16 and bf16 keep the model's declared fp32 islands (``trainer/models/precision.py``). On
    CUDA: cuDNN autotuning, channels-last memory (tensor-core friendly), uint8 uploaded through a
    pinned staging buffer and converted on the device (a quarter of the PCIe bytes of fp32), and
    the model replayed from a CUDA graph (``graphs``; eager when the capture fails, with the reason
    in ``graph_fallback``).
    """

    name = "torch"

    def __init__(self, model, device="cpu", precision="fp32", tile=None, overlap=None, graphs=True):
        import torch

        from restore.runtime.backends.torch import CudaGraphModule
        from restore.trainer.models.precision import half_precision

        self.torch = torch
        self.device = torch.device(device)
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            torch.backends.cudnn.benchmark = True
        self.memory_format = torch.channels_last if self.cuda else torch.contiguous_format
        net = model if self.dtype == torch.float32 else half_precision(model, dtype=self.dtype)
        self.model = net.to(self.device, memory_format=self.memory_format).eval()
        self.graph = CudaGraphModule(torch, self.model) if graphs and self.cuda else None
        self.multiple = getattr(model, "size_multiple", 1) or 1
        self.scale = getattr(model, "scale", 1) or 1
        self.tile, self.overlap = tile, overlap
        self.description = f"torch ({self.device}, {precision}{', CUDA graph' if self.graph else ''})"
        self._staging = None

    def forward(self, x):
        """The model on a device batch (replayed from the CUDA graph when there is one)."""
        return (self.graph or self.model)(x)

    @property
    def graph_fallback(self):
        return self.graph.fallback if self.graph is not None else None

    def clock(self):
        # Tiled runs interleave host work (the tiler) with device work: host clock, synchronised.
        return CudaClock(self.device) if self.cuda and not self.tile else HostClock()

    def _upload(self, frame):
        torch = self.torch
        host = torch.from_numpy(frame)
        if self.cuda:
            if self._staging is None or self._staging.shape != host.shape:
                self._staging = torch.empty(host.shape, dtype=torch.uint8).pin_memory()
            self._staging.copy_(host)
            host = self._staging
        x = host.to(self.device, non_blocking=True).permute(2, 0, 1)[None]
        x = x.to(self.dtype).div_(255.0)
        h, w = frame.shape[:2]
        pad_h, pad_w = -h % self.multiple, -w % self.multiple
        if pad_h or pad_w:
            x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        return x.contiguous(memory_format=self.memory_format)

    def _download(self, y, height, width):
        y = y[0, :, : height * self.scale, : width * self.scale]
        y = y.clamp(0, 1).mul(255.0).round_().to(self.torch.uint8).permute(1, 2, 0)
        return y.to("cpu", non_blocking=self.cuda)

    def run(self, frame, clock):
        """One frame through upload -> compute -> download; returns the host output frame."""
        if self.tile:
            return self._run_tiled(frame, clock)
        torch = self.torch
        h, w = frame.shape[:2]
        with torch.inference_mode():
            clock.start()
            x = self._upload(frame)
            clock.mark("upload")
            y = self.forward(x)
            clock.mark("compute")
            out = self._download(y, h, w)
            clock.mark("download")
        return out

    def _run_tiled(self, frame, clock):
        """Through the runtime's tiler (feathered overlap), the model behind a runtime backend;
        stitch = everything the tiler does besides the backend calls (cutting, blending)."""
        if getattr(self, "_tiler", None) is None:
            from restore.runtime.tiler import Tiler

            self._tile_backend = TorchTileBackend(self)
            self._tiler = Tiler(self._tile_backend.activate(), tile=self.tile,
                                overlap=default_overlap(self.tile) if self.overlap is None else self.overlap, batch=4)
        spent = self._tile_backend.spent = {"upload": 0.0, "compute": 0.0, "download": 0.0}
        self.tiles_per_frame = 0
        clock.start()
        out = self._tiler.restore(frame)
        clock.mark("total")
        total = clock.stages_ms()["total"]
        self.last_timings = dict(spent, stitch=max(0.0, total - sum(spent.values())))
        return out

    def infer_batch(self, batch):
        """Host float batch (N, C, T, T) -> host float32 output, timing its stages into
        ``self._tile_backend.spent`` (synchronising, so host clocks are right on a GPU)."""
        torch, spent = self.torch, self._tile_backend.spent
        self.tiles_per_frame += batch.shape[0]
        self.tile_shape = batch.shape[-2:]
        t0 = time.perf_counter()
        x = torch.from_numpy(batch).to(self.device, self.dtype).contiguous(memory_format=self.memory_format)
        self._sync()
        t1 = time.perf_counter()
        with torch.inference_mode():
            y = self.forward(x)
        self._sync()
        t2 = time.perf_counter()
        out = y.float().cpu().numpy()
        t3 = time.perf_counter()
        spent["upload"] += (t1 - t0) * 1e3
        spent["compute"] += (t2 - t1) * 1e3
        spent["download"] += (t3 - t2) * 1e3
        return out

    def _sync(self):
        if self.cuda:
            self.torch.cuda.synchronize(self.device)


def _runtime_backend_base():
    from restore.runtime.backends.base import Backend

    return Backend


class TorchTileBackend:
    """Adapter: a ``TorchRunner``'s model behind the runtime's backend interface, so the runtime's
    own ``Tiler`` can drive it (built lazily: the runtime is only needed for tiled runs)."""

    def __new__(cls, runner):
        base = _runtime_backend_base()

        class _Adapter(base):
            name = "torch-bench"

            def activate_impl(self):
                model = runner.model
                self.size_multiple = runner.multiple
                self.scale = runner.scale
                self.in_channels = getattr(model, "in_channels", 3)
                self.out_channels = getattr(model, "out_channels", 3)
                self.description = runner.description

            def infer_impl(self, batch, posterior):
                return runner.infer_batch(batch)

        adapter = _Adapter(model=None)
        adapter.spent = {}
        return adapter


class RestorerRunner:
    """The runtime's ``Restorer`` (any backend), host frame in, host frame out. Its stages are
    inside the runtime; when it reports them (``restorer.last_timings`` in ms, if present) they
    are used, otherwise only the total is known."""

    name = "runtime"

    def __init__(self, restorer, device=None):
        self.restorer = restorer
        self.device = device
        self.description = getattr(getattr(restorer, "backend", None), "description", None) or repr(restorer)

    def clock(self):
        return HostClock()

    def run(self, frame, clock):
        clock.start()
        out = self.restorer.restore(frame)
        clock.mark("total")
        return out


# ---------------------------------------------------------------- one case


def percentiles(values):
    a = np.asarray(values, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "min": float(a.min())}


def run_case(runner, frame, frames=20, warmup=3, codec_quality=95, progress=None):
    """Time ``frames`` frames after ``warmup`` untimed ones. Returns a dict of measurements
    (milliseconds, frames/s, megabytes); FLOPs and the floor are added by the caller."""
    ok, encoded = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, codec_quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode the synthetic frame")
    probe = MemoryProbe(getattr(runner, "device", None))
    probe.reset()
    per_stage = {s: [] for s in STAGES}
    latency, totals = [], []
    output = None
    for i in range(warmup + frames):
        start = time.perf_counter()
        decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1].copy()
        decode_ms = (time.perf_counter() - start) * 1e3
        clock = runner.clock()
        result = runner.run(decoded, clock)
        stages = clock.stages_ms()  # synchronises: a non-blocking download is complete after this
        output = np.asarray(result)
        start = time.perf_counter()
        cv2.imencode(".jpg", np.ascontiguousarray(output[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, codec_quality])
        encode_ms = (time.perf_counter() - start) * 1e3
        if progress is not None:
            progress.update(1)
        if i < warmup:
            continue
        per_stage["decode"].append(decode_ms)
        per_stage["encode"].append(encode_ms)
        reported = getattr(runner, "last_timings", None) or getattr(getattr(runner, "restorer", None), "last_timings", None) or {}
        for name in ("upload", "compute", "download", "stitch"):
            value = stages.get(name, reported.get(name))
            if value is not None:
                per_stage[name].append(value)
        frame_ms = stages["total"] if "total" in stages else sum(stages.get(s, 0.0) for s in LATENCY_STAGES)
        latency.append(frame_ms)
        totals.append(frame_ms + decode_ms + encode_ms)
    height, width = frame.shape[:2]
    mean_ms = float(np.mean(latency))
    fps = 1e3 / mean_ms
    return {
        "latency_ms": percentiles(latency),
        "fps": fps,
        "megapixels_per_s": fps * width * height / 1e6,
        "fps_with_codec": 1e3 / float(np.mean(totals)),
        "stages_ms": {s: (float(np.median(v)) if v else None) for s, v in per_stage.items()},
        "peak_host_rss_mb": probe.host_peak_mb(),
        "peak_device_mb": probe.device_peak_mb(),
        "output_shape": list(output.shape),
        "graph_fallback": getattr(runner, "graph_fallback", None),
    }


def overlap_efficiency(stage_ms, pipelined_ms):
    """How much of the hideable time a pipeline hid: serial stages sum S, slowest stage M, measured
    period P per frame -> (S - P) / (S - M), clipped to [0, 1]. 1 = every stage but the slowest
    fully overlapped, 0 = no better than running the stages back to back."""
    values = [v for v in stage_ms if v]
    if len(values) < 2 or pipelined_ms is None:
        return None
    serial, slowest = sum(values), max(values)
    if serial - slowest <= 0:
        return None
    return float(min(1.0, max(0.0, (serial - pipelined_ms) / (serial - slowest))))


def default_overlap(tile):
    """The runtime's advice is 32 px for 256-px tiles; keep that ratio for small tiles."""
    return min(32, tile // 4)


def default_device():
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_threads():
    import torch

    return {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}


def is_finite_number(x):
    return isinstance(x, (int, float)) and math.isfinite(x)
