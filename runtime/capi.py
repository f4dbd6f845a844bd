"""The C API: a table of C function pointers exported as the PyCapsule ``_C_API``.

A C extension includes ``restore.h`` (``get_include()`` gives its folder), calls
``import_restore()`` once in its module init, then uses ``Restore_API->create(...)`` and friends
(see the header for the table and ``runtime/capi_sample/`` for a whole extension). This is the
way NumPy exports its C API: the module holds a capsule with a pointer to a static table.

The table's entries are ctypes callbacks into the Python ``Restorer``. Consequences a C caller
should know: every call takes the GIL (ctypes acquires it, so calling with the GIL released --
inside ``Py_BEGIN_ALLOW_THREADS`` -- is fine and lets other Python threads run meanwhile); calls
on one restorer are serialised by a lock; errors never raise into C: each call returns a status
(0, or the exit code of the ``RestoreError`` class: 3 input, 4 model, 6 backend, 7 config; 1 for
an unexpected failure) and ``last_error()`` gives the message for the calling thread.
"""
import ctypes
import itertools
import threading
from importlib import metadata
from pathlib import Path

import numpy as np

from .errors import ConfigError, InputError, RestoreError

ABI_VERSION = 1
CAPSULE_NAME = b"restore.runtime.capi._C_API"
STATUS_OK, STATUS_INTERNAL = 0, 1
DTYPES = {0: np.dtype(np.uint8), 1: np.dtype(np.uint16), 2: np.dtype(np.float32)}  # RESTORE_UINT8...


def get_include():
    """The folder holding restore.h, for a C extension's include path."""
    return str(Path(__file__).resolve().parent / "include")


# --- the handle table and per-thread errors ----------------------------------------------------
class _Handle:
    def __init__(self, restorer):
        self.restorer = restorer
        self.lock = threading.Lock()
        self.sequence = None  # a Sequence while the calls are a video's frames (``video``)


_handles = {}
_next_handle = itertools.count(1)
_handles_lock = threading.Lock()
_errors = threading.local()


def _set_error(message):
    # Kept in the thread's storage so the char* handed to C stays valid until this thread's next
    # call into the API.
    _errors.buffer = ctypes.create_string_buffer(message.encode("utf-8", "replace"))


def _guarded(fn):
    """Run an API entry: 0 on success, else the error's status with the message stored."""

    def entry(*args):
        _set_error("")
        try:
            fn(*args)
            return STATUS_OK
        except RestoreError as e:
            _set_error(str(e))
            return e.exit_code
        except Exception as e:  # a bug: still no exception may cross into C
            _set_error(f"internal error: {type(e).__name__}: {e}")
            return STATUS_INTERNAL

    entry.__name__ = fn.__name__
    return entry


def _handle(ptr):
    with _handles_lock:
        handle = _handles.get(ptr or 0)
    if handle is None:
        raise ConfigError(f"restorer {ptr!r}", "not a live restorer handle", "create one with create() and do not use it after destroy()")
    return handle


def _text(value, default=None):
    return value.decode("utf-8") if value else default


def _frame(ptr, height, width, channels, dtype_code, row_stride, what):
    """A NumPy (H, W, C) view of caller memory, checked before it is touched."""
    if not ptr:
        raise InputError(what, "NULL pointer")
    if dtype_code not in DTYPES:
        raise ConfigError(f"{what} dtype {dtype_code}", "unknown dtype code", "use RESTORE_UINT8, RESTORE_UINT16 or RESTORE_FLOAT32")
    if height < 1 or width < 1 or not 1 <= channels <= 4:
        raise InputError(f"{what} {height}x{width}x{channels}", "expected H, W >= 1 and 1 to 4 channels")
    dtype = DTYPES[dtype_code]
    row_bytes = width * channels * dtype.itemsize
    if row_stride < row_bytes:
        raise InputError(f"{what} row stride {row_stride}", f"smaller than a row ({row_bytes} bytes)")
    size = row_stride * (height - 1) + row_bytes
    buffer = (ctypes.c_uint8 * size).from_address(ptr)
    return np.ndarray((height, width, channels), dtype, buffer=buffer,
                      strides=(row_stride, channels * dtype.itemsize, dtype.itemsize))


# --- the entries ---------------------------------------------------------------------------
def _package_version():
    try:
        return metadata.version("restore")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "0+unknown"


_version_buffer = ctypes.create_string_buffer(_package_version().encode())


def _version():
    return ctypes.addressof(_version_buffer)


@_guarded
def _create(model, backend, tile, overlap, out):
    from .api import Restorer

    if not out:
        raise InputError("create", "NULL output pointer")
    restorer = Restorer(_text(model, "default"), backend=_text(backend, "auto"), tile=tile or None,
                        overlap=None if overlap < 0 else overlap)
    with _handles_lock:
        ptr = next(_next_handle)
        _handles[ptr] = _Handle(restorer)
    out[0] = ptr


@_guarded
def _scale(ptr, out):
    if not out:
        raise InputError("scale", "NULL output pointer")
    out[0] = _handle(ptr).restorer.scale


