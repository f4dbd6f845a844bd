"""``Restorer``: the Python API of the runtime.

    with Restorer("default") as r:          # or an artifact dir, .onnx, .engine, checkpoint
        sharp = r.restore(blurry)           # H x W [x C] uint8 / uint16 / float32, RGB(A) or gray
        for frame in r.stream(frames): ...

Images are RGB(A) or grayscale NumPy arrays, or what NumPy reads as one (a PIL image, nested
lists); OpenCV's BGR must be converted by the caller (the I/O helpers in runtime/streams.py do
it). The output has the input's dtype and channels and the model's scale.
"""
from .artifact import resolve_model
from .backends import open_backend
from .errors import ModelError
from .options import check_device
from .sequence import Sequence
from .tiler import Tiler


class Restorer:
    def __init__(self, model="default", backend="auto", tile=None, overlap=None, batch=None, device=None, precision=None):
        if device is not None:
            check_device(device, f"device={device!r}")
        self.source = resolve_model(model)
        self.backend, self.backend_choice = open_backend(backend, self.source, device=device, precision=precision)
        self._why = self.backend_choice or f"--backend {backend} as asked"
        advice = self.source.tiling
        mean, std = self.source.normalisation
        for name, values in (("mean", mean), ("std", std)):
            if values is not None and len(values) != self.backend.in_channels:
                self.backend.deactivate()
                raise ModelError(self.source.name, f"metadata io.normalisation.{name} has {len(values)} values for a model of {self.backend.in_channels} input channels",
                                 "the metadata.json belongs to another model; re-export it with restore-export")
        self.tiler = Tiler(
            self.backend,
            tile=tile,
            default_tile=advice["tile"],
            overlap=overlap,
            default_overlap=advice["overlap"],
            batch=advice["batch"] if batch is None else batch,
            mean=mean,
            std=std,
            estimate_tiles=(self.source.metadata.get("estimate") or {}).get("tiles", 8),
        )

    @property
    def scale(self):
        return self.tiler.scale

    @property
    def description(self):
        """One line for users: which backend runs which model with which tiling, and why that
        backend (what ``auto`` picked and skipped, or that it was asked for)."""
        t = self.tiler
        return f"{self.backend.description}; tile {t.tile}, overlap {t.overlap}, batch {t.batch}, x{t.scale}; {self._why}"

    def restore(self, image, out=None, skip_tiles=None, on_tiles=None, sequence=None):
        """Restore one image; see ``Tiler.restore`` for ``out``, ``skip_tiles``, ``on_tiles`` and
        ``sequence`` (a ``Sequence``: the image is that video's next frame)."""
        return self.tiler.restore(image, out=out, skip_tiles=skip_tiles, on_tiles=on_tiles, sequence=sequence)

    def stream(self, frames, skip_tiles=None):
        """Restore an iterable of a video's frames lazily, one output per input, in order, as one
        ``Sequence`` (the blur estimate follows the video, a static scene does not flicker)."""
        sequence = Sequence()
        for frame in frames:
            yield self.tiler.restore(frame, skip_tiles=skip_tiles, sequence=sequence)

    def follow(self, frame, sequence):
        """A video frame left as it is (``Tiler.follow``): the estimate of the frames after it
        follows it as if it had been restored."""
        self.tiler.follow(frame, sequence)

    def close(self):
        self.backend.deactivate()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<Restorer {self.source.name}: {self.description}>"
