"""Tiled inference with feathered blending, in horizontal strips so memory stays bounded.

Geometry (per axis, input pixels): the image is reflect-padded by ``pad = ceil(overlap / 2)`` on each
side (and further at the end when it is smaller than a tile), then covered by tiles of size
``tile`` at a step of ``tile - overlap``, the last one aligned to the end. Each tile's output is
weighted by a separable ramp that is 0 for the ``overlap / 4`` pixels nearest a tile edge (where
the model saw padding instead of the neighbouring content), rises linearly over ``overlap / 2``,
and is 1 inside; the accumulated sum is divided by the summed weights. So a convolutional model
with receptive radius <= overlap / 4 gives exactly its whole-image output away from the borders,
and models with a global receptive field (the Fourier bottleneck) get a smooth crossfade instead
of a seam.

Memory: tiles are processed a row of tiles at a time (several rows for small images, so batches
stay full). Only the current rows' float input strip, one output accumulator of about one tile
row, and the finished output rows (written straight into ``out``) exist at once; the input is
read by row slices, so a lazily-read image or np.memmap works, and ``out`` may be any object
accepting ``out[r0:r1] = rows`` in increasing order (a strip writer).
"""
import cv2
import numpy as np

from .errors import ConfigError, InputError, ModelError
from .pixels import FULL_SCALE, check_float_pixels

FLOAT_DTYPES = (np.float16, np.float32, np.float64)


def as_pixels(image):
    """``image`` as the tiler reads it: arrays and strip readers as they are (shape, dtype, slicing),
    anything else (a PIL image, nested lists) as NumPy sees it; big-endian samples in native order."""
    if not hasattr(image, "shape"):
        try:
            image = np.asarray(image)
        except ValueError as e:  # ragged lists
            raise InputError(f"image {type(image).__name__}", f"not an array of pixels ({e})") from None
    if isinstance(image, np.ndarray) and not image.dtype.isnative:
        image = image.astype(image.dtype.newbyteorder("="))
    return image


def max_overlap(tile):
    """The largest overlap worth running: past half the tile every pixel is computed more than four
    times (at tile - 1, once per pixel of the tile squared), a run that looks hung for no better picture."""
    return tile // 2


def axis_layout(length, tile, overlap):
    """(pad, padded_length, tile starts in padded coordinates) along one axis."""
    pad = (overlap + 1) // 2  # rounded up: with overlap 1 at x2/x4 the feather's zeroed edge pixel would be an image pixel
    padded = max(length + 2 * pad, tile)
    step = tile - overlap
    starts = list(range(0, padded - tile, step)) + [padded - tile]
    return pad, padded, starts


def reflect_indices(length, pad, padded):
    """Source index of every padded position: mirror without repeating the edge (like
    cv2.BORDER_REFLECT_101), repeated as often as needed; a 1-pixel axis repeats its pixel."""
    i = np.arange(padded) - pad
    if length == 1:
        return np.zeros(padded, dtype=np.intp)
    period = 2 * (length - 1)
    i = np.mod(i, period)
    return np.where(i < length, i, period - i).astype(np.intp)


def feather(length, overlap):
    """Tile weight along one axis (output pixels): 0 near the edges, linear ramp, 1 inside."""
    if overlap <= 0:
        return np.ones(length, np.float32)
    d = np.minimum(np.arange(length), np.arange(length)[::-1]).astype(np.float32)
    return np.clip((d + 0.5 - overlap / 4) / (overlap / 2), 0.0, 1.0)


def weight_sum(padded_out, starts_out, tile_out, w):
    total = np.zeros(padded_out, np.float64)
    for s in starts_out:
        total[s : s + tile_out] += w
    return total


