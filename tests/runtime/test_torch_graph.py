"""CudaGraphModule's bookkeeping, on the CPU: the capture step is a function of the same contract
as ``capture_cuda_graph`` (which needs CUDA), so reuse, re-capture and the eager fallback after a
failed capture run here on the shipped model through the runtime's torch backend."""
import numpy as np
import pytest

from restore.runtime import Restorer
from restore.runtime.artifact import DEFAULT_MODEL_DIR

torch = pytest.importorskip("torch")

from restore.runtime.backends.torch import CudaGraphModule  # noqa: E402

CHECKPOINT = DEFAULT_MODEL_DIR / "model.safetensors"


class Captures:
    """A capture function: the 'graph' is net(static_in) written into a static output, like a
    replay; ``fail_after_capturing`` raises once something was captured (a half-captured graph)."""

    def __init__(self, fail_after_capturing=False):
        self.fail = fail_after_capturing
        self.shapes, self.replays = [], 0

    def __call__(self, torch_module, net, static_in):
        self.shapes.append(tuple(static_in.shape))
        static_out = net(static_in).clone()

        def replay():
            self.replays += 1
            static_out.copy_(net(static_in))

        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        return replay, static_out


@pytest.fixture(scope="module")
def frame():
    return np.random.default_rng(0).random((96, 160, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def eager(frame):
    with Restorer(str(CHECKPOINT), backend="torch", device="cpu", tile=64, overlap=16) as restorer:
        assert restorer.backend.graph is None  # no graphs on the CPU
        return restorer.restore(frame)


def test_a_failed_capture_falls_back_to_eager_and_never_replays(frame, eager):
    capture = Captures(fail_after_capturing=True)
    with Restorer(str(CHECKPOINT), backend="torch", device="cpu", tile=64, overlap=16) as restorer:
        restorer.backend.graph = CudaGraphModule(torch, restorer.backend.forward, capture)
        out = restorer.restore(frame)
        again = restorer.restore(frame)
        assert restorer.backend.graph_fallback.startswith("CUDA graph capture failed, running eagerly: RuntimeError")
    assert len(capture.shapes) == 1 and capture.replays == 0  # tried once, the half graph never replayed
    np.testing.assert_array_equal(out, eager)
    np.testing.assert_array_equal(again, eager)


def test_a_captured_graph_is_reused_for_smaller_batches_and_recaptured_for_new_shapes(frame, eager):
    capture = Captures()
    with Restorer(str(CHECKPOINT), backend="torch", device="cpu", tile=64, overlap=16) as restorer:
        graph = restorer.backend.graph = CudaGraphModule(torch, restorer.backend.forward, capture)
        out = restorer.restore(frame)
        assert restorer.backend.graph_fallback is None
        with torch.inference_mode():
            small = graph(torch.rand(1, 3, 32, 32))
    np.testing.assert_allclose(out, eager, atol=1e-6)
    batch = capture.shapes[0]
    assert batch[1:] == (3, 64, 64) and capture.replays >= 2  # the first and every later tile batch replayed
    assert capture.shapes[1:] == [(1, 3, 32, 32)] and small.shape == (1, 3, 32, 32)
