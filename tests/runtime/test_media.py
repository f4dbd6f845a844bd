"""The media layer on real files made here with PyAV: streams kept, timestamps, depth, rotation,
odd sizes, pipes, http and a live UDP source, through a real ONNX Runtime model."""
import functools
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import time

import av
import numpy as np
import psutil
import pytest

from restore.runtime import Restorer
from restore.runtime import media
from restore.runtime.cli import main
from restore.runtime.errors import ConfigError, InputError
from restore.runtime.testing import decodable_frames, write_conv_artifact, write_test_video

COLOUR = {"color_primaries": 1, "color_trc": 1, "colorspace": 1, "color_range": 1}  # BT.709, limited range


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_conv_artifact(tmp_path_factory.mktemp("m") / "identity", layers=0, tile=32, overlap=8)


@pytest.fixture(scope="module")
def identity(model):
    with Restorer(model) as r:
        yield r


def restore(monkeypatch, *args):
    """Run `restore ARGS...` in-process; return its exit code."""
    monkeypatch.setattr(sys, "argv", ["restore", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        main()
    return e.value.code


def describe(path):
    """What a viewer sees: codecs, size, pixel format, timestamps (s), rotation, colour, audio hash."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = list(c.decode(v))
        ctx = v.codec_context
        info = {"codecs": [s.codec_context.name for s in c.streams], "size": (ctx.width, ctx.height), "pix_fmt": ctx.pix_fmt,
                "times": [round(float(f.pts * f.time_base), 3) for f in frames], "rotation": frames[0].rotation,
                "colour": {k: int(getattr(ctx, k)) for k in COLOUR}, "duration": c.duration}
    with av.open(str(path)) as c:
        digest, count = hashlib.sha256(), 0
        for stream in c.streams.audio:
            for packet in c.demux(stream):
                if packet.size:
                    digest.update(bytes(packet))
                    count += 1
        info["audio"] = (count, digest.hexdigest())
    return info


def psnr(a, b, top):
    return 10 * np.log10(top**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def test_h264_aac_in_gives_h264_with_identical_audio_packets(tmp_path, model, monkeypatch):
    src = write_test_video(tmp_path / "clip.mp4", frames=25, size=(96, 64), fps=25, audio="aac", colour=COLOUR)
    assert restore(monkeypatch, "run", src, "-o", tmp_path / "out.mp4", "--model", model, "-q") == 0
    before, after = describe(src), describe(tmp_path / "out.mp4")
    assert after["codecs"] == ["h264", "aac"]
    assert after["audio"] == before["audio"] and before["audio"][0] > 40  # every packet, bit for bit
    assert after["times"] == before["times"] and len(after["times"]) == 25
    assert after["size"] == (96, 64) and after["colour"] == COLOUR
    assert abs(after["duration"] - before["duration"]) <= 0.05 * before["duration"]
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


@pytest.mark.parametrize("suffix, audio", [(".mkv", "libopus"), (".mp4", "aac")])
def test_vfr_keeps_frame_count_and_timestamps(tmp_path, identity, suffix, audio):
    pts = [0, 40, 80, 200, 210, 220, 500, 540, 900, 1000, 1033, 1500]
    src = write_test_video(tmp_path / f"vfr{suffix}", frames=len(pts), size=(64, 48), pts=pts, audio=audio)
    media.restore_video(identity, src, tmp_path / f"out{suffix}", progress=False)
    after = describe(tmp_path / f"out{suffix}")
    assert after["times"] == [t / 1000 for t in pts]
    assert after["audio"] == describe(src)["audio"]


@pytest.mark.parametrize("pix_fmt, codec, out_fmt", [("yuv420p10le", "h264", "yuv420p10le"), ("yuv444p12le", "h264", "yuv420p10le"),
                                                ("yuv420p12le", "hevc", "yuv420p12le")])
def test_deep_video_stays_deep(tmp_path, identity, pix_fmt, codec, out_fmt):
    src = write_test_video(tmp_path / "deep.mkv", frames=4, size=(64, 48), codec="libx265", pix_fmt=pix_fmt,
                           options={"x265-params": "log-level=none"})
    with media.VideoReader(src) as reader:
        frame = next(iter(reader)).image
    assert frame.dtype == np.uint16 and np.any(frame % 257)  # 8 bits widened would all be multiples of 257
    media.restore_video(identity, src, tmp_path / "out.mkv", progress=False, settings=media.EncoderSettings(codec))
    assert describe(tmp_path / "out.mkv")["pix_fmt"] == out_fmt  # H.264 stops at 10 bits, HEVC takes 12

    def first(path):
        with av.open(str(path)) as c:
            return next(c.decode(video=0)).to_ndarray(format="rgb48le")

    assert psnr(first(src), first(tmp_path / "out.mkv"), 65535) > 35


def test_odd_size_rotation_and_colour_are_kept(tmp_path, identity):
    src = write_test_video(tmp_path / "odd.mp4", frames=6, size=(161, 121), pix_fmt="yuv444p", rotation=90, colour=COLOUR)
    media.restore_video(identity, src, tmp_path / "out.mp4", progress=False)
    after = describe(tmp_path / "out.mp4")
    assert after["size"] == (161, 121) and after["pix_fmt"] == "yuv444p"  # 4:2:0 cannot hold an odd size
    assert after["rotation"] == 90 and after["colour"] == COLOUR


def test_x4_model_and_ffv1_are_lossless_in_size(tmp_path):
    src = write_test_video(tmp_path / "in.mp4", frames=3, size=(33, 17), pix_fmt="yuv444p")
    with Restorer(write_conv_artifact(tmp_path / "x4", layers=1, tile=16, overlap=4, scale=4)) as x4:
        media.restore_video(x4, src, tmp_path / "out.mkv", progress=False, settings=media.EncoderSettings("ffv1"))
    after = describe(tmp_path / "out.mkv")
    assert after["size"] == (132, 68) and after["codecs"] == ["ffv1"] and len(after["times"]) == 3


def test_chapters_and_metadata_are_copied(tmp_path, identity):
    from fractions import Fraction

    src = tmp_path / "chapters.mkv"
    with av.open(str(src), "w") as out:
        out.metadata["title"] = "a film"
        out.set_chapters([{"id": i + 1, "start": 5 * i, "end": 5 * i + 5, "time_base": Fraction(1, 10), "metadata": {"title": name}}
                          for i, name in enumerate(["one", "two"])])
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8))
            frame.pts, frame.time_base = i, Fraction(1, 10)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    media.restore_video(identity, src, tmp_path / "out.mp4", progress=False)
    with av.open(str(tmp_path / "out.mp4")) as c:
        chapters = [(float(ch["start"] * ch["time_base"]), ch["metadata"]["title"]) for ch in c.chapters()]
        assert chapters == [(0.0, "one"), (0.5, "two")] and c.metadata["title"] == "a film"


@pytest.mark.parametrize("codec, suffix, audio, note", [
    ("av1", ".webm", "opus", "webm cannot hold aac audio: stream 1 transcoded to opus"),
    ("vp9", ".webm", "opus", "webm cannot hold aac audio: stream 1 transcoded to opus"),
    ("hevc", ".mkv", "aac", None), ("prores", ".mov", "aac", None), ("h264", ".ts", "aac", None), ("h264", ".avi", "aac", None),
])
def test_other_codecs_and_audio_the_container_cannot_hold(tmp_path, identity, capfd, codec, suffix, audio, note):
    src = write_test_video(tmp_path / "in.mkv", frames=4, size=(64, 48), audio="aac")
    capfd.readouterr()
    media.restore_video(identity, src, tmp_path / f"out{suffix}", progress=False, settings=media.EncoderSettings(codec))
    after = describe(tmp_path / f"out{suffix}")
    assert after["codecs"][1:] == [audio] and len(after["times"]) == 4
    assert after["times"] == sorted(after["times"])  # presentation order (AVI cannot reorder: no B-frames there)
    err = capfd.readouterr().err  # the encoders' own banners stay off stderr too
    assert err == (f"restore: note: {src}: {note}\n" if note else ""), err


def test_a_webm_output_gets_a_codec_webm_holds(tmp_path, model, monkeypatch, capsys):
    """No --codec: VP9 for .webm (H.264, the default elsewhere, is refused there), odd sizes in 4:4:4;
    a deep source is refused in one line, VP9 being 8-bit here."""
    src = write_test_video(tmp_path / "in.mp4", frames=4, size=(65, 49), pix_fmt="yuv444p")
    assert restore(monkeypatch, "run", src, "-o", tmp_path / "out.webm", "--model", model, "-q") == 0
    after = describe(tmp_path / "out.webm")
    assert after["codecs"] == ["vp9"] and after["size"] == (65, 49) and after["pix_fmt"] == "yuv444p" and len(after["times"]) == 4
    assert capsys.readouterr().err == ""
    deep = write_test_video(tmp_path / "deep.mkv", frames=2, size=(64, 48), codec="ffv1", pix_fmt="yuv444p10le")
    assert restore(monkeypatch, "run", deep, "-o", tmp_path / "deep.webm", "--model", model, "-q") == 7
    assert capsys.readouterr().err == ("restore: error: --codec vp9: cannot encode 64x48 at 10 bits (this FFmpeg's libvpx-vp9 is 8-bit only)"
                                       " (choose another --codec, or a --pix-fmt it has)\n")
    assert not (tmp_path / "deep.webm").exists()


def test_subtitles_are_copied_converted_or_dropped_with_a_note(tmp_path, identity, capfd):
    from fractions import Fraction

    src = tmp_path / "subs.mkv"
    with av.open(str(src), "w") as out:
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.codec_context.time_base = video.time_base = Fraction(1, 10)
        subs = out.add_mux_stream("subrip")
        subs.time_base = Fraction(1, 1000)
        for i in range(8):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8))
            frame.pts, frame.time_base = i, Fraction(1, 10)
            out.mux(video.encode(frame))
            if i in (2, 6):
                packet = av.Packet(f"line {i}".encode())
                packet.stream, packet.pts, packet.dts, packet.duration, packet.time_base = subs, 100 * i, 100 * i, 150, Fraction(1, 1000)
                out.mux(packet)
        out.mux(video.encode(None))

    def cues(path):
        with av.open(str(path)) as c:
            return [(bytes(p), float(p.pts * p.time_base)) for s in c.streams.subtitles for p in c.demux(s) if p.size]

    def lines(path):
        """(text, start, duration) of every cue, decoded (MP4's and WebM's are not srt packets)."""
        with av.open(str(path)) as c:
            return [(cue.dialogue, float(p.pts * p.time_base), float(p.duration * p.time_base))
                    for s in c.streams.subtitles for p in c.demux(s) if p.size for cue in s.decode(p) if cue.dialogue]

    capfd.readouterr()
    media.restore_video(identity, src, tmp_path / "out.mkv", progress=False)
    assert cues(tmp_path / "out.mkv") == [(b"line 2", 0.2), (b"line 6", 0.6)] and capfd.readouterr().err == ""
    for suffix, fmt, codec, video in ((".mp4", "mp4", "mov_text", "h264"), (".webm", "webm", "webvtt", "av1")):
        media.restore_video(identity, src, tmp_path / f"out{suffix}", progress=False, settings=media.EncoderSettings(video))
        assert lines(tmp_path / f"out{suffix}") == [(b"line 2", 0.2, 0.15), (b"line 6", 0.6, 0.15)], suffix
        assert capfd.readouterr().err == f"restore: note: {src}: {fmt} cannot hold srt subtitles: stream 1 converted to {codec}\n"
    media.restore_video(identity, src, tmp_path / "out.avi", progress=False)
    assert cues(tmp_path / "out.avi") == []
    assert capfd.readouterr().err == f"restore: note: {src}: avi cannot hold subtitle stream 1 (srt): dropped\n"


def test_size_change_mid_stream_is_refused_in_one_line(tmp_path, model, monkeypatch, capsys):
    a = write_test_video(tmp_path / "a.ts", frames=5, size=(64, 48), format="mpegts")
    b = write_test_video(tmp_path / "b.ts", frames=5, size=(80, 48), format="mpegts", seed=1)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(a.read_bytes() + b.read_bytes())
    assert restore(monkeypatch, "run", joined, "-o", tmp_path / "out.mp4", "--model", model, "-q") == 3
    err = capsys.readouterr().err
    assert "changes from 64x48 to 80x48" in err and "Traceback" not in err
    assert not (tmp_path / "out.mp4").exists()


def test_interrupt_mid_stream_keeps_a_playable_partial(tmp_path, identity):
    src = write_test_video(tmp_path / "in.mp4", frames=12, size=(64, 48), audio="aac")
    dst = tmp_path / "out.mp4"
    reader = media.VideoReader(src)
    writer = media.VideoWriter(dst, reader.info, source=reader)

    def frames_then_ctrl_c():
        for i, frame in enumerate(reader):
            if i == 5:
                raise KeyboardInterrupt
            yield frame

    with pytest.raises(KeyboardInterrupt):
        media.restore_frames(identity, frames_then_ctrl_c(), writer, progress=False)
    assert not dst.exists()
    assert decodable_frames(tmp_path / "out.partial.mp4") == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.partial.mp4"]


class InterruptedRestorer:
    """A real Restorer that gets Ctrl-C before its ``stop``-th frame."""

    def __init__(self, restorer, stop):
        self.restorer, self.stop, self.scale, self.calls = restorer, stop, restorer.scale, 0

    def restore(self, image, **kwargs):
        self.calls += 1
        if self.calls == self.stop:
            raise KeyboardInterrupt
        return self.restorer.restore(image, **kwargs)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_resume_continues_a_partial_video_from_its_last_keyframe(tmp_path, identity, model, monkeypatch, capsys, suffix):
    src = write_test_video(tmp_path / "in.mp4", frames=40, size=(64, 48), fps=25, audio="aac")
    dst = tmp_path / f"out{suffix}"
    settings = media.EncoderSettings(options=(("g", "10"),))  # a keyframe every 10 frames
    with pytest.raises(KeyboardInterrupt):
        media.restore_video(InterruptedRestorer(identity, 26), src, dst, progress=False, settings=settings)
    assert decodable_frames(tmp_path / f"out.partial{suffix}") == 25
    straight = tmp_path / f"straight{suffix}"
    media.restore_video(identity, src, straight, progress=False, settings=settings)
    capsys.readouterr()
    assert restore(monkeypatch, "run", src, "-o", dst, "--model", model, "--encoder-opt", "g=10", "--resume", "-q") == 0
    assert "--resume: 20 restored frames reused" in capsys.readouterr().err  # frames 0-19: two whole GOPs
    after, expected = describe(dst), describe(straight)
    assert after["times"] == expected["times"] and len(after["times"]) == 40
    assert after["audio"] == expected["audio"]
    # The partial an earlier run kept is not this run's file: it stays (runtime/outputs.py).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", f"out{suffix}", f"out.partial{suffix}", f"straight{suffix}"]


def test_resume_does_not_continue_the_partial_of_another_clip(tmp_path, identity, capsys):
    dst = tmp_path / "out.mp4"
    settings = media.EncoderSettings(options=(("g", "10"),))
    other = write_test_video(tmp_path / "other.mp4", frames=40, size=(64, 48), fps=25, seed=1)
    with pytest.raises(KeyboardInterrupt):
        media.restore_video(InterruptedRestorer(identity, 26), other, dst, progress=False, settings=settings)
    src = write_test_video(tmp_path / "in.mp4", frames=40, size=(64, 48), fps=25)  # same size, other pictures
    capsys.readouterr()
    counting = InterruptedRestorer(identity, stop=0)
    media.restore_video(counting, src, dst, progress=False, settings=settings, resume=True)
    assert "not this video restored by this model" in capsys.readouterr().err
    assert counting.calls == 41 and decodable_frames(dst) == 40  # the check's frame, then every frame


def test_decoder_stays_a_bounded_number_of_frames_ahead(tmp_path):
    reader = media.VideoReader(write_test_video(tmp_path / "in.mkv", frames=30), queue_size=3)
    frames = iter(reader)
    next(frames)
    reader._thread.join(timeout=0.5)  # it would finish the whole video if it were unbounded
    assert reader._thread.is_alive() and reader._queue.qsize() <= 3
    reader.close()
    assert not reader._thread.is_alive()


def test_folder_to_video_and_video_to_frames(tmp_path, identity):
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((47, 63, 3), 50 * i, np.uint8))
    video = media.restore_folder_to_video(identity, folder, tmp_path / "v.mp4", fps=10, progress=False)
    assert describe(video)["times"] == [0.0, 0.1, 0.2, 0.3] and describe(video)["size"] == (63, 47)
    out = media.restore_video_to_frames(identity, video, tmp_path / "back", progress=False)
    assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}.png" for i in range(4)]


def test_stdin_to_stdout_round_trip(tmp_path, model):
    src = write_test_video(tmp_path / "clip.mkv", frames=8, size=(64, 48), audio="aac")
    with open(src, "rb") as stdin, open(tmp_path / "out.mkv", "wb") as stdout:
        proc = subprocess.run([sys.executable, "-m", "restore.runtime", "run", "-", "-o", "-", "--model", str(model)],
                              stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    after = describe(tmp_path / "out.mkv")
    assert after["codecs"] == ["h264", "aac"] and len(after["times"]) == 8
    assert after["audio"] == describe(src)["audio"]
    assert not (tmp_path / "-").exists()


def test_piped_mp4_with_its_index_at_the_end_says_to_give_the_path(tmp_path, model):
    # PyAV writes the moov last; ~100 kB, more than FFmpeg holds while it probes a pipe
    src = write_test_video(tmp_path / "clip.mp4", frames=10, size=(320, 240))
    with open(src, "rb") as stdin:
        proc = subprocess.run([sys.executable, "-m", "restore.runtime", "run", "-", "-o", str(tmp_path / "out.mkv"), "--model", str(model)],
                              stdin=stdin, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3 and not (tmp_path / "out.mkv").exists()
    line = proc.stderr.splitlines()[-1]
    assert "Traceback" not in proc.stderr and line.startswith("restore: error: stdin: cannot decode this MP4/MOV from a pipe"), proc.stderr
    assert "give the file's path" in line


def test_http_source_on_loopback(tmp_path, model, monkeypatch):
    write_test_video(tmp_path / "clip.mkv", frames=6, size=(64, 48))
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/clip.mkv"
        code = restore(monkeypatch, "run", url, "-o", tmp_path / "out.mp4", "--model", model, "-q")
        server.shutdown()
    assert code == 0
    assert len(describe(tmp_path / "out.mp4")["times"]) == 6


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class SlowRestorer:
    """A real Restorer plus a fixed delay per frame: restoration slower than the live source."""

    def __init__(self, restorer, delay):
        self.restorer, self.delay, self.scale = restorer, delay, restorer.scale

    def restore(self, image, **kwargs):
        time.sleep(self.delay)
        return self.restorer.restore(image, **kwargs)


def udp_feeder(fps, seconds, size, sent):
    """A started thread sending fps * seconds H.264 frames of ``size`` as MPEG-TS over UDP on
    127.0.0.1 at ``fps``, each index appended to ``sent``; returns (thread, the URL to read)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    width, height = size

    def feed():
        with av.open(f"udp://127.0.0.1:{port}?pkt_size=1316", "w", format="mpegts") as out:
            stream = out.add_stream("libx264", rate=fps, options={"g": "10", "tune": "zerolatency", "preset": "ultrafast"})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            start = time.monotonic()
            for i in range(fps * seconds):
                image = np.full((height, width, 3), (7 * i) % 256, np.uint8)
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = i
                out.mux(stream.encode(frame))
                sent.append(i)
                time.sleep(max(0.0, start + (i + 1) / fps - time.monotonic()))
            out.mux(stream.encode(None))

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    return feeder, f"udp://127.0.0.1:{port}?timeout=1000000&overrun_nonfatal=1"


def live_counts(err):
    """(decoded, written, dropped) from the 'restore: live:' line."""
    line = [x for x in err.splitlines() if x.startswith("restore: live:")][0]
    return tuple(int(w) for w in line.replace(";", " ").split() if w.isdigit())[:3], line


def test_live_udp_source_drops_frames_with_bounded_latency(tmp_path, identity, capsys):
    fps, seconds, delay = 50, 3, 0.06  # 50 frames/s in, about 16 frames/s restored
    sent = []
    feeder, url = udp_feeder(fps, seconds, (64, 48), sent)
    dst = tmp_path / "live.mkv"
    media.restore_video(SlowRestorer(identity, delay), url, dst, progress=False)
    feeder.join()
    (decoded, written, dropped), line = live_counts(capsys.readouterr().err)
    median_ms = int(line.split("median ", 1)[1].split()[0])
    max_ms = int(line.rsplit("max ", 1)[1].split()[0])
    assert dropped > 0 and written + dropped == decoded and written == decodable_frames(dst)
    # Latency is bounded by the queue (plus the frame being restored), not by the backlog: without
    # drops the last frame would wait about seconds * fps * delay - seconds = 6 s.
    assert median_ms < 2 * 1000 * (media.jobs.LIVE_QUEUE + 2) * delay and max_ms < 1500  # x2: slack for a loaded CPU
    assert written < len(sent)


class MeasuredRestorer(SlowRestorer):
    """A SlowRestorer that samples the process's resident memory at every frame it restores."""

    def __init__(self, restorer, delay):
        super().__init__(restorer, delay)
        self.process, self.rss = psutil.Process(), []

    def restore(self, image, **kwargs):
        self.rss.append(self.process.memory_info().rss)
        return super().restore(image, **kwargs)


def test_live_udp_source_memory_stays_flat_while_dropping(tmp_path, capsys):
    width, height, fps, seconds, delay = 320, 240, 50, 5, 0.06  # 250 frames in, about 16 frames/s restored
    with Restorer(write_conv_artifact(tmp_path / "identity", layers=0, tile=128, overlap=8)) as identity:
        slow = MeasuredRestorer(identity, delay)
        sent = []
        feeder, url = udp_feeder(fps, seconds, (width, height), sent)
        media.restore_video(slow, url, tmp_path / "live.mkv", progress=False)
        feeder.join()
    (decoded, written, dropped), _ = live_counts(capsys.readouterr().err)
    assert dropped > 0 and written + dropped == decoded and len(slow.rss) == written > 30
    # Memory grows over the first ~20 restored frames (the encoder's lookahead and the queues
    # filling, all bounded), then must not follow the frames fed. A backlog of the frames the
    # restorer did not take would hold at least one RGB frame (width * height * 3 = 230 KB) each:
    # about 180 frames, 41 MB, here. The bound is a quarter of all frames fed as RGB,
    # 250 * 230 KB / 4 = 14 MB; measured on AMD EPYC: 0.4 MB with drops, 27 MB with the live
    # queue made unbounded (jobs.LIVE_QUEUE = 100000: no drops, the backlog kept).
    growth = max(slow.rss[20:]) - slow.rss[20]
    assert growth < len(sent) * width * height * 3 / 4, f"resident memory grew {growth / 1e6:.1f} MB"


@pytest.mark.parametrize("args, words", [
    (["--crf", "80"], "--crf 80"), (["--preset", "warp"], "--preset warp"), (["--codec", "mpeg1"], "--codec mpeg1"),
    (["--pix-fmt", "rgb24"], "--pix-fmt rgb24"), (["--encoder-opt", "tune"], "--encoder-opt tune"),
    (["--encoder-opt", "keyint=10"], "not an option of libx264"),
    (["--codec", "ffv1", "--crf", "10"], "has no CRF"), (["--fps", "nan"], "--fps nan"),
    (["--codec", "prores"], "cannot hold prores"),
])
def test_bad_video_options_are_refused_at_parse_time(tmp_path, model, monkeypatch, capsys, args, words):
    src = write_test_video(tmp_path / "in.mp4", frames=2)
    (tmp_path / "frames").mkdir()
    if "--fps" in args:
        src = tmp_path / "frames"
    assert restore(monkeypatch, "run", src, "-o", tmp_path / "out.mp4", "--model", model, "-q", *args) == 7
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and "Traceback" not in err[0]


def test_nvenc_runs_or_says_in_one_line_why_not(tmp_path, model, monkeypatch, capsys):
    src = write_test_video(tmp_path / "in.mp4", frames=3)
    code = restore(monkeypatch, "run", src, "-o", tmp_path / "out.mp4", "--model", model, "--codec", "nvenc", "-q")
    err = capsys.readouterr().err
    assert code in (0, 6) and "Traceback" not in err, err  # 0 where a GPU has NVENC
    if code == 6:
        assert [x for x in err.splitlines() if x.startswith("restore: error:")][0].startswith("restore: error: --codec nvenc: cannot start h264_nvenc")
        assert not (tmp_path / "out.mp4").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_pixel_limit_applies_to_video_frames(tmp_path, model, monkeypatch, capsys):
    src = write_test_video(tmp_path / "in.mp4", frames=2, size=(64, 48))
    monkeypatch.setenv("RESTORE_MAX_IMAGE_PIXELS", "1000")
    assert restore(monkeypatch, "run", src, "-o", tmp_path / "out.mp4", "--model", model, "-q") == 3
    assert "above the limit" in capsys.readouterr().err


def test_stream_sources_are_strings_not_paths():
    assert media.is_stream("rtsp://cam/live") and media.is_live("udp://127.0.0.1:5000") and media.is_live("/dev/video0")
    assert media.is_stream("-") and not media.is_live("https://host/clip.mp4") and not media.is_stream("clip.mp4")
    with pytest.raises(InputError):
        media.VideoReader(os.devnull)
    with pytest.raises(ConfigError):
        media.check_container(media.EncoderSettings(), "out.gif")


def test_urls_are_not_mangled_and_stdout_takes_one_video(tmp_path, model, monkeypatch, capsys):
    from pathlib import Path

    from restore.runtime.run_cli import _expand

    assert _expand(["rtsp://cam.local:554/live/1"], "out.mkv", None, False) == [("video", "rtsp://cam.local:554/live/1", Path("out.mkv"))]
    assert _expand(["http://h/a/clip.mp4"], tmp_path, None, False)[0][2] == tmp_path / "clip.mp4"
    assert _expand(["-"], "-", None, False) == [("video", "-", "-")]
    (tmp_path / "a.png").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert restore(monkeypatch, "run", "a.png", "-o", "-", "--model", model, "-q") == 7
    assert "stdout takes one video" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # no folder named '-'


def test_live_flag_paces_a_file_by_its_timestamps(tmp_path, model, monkeypatch, capsys):
    src = write_test_video(tmp_path / "in.mkv", frames=20, size=(64, 48), fps=20)
    start = time.monotonic()
    assert restore(monkeypatch, "run", src, "-o", tmp_path / "out.mkv", "--model", model, "--live", "-q") == 0
    assert time.monotonic() - start > 0.9  # 20 frames at 20 fps: the last is due 0.95 s after the first
    line = [x for x in capsys.readouterr().err.splitlines() if x.startswith("restore: live: 20 frames in, ")][0]
    written = int(line.split(", ")[1].split()[0])
    times = describe(tmp_path / "out.mkv")["times"]
    assert len(times) == written >= 18 and set(times) <= {i / 20 for i in range(20)}  # a drop under heavy load is allowed


def test_ctrl_c_while_the_file_is_finished_keeps_every_frame_as_a_partial(tmp_path, identity, monkeypatch, capsys):
    """The last step of a run (flush, trailer, the check that every frame is in the file) can take
    a while; a Ctrl-C there threw all the restored frames away. Now they are kept, as NAME.partial.EXT."""
    from restore.runtime.media import mux

    src = write_test_video(tmp_path / "in.mkv", frames=6)
    count = mux.count_video_packets
    calls = []

    def interrupted_once(path):  # the Ctrl-C lands in the writer's final check
        calls.append(path)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return count(path)

    monkeypatch.setattr(mux, "count_video_packets", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        media.restore_video(identity, src, tmp_path / "out.mp4", progress=False)
    assert not (tmp_path / "out.mp4").exists() and sorted(p.name for p in tmp_path.glob("*out*")) == ["out.partial.mp4"]
    assert count(tmp_path / "out.partial.mp4") == 6
    assert "interrupted: kept the 6 frames restored so far" in capsys.readouterr().err