def _restore_frame(handle, src, height, width, channels, dtype, src_stride, dst, dst_stride):
    scale = handle.restorer.scale
    source = _frame(src, height, width, channels, dtype, src_stride, "source frame")
    target = _frame(dst, height * scale, width * scale, channels, dtype, dst_stride, "output frame")
    with handle.lock:
        handle.restorer.restore(source, out=target, sequence=handle.sequence)


@_guarded
def _restore_host(ptr, src, height, width, channels, dtype, src_stride, dst, dst_stride):
    _restore_frame(_handle(ptr), src, height, width, channels, dtype, src_stride, dst, dst_stride)


@_guarded
def _restore_device(ptr, src, height, width, channels, dtype, src_stride, dst, dst_stride, stream):
    """Device frame in, device frame out, in order with ``stream``: the frame is staged through
    pinned host memory around the host restore (one copy each way on the caller's stream)."""
    from .cuda_mem import PinnedBuffer, cuda_call, get_driver

    handle = _handle(ptr)
    if not src or not dst:
        raise InputError("device frame", "NULL pointer")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype}", "unknown dtype code")
    driver = get_driver("cuda-python")  # BackendError where there is no GPU
    rt, scale, size = driver.rt, handle.restorer.scale, DTYPES[dtype].itemsize
    row_in, row_out = width * channels * size, width * scale * channels * size
    with PinnedBuffer(row_in * height, driver) as host_in, PinnedBuffer(row_out * height * scale, driver) as host_out:
        cuda_call(rt.cudaMemcpy2DAsync(host_in.ptr, row_in, src, src_stride, row_in, height,
                                       rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream or 0), "cudaMemcpy2DAsync(D2H)")
        cuda_call(rt.cudaStreamSynchronize(stream or 0), "cudaStreamSynchronize")
        _restore_frame(handle, host_in.ptr, height, width, channels, dtype, row_in, host_out.ptr, row_out)
        cuda_call(rt.cudaMemcpy2DAsync(dst, dst_stride, host_out.ptr, row_out, row_out, height * scale,
                                       rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream or 0), "cudaMemcpy2DAsync(H2D)")
        cuda_call(rt.cudaStreamSynchronize(stream or 0), "cudaStreamSynchronize")  # the pinned buffers go next


@_guarded
def _video(ptr, on):
    """on: the restorer's next frames are one video's, in order (a new ``Sequence``); 0: stills."""
    from .sequence import Sequence

    handle = _handle(ptr)
    with handle.lock:
        handle.sequence = Sequence() if on else None


def _last_error():
    buffer = getattr(_errors, "buffer", None)
    if buffer is None:
        _set_error("")
        buffer = _errors.buffer
    return ctypes.addressof(buffer)


def _destroy(ptr):
    with _handles_lock:
        handle = _handles.pop(ptr or 0, None)
    if handle is not None:
        with handle.lock:
            try:
                handle.restorer.close()
            except Exception:  # destroy() cannot report; the handle is gone either way
                pass


# --- the table (field order is the C struct's, see include/restore.h) ---------------------------
_c_int_p = ctypes.POINTER(ctypes.c_int)
_handle_p = ctypes.POINTER(ctypes.c_void_p)
_FRAME = (ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_ssize_t)

VERSION_FN = ctypes.CFUNCTYPE(ctypes.c_void_p)
CREATE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, _handle_p)
SCALE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, _c_int_p)
RESTORE_HOST_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, *_FRAME, ctypes.c_void_p, ctypes.c_ssize_t)
RESTORE_DEVICE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, *_FRAME, ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_void_p)
LAST_ERROR_FN = ctypes.CFUNCTYPE(ctypes.c_void_p)
DESTROY_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
VIDEO_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int)


class RestoreCAPI(ctypes.Structure):
    _fields_ = [
        ("abi_version", ctypes.c_uint),
        ("struct_size", ctypes.c_uint),
        ("version", VERSION_FN),
        ("create", CREATE_FN),
        ("scale", SCALE_FN),
        ("restore_host", RESTORE_HOST_FN),
        ("restore_device", RESTORE_DEVICE_FN),
        ("last_error", LAST_ERROR_FN),
        ("destroy", DESTROY_FN),
        ("video", VIDEO_FN),  # later entries go at the end: a table that grew keeps ABI 1
    ]


# The CFUNCTYPE objects must live as long as the table: C holds only their code pointers.
_TABLE = RestoreCAPI(ABI_VERSION, ctypes.sizeof(RestoreCAPI), VERSION_FN(_version), CREATE_FN(_create),
                     SCALE_FN(_scale), RESTORE_HOST_FN(_restore_host), RESTORE_DEVICE_FN(_restore_device),
                     LAST_ERROR_FN(_last_error), DESTROY_FN(_destroy), VIDEO_FN(_video))

_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)
_C_API = _capsule_new(ctypes.addressof(_TABLE), CAPSULE_NAME, None)

__all__ = ["ABI_VERSION", "CAPSULE_NAME", "get_include", "_C_API"]
