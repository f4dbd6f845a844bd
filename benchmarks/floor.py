"""The hardware floor: the fastest a model could possibly run on this device.

Two rates are measured on the device itself rather than taken from a datasheet:
- dense matmul rate: a large fp16 ``torch.matmul`` on a GPU (tensor cores), fp32 sgemm on a CPU;
- memory bandwidth: a large device-to-device copy (bytes read + bytes written per second).

A model's floor for one frame is the larger of FLOPs / matmul rate (compute-bound) and bytes moved /
bandwidth (memory-bound), with FLOPs and bytes from ``flops.count_model``. ``measured / floor``
says how far a backend is from the hardware: 1.0 is unreachable in practice, 2-3x is good.
"""
import time
from dataclasses import asdict, dataclass

import torch


@dataclass
class DeviceRates:
    device: str
    matmul_dtype: str
    matmul_tflops: float
    bandwidth_gbs: float

    def as_dict(self):
        return asdict(self)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds(fn, device, repeats):
    fn()  # warm-up: allocations, cuBLAS heuristics, thread pools
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def measure_matmul_tflops(device, n=None, dtype=None, repeats=5):
    device = torch.device(device)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    n = n or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    inner = 10 if device.type == "cuda" else 1  # keep one timed call well above launch overhead

    def work():
        for _ in range(inner):
            torch.matmul(a, b)

    seconds = _best_seconds(work, device, repeats) / inner
    return 2 * n**3 / seconds / 1e12, str(dtype).replace("torch.", "")


def measure_bandwidth_gbs(device, megabytes=None, repeats=5):
    device = torch.device(device)
    megabytes = megabytes or (2048 if device.type == "cuda" else 128)
    src = torch.empty(megabytes * 2**20, dtype=torch.uint8, device=device)
    src.fill_(1)
    dst = torch.empty_like(src)
    seconds = _best_seconds(lambda: dst.copy_(src), device, repeats)
    return 2 * src.numel() / seconds / 1e9  # read + write


_CACHE = {}


def device_rates(device):
    """Measured rates of ``device`` (cached for the process: they take a few seconds)."""
    key = str(torch.device(device))
    if key not in _CACHE:
        tflops, dtype = measure_matmul_tflops(device)
        _CACHE[key] = DeviceRates(key, dtype, tflops, measure_bandwidth_gbs(device))
    return _CACHE[key]


def floor_ms(flops, bytes_moved, rates):
    """(compute floor, memory floor, floor) in milliseconds for one frame."""
    compute = flops / (rates.matmul_tflops * 1e12) * 1e3
    memory = bytes_moved / (rates.bandwidth_gbs * 1e9) * 1e3
    return compute, memory, max(compute, memory)
