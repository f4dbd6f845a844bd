"""A video's state from one frame to the next (``Sequence``), so a static scene does not flicker.

Two things carry over: the blur estimate, an exponential average over the frames, and the
correction (output - input), held where the picture did not move. Deblurring amplifies whatever
changes between frames of a static scene (the codec's noise, pulsing with its keyframes: 2.7x the
input's flicker for the shipped model, benchmarks/field.py); a pixel whose neighbourhood did not
change keeps the previous frame's correction, one whose neighbourhood changed gets its own.

The gate, per pixel: ``d`` = the mean absolute change from the previous input frame over a
25 x 25 box (the largest change among the colour channels); weight of the previous correction
``max(0, 1 - d / TOLERANCE)``. A box wide enough to see a deblurred edge's support (the correction
of a blurred edge spans the blur, ~20 px) is what keeps moving content from being smeared. The
shipped model on the field clips (benchmarks/field.py, benchmarks/results/field-*.json): a static
H.264 scene's output flicker is 1.09x the input's (2.69x frame by frame, stage 4); on a 0.25
px/frame pan 1.2% of the pixels end more than 3 levels from the frame restored alone (34 at most);
with stage 4 on 1 and 3 px/frame pans, 0.05% and none (an exploration run, 2026-12-02).
"""
import cv2
import numpy as np

from .pixels import FULL_SCALE


class Sequence:
    """Pass one to ``Restorer.restore(frame, sequence=...)`` for each frame of one video, in order
    (``Restorer.stream`` makes its own). Not shared between videos or threads."""

    # this frame's weight in the blur estimate's running average (a time constant of about three
    # frames: the estimate follows a change of blur within a few frames)
    POSTERIOR_WEIGHT = 0.3
    # mean absolute change (fraction of full scale) over the box at which a pixel counts as moved
    TOLERANCE = 2 / 255
    RADIUS = 12

    def __init__(self, hold=True):
        self.hold = hold  # False: only the estimate carries over, every correction is the frame's own
        self.posterior = None
        self._frame = None  # the previous input frame's colour channels, float32 (H, W, C)
        self._correction = None  # and its correction; None after a frame that was not restored

    def average(self, posterior):
        """This frame's blur estimate, averaged with the frames' before it."""
        if self.posterior is not None and self.posterior.shape == posterior.shape:
            posterior = (1 - self.POSTERIOR_WEIGHT) * self.posterior + self.POSTERIOR_WEIGHT * posterior
        self.posterior = posterior
        return posterior

    def follow(self, frame):
        """A frame that was not restored (kept from an interrupted run): the next frame's gate
        compares with it, but its correction is unknown, so the next frame's is its own."""
        self._frame, self._correction = _colour(frame), None

    def smooth(self, frame, out):
        """Hold the previous correction in ``out`` (the restored ``frame``, same shape, written in
        place) where the picture did not move."""
        x = _colour(frame)
        scale = FULL_SCALE.get(out.dtype, 1.0)
        view = out if out.ndim == 2 else out[..., : x.shape[2]]
        y = view.astype(np.float32).reshape(x.shape) / np.float32(scale)
        correction = y - x
        if self.hold and self._frame is not None and self._frame.shape == x.shape:
            change = np.abs(x - self._frame).max(axis=2)
            change = cv2.blur(change, (2 * self.RADIUS + 1,) * 2, borderType=cv2.BORDER_REFLECT)
            keep = np.clip(1 - change / self.TOLERANCE, 0, 1)[..., None]
            if self._correction is not None and keep.any():
                correction += keep * (self._correction - correction)
                y = np.clip(x + correction, 0, 1) * np.float32(scale)
                view[...] = (np.rint(y) if scale != 1.0 else y).reshape(view.shape)
        self._frame, self._correction = x, correction
        return out


def _colour(frame):
    """The colour channels (alpha dropped) as float32 (H, W, C) in [0, 1], a copy."""
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = frame[..., None]
    elif frame.shape[2] in (2, 4):
        frame = frame[..., :-1]
    return frame.astype(np.float32) / np.float32(FULL_SCALE.get(frame.dtype, 1.0))
