"""ctypes binding of the compiled Fourier bottleneck library (build with build.py).

Python callers -- the torch op, the TensorRT plugin, the GPU scripts -- use this module; it only
needs numpy, so it also serves the torch-free runtime. ``launch_plan`` is the C plan function
(fourier_bottleneck.h), so every binding launches with the same grid, block, shared memory and
workspace.
"""
import ctypes
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .reference import MODES

LIBRARY_PATH = Path(__file__).resolve().parent / "build" / "libfourier_bottleneck.so"
MODE_CODES = {mode: i for i, mode in enumerate(MODES)}  # FB_MODE_SPECTRAL = 0, FB_MODE_GIR = 1
DTYPE_CODES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}
PATHS = ("fused", "general")
MAX_KERNELS = 2


class FourierBottleneckError(RuntimeError):
    pass


class _KernelLaunch(ctypes.Structure):
    _fields_ = [("grid_x", ctypes.c_uint), ("grid_y", ctypes.c_uint), ("block", ctypes.c_uint),
                ("smem_bytes", ctypes.c_uint)]


class _Plan(ctypes.Structure):
    _fields_ = [
        ("path", ctypes.c_int), ("num_kernels", ctypes.c_int), ("kernels", _KernelLaunch * MAX_KERNELS),
        ("workspace_bytes", ctypes.c_size_t),
        ("planes", ctypes.c_int), ("channels", ctypes.c_int), ("height", ctypes.c_int), ("width", ctypes.c_int),
        ("grid_h", ctypes.c_int), ("grid_w", ctypes.c_int), ("half_width", ctypes.c_int),
        ("log2_height", ctypes.c_int), ("log2_half", ctypes.c_int), ("log2_lmax", ctypes.c_int),
        ("mode", ctypes.c_int), ("dtype", ctypes.c_int), ("scale", ctypes.c_float),
    ]


@dataclass(frozen=True)
class KernelLaunch:
    grid: tuple
    block: int
    smem_bytes: int


@dataclass(frozen=True)
class LaunchPlan:
    """What the C plan function decided for one shape; ``raw`` is what the launcher takes."""
    path: str
    kernels: tuple
    workspace_bytes: int
    raw: _Plan


def is_built():
    return LIBRARY_PATH.is_file()


@functools.lru_cache(maxsize=1)
def load_library(path=None):
    path = Path(path or LIBRARY_PATH)
    if not path.is_file():
        raise FourierBottleneckError(
            f"{path} is not built; run `python -m restore.kernels.fourier_bottleneck.build` (needs nvcc)")
    lib = ctypes.CDLL(str(path))
    lib.fourier_bottleneck_plan.argtypes = [ctypes.c_int] * 8 + [ctypes.POINTER(_Plan)]
    lib.fourier_bottleneck_plan.restype = ctypes.c_int
    pointers = [ctypes.POINTER(_Plan), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.fourier_bottleneck_launch.argtypes = pointers + [ctypes.c_void_p]
    lib.fourier_bottleneck_launch.restype = ctypes.c_int
    lib.fourier_bottleneck_emulate.argtypes = pointers + [ctypes.c_int]
    lib.fourier_bottleneck_emulate.restype = ctypes.c_int
    lib.fourier_bottleneck_error_string.argtypes = [ctypes.c_int]
    lib.fourier_bottleneck_error_string.restype = ctypes.c_char_p
    return lib


def _check(lib, code, what):
    if code != 0:
        message = lib.fourier_bottleneck_error_string(code).decode()
        raise FourierBottleneckError(f"{what}: {message} (code {code})")


def mode_code(mode):
    if mode not in MODE_CODES:
        raise ValueError(f"unknown Fourier bottleneck mode {mode!r}; expected one of {MODES}")
    return MODE_CODES[mode]


def dtype_code(dtype):
    dtype = np.dtype(dtype)
    if dtype not in DTYPE_CODES:
        raise ValueError(f"Fourier bottleneck kernel takes float32 or float16, not {dtype}")
    return DTYPE_CODES[dtype]


def launch_plan(shape, grid_shape, mode, dtype):
    """Launch plan for x of ``shape`` (N, C, H, W) and a (grid_h, grid_w) control grid."""
    lib = load_library()
    n, c, h, w = (int(v) for v in shape)
    grid_h, grid_w = (int(v) for v in grid_shape) if grid_shape is not None else (0, 0)
    raw = _Plan()
    code = lib.fourier_bottleneck_plan(n, c, h, w, grid_h, grid_w, mode_code(mode), dtype_code(dtype),
                                       ctypes.byref(raw))
    _check(lib, code, f"no launch plan for shape {tuple(shape)}, grid {grid_shape}, mode {mode!r}")
    kernels = tuple(KernelLaunch((k.grid_x, k.grid_y), k.block, k.smem_bytes)
                    for k in raw.kernels[:raw.num_kernels])
    return LaunchPlan(PATHS[raw.path], kernels, int(raw.workspace_bytes), raw)


def launch(plan, x_ptr, weight_ptr, y_ptr, workspace_ptr, stream):
    """Enqueue ``plan`` on the CUDA stream handle ``stream`` (int); pointers are device addresses."""
    lib = load_library()
    code = lib.fourier_bottleneck_launch(ctypes.byref(plan.raw), x_ptr or None, weight_ptr or None, y_ptr or None,
                                         workspace_ptr or None, stream or None)
    _check(lib, code, "fourier_bottleneck_launch")


def emulate(x, weight=None, mode="spectral", reverse_threads=False):
    """Run the kernels' own block code on the CPU (see fourier_bottleneck_emulate); returns y."""
    x = np.ascontiguousarray(x)
    if mode == "spectral":
        weight = np.ascontiguousarray(weight, dtype=np.float32)
    grid = weight.shape[1:3] if mode == "spectral" else None
    plan = launch_plan(x.shape, grid, mode, x.dtype)
    y = np.empty_like(x)
    workspace = np.empty(max(plan.workspace_bytes, 1), dtype=np.uint8)
    lib = load_library()
    code = lib.fourier_bottleneck_emulate(
        ctypes.byref(plan.raw), x.ctypes.data, weight.ctypes.data if weight is not None else None,
        y.ctypes.data, workspace.ctypes.data, int(reverse_threads))
    _check(lib, code, "fourier_bottleneck_emulate")
    return y
