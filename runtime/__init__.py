"""restore.runtime: run exported restoration models on images and video (no torch needed).

``from restore.runtime import Restorer`` is cheap: the API module (and numpy/OpenCV) load on first
use, backends (onnxruntime, torch, tensorrt) only when a Restorer picks one.
"""

__all__ = ["Restorer", "Sequence"]


def __getattr__(name):
    if name == "Restorer":
        from .api import Restorer

        return Restorer
    if name == "Sequence":
        from .sequence import Sequence

        return Sequence
    raise AttributeError(f"module 'restore.runtime' has no attribute {name!r}")
