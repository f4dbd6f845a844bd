import shutil

import pytest


def _cuda_available():
    """A CUDA GPU seen by torch, or by cuda-python where torch is the CPU build."""
    try:
        import torch

        if torch.cuda.is_available():
            return True
    except ImportError:
        pass
    try:
        from cuda.bindings import runtime

        err, count = runtime.cudaGetDeviceCount()
        return err == runtime.cudaError_t.cudaSuccess and count > 0
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def nvcc():
    path = shutil.which("nvcc") or (shutil.which("/usr/local/cuda/bin/nvcc"))
    if not path:
        pytest.skip("nvcc not installed")
    return path
