"""Streaming whole frames through a torch model, host frame in to host frame out, double-buffered.

On a GPU, frame t+1 is uploaded (uint8, from pinned memory, on its own stream) and frame t-1
downloaded (uint8, to pinned memory, on a third stream) while frame t computes; events order the
slots exactly as the runtime's ``DoubleBufferSchedule`` does for tile batches:

  fill t      host waits uploaded[s]            pinned input s was read by upload t-slots
  upload t    waits computed[s]                 device input s was consumed by compute t-slots
  compute t   waits uploaded[s], downloaded[s]  device output s was read by download t-slots
  download t  waits computed[s]
  collect t-(slots-1): host waits downloaded[...] and copies the frame out

The runtime's ``GpuPipeline`` streams tile batches for its backends; this streams whole frames
for any torch model, so the peers and our zoo are measured the same way. On a CPU the same
function runs the frames one after another (nothing to overlap), which keeps it testable.
"""
import time

import numpy as np


def stream_frames(runner, frames, slots=2):
    """Restore ``frames`` (list of equal-size uint8 HxWx3) with ``runner`` (a ``TorchRunner``);
    returns (outputs, seconds) for the whole stream, outputs in order."""
    if not runner.cuda:
        start = time.perf_counter()
        from .harness import HostClock

        outputs = [runner.run(f, HostClock()).numpy() for f in frames]
        return outputs, time.perf_counter() - start
    return _stream_cuda(runner, frames, slots)


def _stream_cuda(runner, frames, slots):
    torch, device = runner.torch, runner.device
    h, w = frames[0].shape[:2]
    s = runner.scale
    compute = torch.cuda.current_stream(device)
    up, down = torch.cuda.Stream(device), torch.cuda.Stream(device)
    pinned_in = [torch.empty((h, w, 3), dtype=torch.uint8).pin_memory() for _ in range(slots)]
    pinned_out = [torch.empty((h * s, w * s, 3), dtype=torch.uint8).pin_memory() for _ in range(slots)]
    device_in = [torch.empty((h, w, 3), dtype=torch.uint8, device=device) for _ in range(slots)]
    device_out = [torch.empty((h * s, w * s, 3), dtype=torch.uint8, device=device) for _ in range(slots)]

    def events():
        return [torch.cuda.Event() for _ in range(slots)]

    # An event never recorded is a no-op to wait on, so the first round needs no special case.
    uploaded, computed, downloaded = events(), events(), events()
    outputs = [None] * len(frames)

    def collect(t):
        k = t % slots
        downloaded[k].synchronize()
        outputs[t] = pinned_out[k].numpy().copy()

    torch.cuda.synchronize(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for t, frame in enumerate(frames):
            k = t % slots
            uploaded[k].synchronize()
            pinned_in[k].numpy()[...] = frame
            with torch.cuda.stream(up):
                up.wait_event(computed[k])
                device_in[k].copy_(pinned_in[k], non_blocking=True)
                uploaded[k].record(up)
            compute.wait_event(uploaded[k])
            compute.wait_event(downloaded[k])
            x = device_in[k].permute(2, 0, 1)[None].to(runner.dtype).div_(255.0)
            pad_h, pad_w = -h % runner.multiple, -w % runner.multiple
            if pad_h or pad_w:
                x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
            y = runner.forward(x.contiguous(memory_format=runner.memory_format))[0, :, : h * s, : w * s]
            device_out[k].copy_(y.clamp(0, 1).mul(255.0).round_().permute(1, 2, 0))
            computed[k].record(compute)
            with torch.cuda.stream(down):
                down.wait_event(computed[k])
                pinned_out[k].copy_(device_out[k], non_blocking=True)
                downloaded[k].record(down)
            if t >= slots - 1:
                collect(t - (slots - 1))
        for t in range(max(0, len(frames) - (slots - 1)), len(frames)):
            collect(t)
    return outputs, time.perf_counter() - start


def measure_stream(runner, frame, frames=60, warmup=5, slots=2):
    """Frames/s and the per-frame period of the double-buffered stream (after a warm-up stream)."""
    batch = [frame] * warmup
    if batch:
        stream_frames(runner, batch, slots)
    outputs, seconds = stream_frames(runner, [frame] * frames, slots)
    period_ms = seconds / frames * 1e3
    return {"frames": frames, "slots": slots, "period_ms": period_ms, "fps": 1e3 / period_ms,
            "output_shape": list(np.asarray(outputs[-1]).shape)}