def seam_ratio(image, tile, overlap, scale=1):
    """Gradient energy on the tile boundary lines divided by the gradient energy elsewhere.

    ``image`` is an output of ``Tiler.restore`` (H, W[, C]) made with ``tile``/``overlap`` (input
    pixels) and model ``scale``. The boundary lines are where the tiles' edges and the centres
    of their overlaps fall; ~1.0 means no seam, a visible seam gives clearly more than 1.
    Pass ``output - input`` (upscaled) to take the image content out of the measure."""
    img = np.asarray(image, np.float64)
    if img.ndim == 2:
        img = img[..., None]
    energies = []
    for axis in (0, 1):
        length = img.shape[axis] // scale
        pad, padded, starts = axis_layout(length, tile, overlap)
        lines = set()
        for a, b in zip(starts, starts[1:]):
            lines.update((b, a + tile, (b + a + tile) // 2))  # next tile's edge, this one's, the cut
        lines = {(p - pad) * scale for p in lines}
        lines = sorted(x for x in lines if 0 < x < img.shape[axis])
        grad = np.diff(img, axis=axis) ** 2  # grad[k] is the step between pixel k and k + 1
        grad = grad.mean(axis=(1 - axis, 2))
        on = np.zeros(grad.shape[0], bool)
        on[[x - 1 for x in lines]] = True  # the step between pixels x-1 and x crosses line x
        if on.any() and (~on).any():
            energies.append((grad[on].mean(), grad[~on].mean()))
    if not energies:
        return 1.0
    on_energy = sum(e[0] for e in energies)
    off_energy = sum(e[1] for e in energies)
    return float(on_energy / max(off_energy, 1e-20))


class Tiler:
    """Runs an activated backend over images of any size.

    ``tile``/``overlap``/``batch``: in input pixels and tiles per batch; a backend with a fixed
    tile size imposes its own (``tile`` None: that one, else ``default_tile``; ``overlap`` None: the
    model's ``default_overlap``, cut to half of a small tile). ``mean``/``std``: the model's input normalisation (per model
    channel), undone on the output."""

    def __init__(self, backend, tile=None, overlap=None, batch=4, mean=None, std=None, default_tile=256, default_overlap=32,
                 rows_per_call_tiles=32, estimate_tiles=8):
        self.backend = backend
        mult = max(int(backend.size_multiple or 1), 1)
        if backend.tile:
            if tile is not None and tile != backend.tile:
                raise ConfigError(f"tile={tile}", f"this model runs tiles of exactly {backend.tile} pixels", "leave the tile size out")
            tile = backend.tile
        elif tile is None:
            tile = -(-int(default_tile) // mult) * mult
        elif tile < mult:
            raise ConfigError(f"tile={tile}", f"tile must be at least the model's size multiple {mult}")
        else:
            tile = -(-int(tile) // mult) * mult
        if overlap is None:
            overlap = min(int(default_overlap), max_overlap(tile))
        if not 0 <= overlap <= max_overlap(tile):
            raise ConfigError(f"overlap={overlap}", f"overlap must be between 0 and half the tile ({max_overlap(tile)})",
                              "give a smaller overlap or a larger tile")
        if batch is None or batch < 1:
            raise ConfigError(f"batch={batch}", "batch must be at least 1", "give 1 or more, or leave it out for the model's advice")
        self.tile, self.overlap = tile, int(overlap)
        self.batch = min(int(batch), backend.max_batch or int(batch))
        self.scale = int(backend.scale)
        self.model_channels = int(backend.in_channels)
        if backend.out_channels != backend.in_channels:
            raise ConfigError(backend.description, f"model maps {backend.in_channels} to {backend.out_channels} channels; only same-channel models can be tiled")
        self._norm = None
        if mean is not None and std is not None:
            m = np.asarray(mean, np.float32).reshape(-1, 1, 1)
            s = np.asarray(std, np.float32).reshape(-1, 1, 1)
            if not (np.all(m == 0) and np.all(s == 1)):
                self._norm = (m, s)
        # Several tile rows per backend call keep batches full (and a GPU pipeline busy) for
        # small images; a row of a huge image alone is more than enough.
        self.rows_per_call_tiles = rows_per_call_tiles
        self.estimate_tiles = int(estimate_tiles)  # tiles the picture's blur estimate is made from

    # --- geometry -----------------------------------------------------------------------------
    def output_shape(self, shape):
        h, w = shape[:2]
        return (h * self.scale, w * self.scale) + tuple(shape[2:])

    def count_tiles(self, shape):
        """How many tiles ``restore`` runs for an image of this shape (progress bar totals)."""
        h, w = shape[:2]
        tile = self._tile_for(h, w)
        return len(axis_layout(h, tile, self.overlap)[2]) * len(axis_layout(w, tile, self.overlap)[2])

    def _tile_for(self, h, w):
        """Flexible backends: shrink the tile for small images (less padding to compute)."""
        if self.backend.tile:
            return self.tile
        mult = max(int(self.backend.size_multiple or 1), 1)
        need = -(-(max(h, w) + 2 * ((self.overlap + 1) // 2)) // mult) * mult
        return self.tile if need >= self.tile or need <= self.overlap else need

    # --- the work -----------------------------------------------------------------------------
    def restore(self, image, out=None, skip_tiles=None, on_tiles=None, sequence=None):
        """Restore ``image`` (H, W[, C]; uint8, uint16 or float in [0, 1]; C = 1..4, the last
        channel of 2 or 4 is alpha). Returns ``out`` (allocated when None) with the same dtype and
        channels, H and W times the model scale.

        A model that takes the picture's blur estimate (``backend.takes_posterior``) gets one for
        the whole image, made from up to ``estimate_tiles`` of its tiles spread over it, and every
        tile is restored with it. ``sequence`` (a ``Sequence``): ``image`` is that video's next
        frame; the estimate is averaged with the previous frames', and at x1 the correction is
        held where the picture did not move (runtime/sequence.py).

        ``skip_tiles(image, boxes) -> bool array`` is asked once, with every tile's region of the
        image as (y, x, h, w); tiles it marks True are passed through (resized for x4) without
        inference (``--skip-sharp``). ``on_tiles(n)`` is called as tiles finish (progress bars).

        At x1, ``out`` may be ``image`` itself: an output row is written only after the last
        strip that reads its input row (strips advance downwards, the bottom reflection reaches
        back less than a tile), which halves the memory of huge images."""
        image = as_pixels(image)
        held = sequence is not None and self.scale == 1
        if held and out is not None and not isinstance(out, np.ndarray):
            raise ConfigError("out", "a video frame (sequence) is restored into an array, not a strip writer")
        # the input, for the held correction, kept where the output overwrites it
        frame = np.array(image) if held and out is not None and np.may_share_memory(out, image) else image
        job, ys, xs, padded_h = self._plan(image, out, skip_tiles, on_tiles)
        if self.backend.takes_posterior:
            job.posterior = self._estimate(job, ys, xs, sequence)
        rows_per_call = max(1, self.rows_per_call_tiles // len(xs))
        for i0 in range(0, len(ys), rows_per_call):
            group = ys[i0 : i0 + rows_per_call]
            next_y = ys[i0 + rows_per_call] if i0 + rows_per_call < len(ys) else padded_h
            job.run_rows(group, xs, next_y)
        if job.nonfinite:
            raise ModelError(self.backend.description, f"returned NaN or infinite values for {job.nonfinite} of {len(ys) * len(xs)} tiles; "
                             "nothing was written", "the model or its metadata (normalisation std 0?) is broken; re-export or replace it")
        return sequence.smooth(frame, job.out) if held else job.out

    def follow(self, frame, sequence):
        """A video frame that is not restored (on resume, the frames an interrupted run kept): its
        blur estimate joins the ``sequence``'s, so the estimate of the frames after it is as in one
        run (their held correction starts afresh: ``Sequence.follow``)."""
        frame = as_pixels(frame)
        if self.backend.takes_posterior:
            job, ys, xs, _ = self._plan(frame, None, None, None)
            self._estimate(job, ys, xs, sequence)
        sequence.follow(frame)

    def _plan(self, image, out, skip_tiles, on_tiles):
        """Checks ``image``, lays out its tiles; returns (the ``_Job``, tile rows, tile columns, padded height)."""
        shape, dtype = tuple(image.shape), np.dtype(image.dtype)
        if len(shape) not in (2, 3) or (len(shape) == 3 and not 1 <= shape[2] <= 4):
            raise InputError(f"image {shape}", "expected an H x W or H x W x C array with 1 to 4 channels")
        if dtype not in FULL_SCALE and dtype not in [np.dtype(t) for t in FLOAT_DTYPES]:
            raise InputError(f"image dtype {dtype}", "expected uint8, uint16 or float pixels")
        h, w = shape[:2]
        if h < 1 or w < 1:
            raise InputError(f"image {shape}", "image is empty")
        check_float_pixels(image, f"image {shape}")
        channels = shape[2] if len(shape) == 3 else 1
        color = channels - 1 if channels in (2, 4) else channels
        if out is None:
            out = np.empty(self.output_shape(shape), dtype)
        s, tile = self.scale, self._tile_for(h, w)
        pad_y, padded_h, ys = axis_layout(h, tile, self.overlap)
        pad_x, padded_w, xs = axis_layout(w, tile, self.overlap)
        rows_idx = reflect_indices(h, pad_y, padded_h)
        cols_idx = reflect_indices(w, pad_x, padded_w)
        t_out = tile * s
        w1 = feather(t_out, self.overlap * s)
        w2 = w1[:, None] * w1[None, :]
        wy = weight_sum(padded_h * s, [y * s for y in ys], t_out, w1)
        wx = weight_sum(padded_w * s, [x * s for x in xs], t_out, w1)
        skip = set()
        if skip_tiles is not None:
            boxes = [_box(y, x, tile, pad_y, pad_x, h, w) for y in ys for x in xs]
            marks = np.asarray(skip_tiles(image, boxes), bool).reshape(-1)
            skip = {(y, x) for (y, x), m in zip([(y, x) for y in ys for x in xs], marks) if m}
        job = _Job(self, image, out, dtype, color, channels, skip, on_tiles, tile,
                   (h, w), (pad_y, pad_x), rows_idx, cols_idx, w2, wy, wx)
        return job, ys, xs, padded_h

    def _estimate(self, job, ys, xs, sequence):
        """The picture's blur estimate from up to ``estimate_tiles`` of its tiles (those not passed
        through), evenly spread in raster order; averaged over the ``sequence`` when given."""
        boxes = [(y, x) for y in ys for x in xs if (y, x) not in job.skip]
        if not boxes:  # every tile passed through: nothing is restored with it
            return None
        picks = sorted({boxes[i] for i in np.linspace(0, len(boxes) - 1, min(len(boxes), self.estimate_tiles)).round().astype(int)})
        samples, strip_y, strip = [], None, None
        for y, x in picks:  # sorted: each strip is read once
            if y != strip_y:
                strip_y, strip = y, job._read_strip(y)
            samples.extend(self._to_samples(strip[:, :, x : x + job.tile]))
        posterior = self.backend.estimate(np.stack(samples[: self.estimate_tiles]))
        return posterior if sequence is None else sequence.average(posterior)

    # --- channel mapping between the image and the model ----------------------------------------
    def _to_samples(self, tile):
        """(color, T, T) float -> list of (model_channels, T, T) samples."""
        if tile.shape[0] == self.model_channels:
            samples = [tile]
        elif self.model_channels == 1:  # gray model on a colour image: each channel as a plane
            samples = [plane[None] for plane in tile]
        elif tile.shape[0] == 1:  # colour model on a gray image
            samples = [np.repeat(tile, self.model_channels, axis=0)]
        else:
            raise ConfigError(f"{tile.shape[0]}-channel image", f"the model takes {self.model_channels} channels")
        if self._norm is not None:
            m, sd = self._norm
            samples = [(x - m) / sd for x in samples]
        return samples

    def _from_samples(self, outputs, color):
        """list of (model_channels, t, t) outputs -> (color, t, t) float32."""
        if self._norm is not None:
            m, sd = self._norm
            outputs = [y * sd + m for y in outputs]
        if len(outputs) > 1:
            chw = np.concatenate(outputs, axis=0)
        elif outputs[0].shape[0] != color:
            chw = outputs[0].mean(axis=0, keepdims=True)
        else:
            chw = outputs[0]
        return chw.astype(np.float32, copy=False)


class _Job:
    """State of one ``Tiler.restore`` call: the rolling output accumulator and its flushing.

    Internally planar (C, rows, cols), the model's layout (tiles float32, their weighted sum
    float64), so tiles are cut and accumulated as contiguous slices; the interleaved (rows, cols, C)
    layout of the output is produced once per finished strip."""

    def __init__(self, tiler, image, out, dtype, color, channels, skip, on_tiles, tile, size, pads, rows_idx, cols_idx, w2, wy, wx):
        self.t = tiler
        self.image, self.out, self.dtype = image, out, dtype
        self.color, self.channels = color, channels
        self.skip, self.on_tiles, self.tile = skip, on_tiles, tile
        self.h, self.w = size
        self.pad_y, self.pad_x = pads
        self.rows_idx, self.cols_idx = rows_idx, cols_idx
        self.w2, self.wy, self.wx = w2, wy, wx
        self.max_value = FULL_SCALE.get(dtype, 1.0)
        # float64: with heavy overlap a pixel sums thousands of weighted tiles, and float32 rounding
        # then moved a 16-bit value by one (found by tests/reliability/test_tiler_properties.py)
        self.acc = np.zeros((color, 0, wx.shape[0]), np.float64)
        self.acc_y0 = 0  # output row (padded coordinates) of acc[:, 0]
        # Tiles whose model output was not finite. Tiler.restore raises after the last tile (so
        # the count is complete); a strip writer's output is then aborted, never renamed.
        self.nonfinite = 0
        self.posterior = None  # the picture's blur estimate, for a model that takes one

    def _read_strip(self, y):
        """Padded input rows y..y+tile, all padded columns: float32 (color, tile, padded_w) in [0, 1]."""
        rows = self.rows_idx[y : y + self.tile]
        lo, hi = int(rows.min()), int(rows.max()) + 1
        block = np.asarray(self.image[lo:hi])
        if block.ndim == 2:
            block = block[..., None]
        if hi - lo != len(rows) or not np.array_equal(rows, np.arange(lo, hi)):
            block = block[rows - lo]
        block = block[..., : self.color]
        # Columns: the image itself is a slice, only the reflected margins are gathered.
        left, right = self.cols_idx[: self.pad_x], self.cols_idx[self.pad_x + self.w :]
        if len(left) or len(right):
            block = np.concatenate([block[:, left], block, block[:, right]], axis=1)
        strip = np.ascontiguousarray(block.transpose(2, 0, 1), dtype=np.float32)
        if self.max_value != 1.0:
            strip *= np.float32(1.0 / self.max_value)
        return strip

    def run_rows(self, ys, xs, next_y):
        s, t_out = self.t.scale, self.tile * self.t.scale
        bottom = (ys[-1] + self.tile) * s
        grown = np.zeros((self.color, bottom - self.acc_y0, self.acc.shape[2]), np.float64)
        grown[:, : self.acc.shape[1]] = self.acc
        self.acc = grown
        pending = []  # (y, x, number of samples) of tiles sent to the model, in order
        samples = []
        for y in ys:
            strip = self._read_strip(y)
            for x in xs:
                tile = strip[:, :, x : x + self.tile]
                if (y, x) in self.skip:
                    self._add(y, x, _upscale(tile, s))
                    if self.on_tiles:
                        self.on_tiles(1)
                    continue
                tile_samples = self.t._to_samples(tile)
                pending.append((y, x, len(tile_samples)))
                samples.extend(tile_samples)
        if samples:
            self._infer(samples, pending, t_out)
        self._flush(next_y * s)

    def _infer(self, samples, pending, t_out):
        b = self.t.batch
        dtype = self.t.backend.dtype

        def batches():
            for i in range(0, len(samples), b):
                yield np.stack(samples[i : i + b]).astype(dtype, copy=False)

        done = []
        jobs = iter(pending)
        current = next(jobs)
        expected = (self.t.model_channels, t_out, t_out)
        for result in self.t.backend.infer_stream(batches(), self.posterior):
            if result.ndim != 4 or result.shape[1:] != expected:
                raise ModelError(self.t.backend.description, f"model returned {result.shape}, expected (N, {expected[0]}, {t_out}, {t_out})",
                                 "its metadata.json does not describe this model; re-export it with restore-export")
            for y_out in result:
                done.append(y_out)
                while current is not None and len(done) >= current[2]:
                    y, x, n = current
                    tile_out = self.t._from_samples(done[:n], self.color)
                    if np.isfinite(tile_out).all():
                        self._add(y, x, tile_out)
                    else:  # left out of the sum: the image is refused at the end anyway
                        self.nonfinite += 1
                    del done[:n]
                    if self.on_tiles:
                        self.on_tiles(1)
                    current = next(jobs, None)
            # A tile whose samples straddle two batches waits for the next one: copy its
            # outputs, since a pipelined backend may reuse the buffer behind ``result``.
            done = [y_out.copy() for y_out in done]

    def _add(self, y, x, tile_out):
        s, t_out = self.t.scale, self.tile * self.t.scale
        r, c = y * s - self.acc_y0, x * s
        self.acc[:, r : r + t_out, c : c + t_out] += tile_out * self.w2

    def _flush(self, until):
        """Finish output rows acc_y0..until (padded output coordinates): no later tile touches them."""
        s = self.t.scale
        lo = max(self.acc_y0, self.pad_y * s)
        hi = min(until, (self.pad_y + self.h) * s)
        if hi > lo:
            c0, c1 = self.pad_x * s, (self.pad_x + self.w) * s
            rows = self.acc[:, lo - self.acc_y0 : hi - self.acc_y0, c0:c1]  # final: may be changed in place
            rows /= self.wy[lo:hi, None] * self.wx[None, c0:c1]
            r0, r1 = lo - self.pad_y * s, hi - self.pad_y * s
            self.out[r0:r1] = self._finish(rows, r0, r1)
        self.acc = self.acc[:, until - self.acc_y0 :].copy()
        self.acc_y0 = until

    def _finish(self, rows, r0, r1):
        """Planar float colour rows -> interleaved output dtype, alpha re-attached."""
        np.clip(rows, 0.0, 1.0, out=rows)
        if self.max_value != 1.0:
            rows *= np.float32(self.max_value)
            np.rint(rows, out=rows)
        rows = rows.transpose(1, 2, 0).astype(self.dtype)
        if self.channels == self.color:
            return rows if self.channels > 1 or len(self.out.shape) == 3 else rows[..., 0]
        return np.concatenate([rows, self._alpha_rows(r0, r1)], axis=2)

    def _alpha_rows(self, r0, r1):
        """Alpha for output rows r0..r1: copied at x1, bilinear at x4 (two source rows of context
        on each side, so strips join exactly as one whole-image resize would)."""
        s = self.t.scale
        a0, a1 = r0 // s, r1 // s
        if s == 1:
            return np.asarray(self.image[a0:a1])[..., -1:]
        c0, c1 = max(a0 - 2, 0), min(a1 + 2, self.h)
        alpha = np.asarray(self.image[c0:c1])[..., -1]
        if alpha.dtype == np.float16:
            alpha = alpha.astype(np.float32)
        big = cv2.resize(alpha, (self.w * s, (c1 - c0) * s), interpolation=cv2.INTER_LINEAR)
        big = big[(a0 - c0) * s : (a1 - c0) * s]
        return big.astype(self.dtype, copy=False)[..., None]


def _box(y, x, tile, pad_y, pad_x, h, w):
    """The image region (y, x, h, w) a tile at padded (y, x) covers, clipped to the image."""
    y0, x0 = max(y - pad_y, 0), max(x - pad_x, 0)
    y1, x1 = min(y - pad_y + tile, h), min(x - pad_x + tile, w)
    return (y0, x0, max(y1 - y0, 1), max(x1 - x0, 1))


def _upscale(tile, scale):
    """A passed-through (color, T, T) tile at the model's scale (bicubic)."""
    if scale == 1:
        return tile
    up = cv2.resize(np.ascontiguousarray(tile.transpose(1, 2, 0)), None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    return up.reshape(up.shape[0], up.shape[1], -1).transpose(2, 0, 1)
