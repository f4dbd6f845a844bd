"""Load: a short soak through the streaming pipeline (memory must not grow after warm-up) and the
Python API from 4 threads at once (same outputs as one thread)."""
import importlib
import threading

import numpy as np
import pytest

from restore.runtime.api import Restorer

soak = importlib.import_module("restore.benchmarks.soak")


def test_short_soak_memory_does_not_grow(tmp_path):
    # 200 frames of 160x120; a leak of one float32 frame per frame would be 230 kB/frame.
    result = soak.soak(frames=200, size=(160, 120), every=25, warmup=75, workdir=tmp_path, progress=False)
    assert result["frames"] == 200
    assert len(result["rss_samples"]) == 9
    assert result["slope_bytes_per_frame"] < 20_000, result
    assert result["growth_after_warmup_mb"] < 4, result


def test_soak_summary_sees_a_leak():
    """The figures are computed right: a made-up series growing 100 kB per frame gives that slope."""
    samples = [(n, 100_000_000 + 100_000 * n) for n in range(0, 1001, 100)]
    result = soak.summarise(samples, warmup=200, frames=1000, size=(8, 8), seconds=1.0, description="")
    assert result["slope_bytes_per_frame"] == pytest.approx(100_000)
    assert result["growth_after_warmup_mb"] == pytest.approx(80_000_000 / 2**20, abs=0.01)


def images(count, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(50, 70, 3), (33, 90, 4), (64, 64), (120, 40, 3)]
    return [(rng.random(shapes[i % len(shapes)]) * 255).astype(np.uint8) for i in range(count)]


def run_threads(work, count=4):
    errors = []

    def guarded(i):
        try:
            work(i)
        except BaseException as e:  # reported to the main thread
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


@pytest.mark.parametrize("shared", [True, False], ids=["one Restorer shared", "one Restorer per thread"])
def test_four_threads_give_the_outputs_of_one(tiny_model, shared):
    inputs = images(8)
    with Restorer(tiny_model, backend="onnxruntime") as restorer:
        expected = [restorer.restore(image) for image in inputs]
        results = [[None] * len(inputs) for _ in range(4)]

        def work(t):
            own = None if shared else Restorer(tiny_model, backend="onnxruntime")
            try:
                for rounds in range(3):
                    for k in range(len(inputs)):
                        i = (k + 3 * t + rounds) % len(inputs)  # threads interleave on different images
                        results[t][i] = (restorer if shared else own).restore(inputs[i])
            finally:
                if own is not None:
                    own.close()

        run_threads(work)
    for t in range(4):
        for got, want in zip(results[t], expected):
            np.testing.assert_array_equal(got, want)


def test_four_threads_streaming(tiny_model):
    inputs = images(6, seed=1)
    with Restorer(tiny_model, backend="onnxruntime") as restorer:
        expected = list(restorer.stream(inputs))
        outputs = [None] * 4

        def work(t):
            outputs[t] = list(restorer.stream(inputs[t:] + inputs[:t]))

        run_threads(work)
    for t in range(4):
        for got, want in zip(outputs[t], expected[t:] + expected[:t]):
            np.testing.assert_array_equal(got, want)
