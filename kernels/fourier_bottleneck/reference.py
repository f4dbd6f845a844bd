"""NumPy reference of the Fourier bottleneck op. Every binding (torch, CUDA, TensorRT plugin, ONNX
Runtime custom op, portable ONNX) is tested against these two functions.

Op contract (see README.md beside this file):
  x:      (N, C, H, W) real
  weight: (C, K, K, 2) float32, real and imaginary parts of a per-channel spectral response defined
          on normalised frequency: rows span fy in [-0.5, 0.5], columns span fx in [0, 0.5]
  mode "spectral": y = irfft2(G_c(H, W) * rfft2(x)), G_c bilinearly sampled from weight[c]
  mode "gir":      y = abs(ifft2(fft2(x)))  (the GIR report's bottleneck; weight unused)
"""
import numpy as np

MODES = ("spectral", "gir")


def sample_coords(size, half):
    """Fractional grid coordinates (0..1) of the FFT bins along one axis.

    ``half`` is the rfft axis (bins 0..size//2, fx in [0, 0.5]); otherwise the full fft axis
    (fftfreq order, fy in [-0.5, 0.5)).
    """
    if half:
        return np.arange(size // 2 + 1, dtype=np.float64) / size * 2.0
    return np.fft.fftfreq(size) + 0.5


def _interp_matrix(coords, k):
    """(len(coords), k) matrix of linear-interpolation weights onto a k-point grid over [0, 1]."""
    pos = coords * (k - 1)
    lo = np.clip(np.floor(pos).astype(np.int64), 0, k - 2)
    frac = pos - lo
    m = np.zeros((len(coords), k))
    m[np.arange(len(coords)), lo] = 1.0 - frac
    m[np.arange(len(coords)), lo + 1] = frac
    return m


def interp_matrices(grid_h, grid_w, height, width):
    """(H, grid_h) and (W//2+1, grid_w) matrices that sample a control grid onto the bins of an
    (height, width) plane's rfft2: response = my @ grid @ mx.T per channel."""
    return (_interp_matrix(sample_coords(height, half=False), grid_h),
            _interp_matrix(sample_coords(width, half=True), grid_w))


def sample_response(weight, height, width):
    """Complex (C, H, W//2+1) response sampled from the (C, K, K, 2) control grid."""
    weight = np.asarray(weight, dtype=np.float64)
    my, mx = interp_matrices(weight.shape[1], weight.shape[2], height, width)
    g = weight[..., 0] + 1j * weight[..., 1]
    return np.einsum("hk,ckl,wl->chw", my, g, mx)


def fourier_bottleneck_ref(x, weight=None, mode="spectral"):
    """Reference output in float64 (cast the result to compare with a lower-precision binding)."""
    if mode not in MODES:
        raise ValueError(f"unknown Fourier bottleneck mode {mode!r}; expected one of {MODES}")
    x = np.asarray(x, dtype=np.float64)
    if mode == "gir":
        return np.abs(np.fft.ifft2(np.fft.fft2(x)))
    h, w = x.shape[-2:]
    g = sample_response(weight, h, w)
    return np.fft.irfft2(np.fft.rfft2(x) * g[None], s=(h, w))
