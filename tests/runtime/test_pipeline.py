"""The double-buffered pipeline: its schedule proven race-free under CUDA's ordering rules, and
the same schedule run for real on host threads (outputs, order, back-pressure, overlap)."""
import random
import time

import numpy as np
import pytest

from restore.runtime.errors import BackendError, ConfigError
from restore.runtime.host_streams import HostDriver
from restore.runtime.pipeline import (COMPUTE, DOWNLOAD, DOWNLOADED, UPLOAD, UPLOADED, GpuPipeline, Step,
                                      measure_overlap, schedule)

# --- the schedule, checked against CUDA's happens-before rules -------------------------------
BUFFERS = {  # step kind -> (buffers read, buffers written), per slot
    "fill": ((), ("pinned_in",)),
    UPLOAD: (("pinned_in",), ("device_in",)),
    COMPUTE: (("device_in",), ("device_out",)),
    DOWNLOAD: (("device_out",), ("pinned_out",)),
    "collect": (("pinned_out",), ()),
}


def happens_before(steps):
    """before[i] = the steps that certainly finish before step i starts, given that: the host runs
    host steps in list order and queues stream steps in list order; a stream runs its steps in
    queue order; a wait (stream or host) is on the latest record of that event made before it."""
    before, last_on_stream, last_record, last_host = [], {}, {}, None
    for i, step in enumerate(steps):
        direct = set()
        if last_host is not None:
            direct.add(last_host)  # a step is queued (or run) after the host's earlier steps
        if step.stream:
            if step.stream in last_on_stream:
                direct.add(last_on_stream[step.stream])
            last_on_stream[step.stream] = i
        else:
            last_host = i
        direct.update(last_record[w] for w in step.waits if w in last_record)
        if step.record:
            last_record[step.record] = i
        before.append(set().union(*(before[d] | {d} for d in direct)) if direct else set())
    return before


def races(steps):
    """Pairs of steps touching the same buffer, one writing, with no order between them, plus
    readers that do not see the write of their own batch (not ordered after it, or another
    batch's write lands in between)."""
    before = happens_before(steps)
    accesses = [(i, (buf, s.slot), buf in BUFFERS[s.kind][1]) for i, s in enumerate(steps)
                for buf in BUFFERS[s.kind][0] + BUFFERS[s.kind][1]]
    found = []
    for a, (i, buf_i, write_i) in enumerate(accesses):
        for j, buf_j, write_j in accesses[a + 1:]:
            if buf_i == buf_j and i != j and (write_i or write_j) and i not in before[j] and j not in before[i]:
                found.append((steps[i], steps[j]))
    for j, (buf, slot), write in accesses:
        if not write:
            writers = [i for i, b, w in accesses if w and b == (buf, slot)]
            own = [i for i in writers if steps[i].batch == steps[j].batch]
            if not own or own[0] not in before[j]:
                found.append((None, steps[j]))
                continue
            found.extend((steps[i], steps[j]) for i in writers
                         if i != own[0] and own[0] in before[i] and i in before[j])
    return found


@pytest.mark.parametrize("slots", [1, 2, 3, 4])
@pytest.mark.parametrize("count", [0, 1, 2, 5, 8])
def test_schedule_has_no_races(slots, count):
    steps = schedule(count, slots)
    assert races(steps) == []
    assert [s.batch for s in steps if s.kind == "collect"] == list(range(count))  # each once, in order


def _without_wait(steps, kind, event):
    return [Step(s.kind, s.batch, s.slot, tuple(w for w in s.waits if w[0] != event), s.record)
            if s.kind == kind else s for s in steps]


def test_race_checker_catches_missing_waits():
    steps = schedule(4, 2)
    found = races(_without_wait(steps, COMPUTE, UPLOADED))  # compute may read before the upload
    assert any(a and {a.kind, b.kind} == {UPLOAD, COMPUTE} for a, b in found)
    found = races(_without_wait(steps, "collect", DOWNLOADED))  # host may read before the download
    assert any(b.kind == "collect" for a, b in found)


def test_race_checker_catches_a_host_collecting_too_late():
    steps = schedule(4, 2)
    late = [s for s in steps if not (s.kind == "collect" and s.batch == 0)]
    late.insert(_step(late, "fill", 3), Step("collect", 0, 0, ((DOWNLOADED, 0),)))
    assert any({a.kind, b.kind} == {DOWNLOAD, "collect"} for a, b in races(late) if a)


def _step(steps, kind, batch):
    return next(i for i, s in enumerate(steps) if s.kind == kind and s.batch == batch)


def test_two_slots_let_upload_and_download_overlap_compute():
    steps = schedule(6, 2)
    before = happens_before(steps)
    for t in range(1, 5):
        compute = _step(steps, COMPUTE, t)
        for other in (_step(steps, UPLOAD, t + 1), _step(steps, DOWNLOAD, t - 1)):
            assert other not in before[compute] and compute not in before[other]
        # The host queues compute t+1 without first waiting for compute t: the GPU never idles
        # waiting for the host.
        host_waits = [i for i in range(_step(steps, COMPUTE, t + 1)) if steps[i].stream is None]
        assert all(compute not in before[h] for h in host_waits)


def test_one_slot_serialises():
    steps = schedule(4, 1)
    before = happens_before(steps)
    assert _step(steps, DOWNLOAD, 1) in before[_step(steps, UPLOAD, 2)]


def test_slots_must_be_positive():
    with pytest.raises(ConfigError):
        schedule(3, 0)


