"""restore.runtime: run exported restoration models on images and video (no torch needed).

``from restore.runtime import Restorer`` is cheap: the API module (and numpy/OpenCV) load on first
use, backends (onnxruntime, torch, tensorrt) only when a Restorer picks one.
"""

__all__ = ["Restorer"]


def __getattr__(name):
    if name == "Restorer":
        from .api import Restorer

        return Restorer
    raise AttributeError(f"module 'restore.runtime' has no attribute {name!r}")