# --- the same schedule run on host threads -----------------------------------------------------
IN_SHAPE, OUT_SHAPE = (3, 8, 8), (3, 16, 16)  # a x2 "model"


def model(x):
    return np.repeat(np.repeat(x * 2.0 + 1.0, 2, axis=2), 2, axis=3)


def host_executor(host, jitter=0.0, seed=0):
    """A device-side execute for the host driver: reads the device input buffer and writes the
    device output buffer in stream order, after a random delay that shakes the interleaving."""
    rng = random.Random(seed)

    def execute(count, d_in, d_out, stream):
        delay = rng.uniform(0, jitter)

        def kernel():
            time.sleep(delay)
            x = host.host_view(d_in, count * 4 * int(np.prod(IN_SHAPE))).view(np.float32).reshape((count,) + IN_SHAPE)
            y = host.host_view(d_out, count * 4 * int(np.prod(OUT_SHAPE))).view(np.float32).reshape((count,) + OUT_SHAPE)
            y[...] = model(x)

        host.launch(stream, kernel)

    return execute


def make_batches(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random((n,) + IN_SHAPE, dtype=np.float32) for n in sizes]


@pytest.mark.parametrize("slots", [1, 2, 3])
def test_pipeline_outputs_match_the_model_in_order(slots):
    host = HostDriver(copy_seconds_per_mb=1.0)
    batches = make_batches([4, 4, 1, 4, 3, 4, 2])  # partial batches anywhere
    with GpuPipeline(host_executor(host, jitter=0.004), IN_SHAPE, OUT_SHAPE, max_batch=4, slots=slots, driver=host) as pipe:
        outputs = list(pipe.run(iter(batches)))
        again = list(pipe.run(batches[:2]))  # the pipeline is reusable
    assert len(outputs) == len(batches)
    for out, batch in zip(outputs, batches):
        np.testing.assert_array_equal(out, model(batch))
    np.testing.assert_array_equal(again[1], model(batches[1]))
    assert not host._memory  # close() freed every buffer


def test_pipeline_reads_ahead_at_most_slots_batches():
    host = HostDriver()
    pulled = []

    def source():
        for i, batch in enumerate(make_batches([2] * 8)):
            pulled.append(i)
            yield batch

    with GpuPipeline(host_executor(host), IN_SHAPE, OUT_SHAPE, max_batch=2, slots=2, driver=host) as pipe:
        ahead = [len(pulled) - k for k, _ in enumerate(pipe.run(source()))]
    assert max(ahead) <= 2  # output k is given back before batch k+2 is taken: bounded memory
    assert len(ahead) == 8


def test_pipeline_rejects_wrong_batches():
    host = HostDriver()
    with GpuPipeline(host_executor(host), IN_SHAPE, OUT_SHAPE, max_batch=2, driver=host) as pipe:
        with pytest.raises(ConfigError, match=r"expected \(1..2, 3, 8, 8\)"):
            list(pipe.run(make_batches([3])))
        with pytest.raises(ConfigError):
            list(pipe.run([np.zeros((1, 3, 4, 4), np.float32)]))


def test_failing_compute_is_reported():
    host = HostDriver()

    def broken(count, d_in, d_out, stream):
        host.launch(stream, lambda: np.linalg.inv(np.zeros((2, 2))))

    with GpuPipeline(broken, IN_SHAPE, OUT_SHAPE, max_batch=2, driver=host) as pipe:
        with pytest.raises(BackendError, match="LinAlgError"):
            list(pipe.run(make_batches([2, 2, 2])))


def test_measure_overlap_sees_copies_hidden_behind_compute():
    # Copies of a batch take ~10 ms each way, compute 20 ms: serial ~40 ms/batch, pipelined ~20.
    host = HostDriver()
    batch_bytes = 2 * 4 * int(np.prod(IN_SHAPE))
    host.copy_seconds_per_mb = 0.010 / (batch_bytes / 1e6)

    def execute(count, d_in, d_out, stream):
        host.launch(stream, lambda: time.sleep(0.020))

    with GpuPipeline(execute, IN_SHAPE, IN_SHAPE, max_batch=2, driver=host) as pipe:
        result = measure_overlap(pipe, make_batches([2] * 6), repeats=1)
    assert result["batches"] == 6 and result["driver"] == "host"
    assert result["serial_over_compute"] > 1.6  # copies cost when done in turn
    assert result["efficiency"] < 1.45  # and are mostly hidden when pipelined
    assert result["efficiency"] < 0.8 * result["serial_over_compute"]


@pytest.mark.gpu
def test_pipeline_on_gpu_with_a_torch_module_matches_cpu():
    import torch

    from restore.runtime.cuda_mem import get_driver
    from restore.runtime.pipeline import torch_executor

    torch.manual_seed(0)
    torch.backends.cudnn.allow_tf32 = False  # compare fp32 with fp32
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.PixelShuffle(2)).eval()
    batches = make_batches([4, 4, 3, 4, 1])
    with torch.no_grad():
        expected = [net(torch.from_numpy(b)).numpy() for b in batches]
    execute = torch_executor(net.cuda(), IN_SHAPE, OUT_SHAPE)
    with GpuPipeline(execute, IN_SHAPE, OUT_SHAPE, max_batch=4, driver=get_driver("cuda-python")) as pipe:
        outputs = list(pipe.run(batches))
        result = measure_overlap(pipe, batches, repeats=1)
    for out, exp in zip(outputs, expected):
        np.testing.assert_allclose(out, exp, atol=1e-4)
    assert result["efficiency"] > 0
