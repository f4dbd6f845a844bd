"""Cutting a video at keyframes and joining restored pieces (runtime/media/segments.py), without
Ray: pieces decode on their own, and the joined video equals one whole-file restore (FFV1)."""
import hashlib

import av
import numpy as np
import pytest

from restore.runtime import Restorer, media
from restore.runtime.media.segments import cut_at_keyframes, join_pieces
from restore.runtime.testing import decodable_frames, write_conv_artifact, write_test_video


@pytest.fixture(scope="module")
def restorer(tmp_path_factory):
    with Restorer(write_conv_artifact(tmp_path_factory.mktemp("m") / "conv", layers=2, tile=32, overlap=8)) as r:
        yield r


def decoded(path):
    with av.open(str(path)) as c:
        frames = [(f.pts, f.rotation, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        audio = hashlib.sha256(b"".join(bytes(p) for p in c.demux(audio=0) if p.size)).hexdigest() if c.streams.audio else None
    return frames, audio


def test_pieces_start_at_keyframes_and_decode_on_their_own(tmp_path):
    src = write_test_video(tmp_path / "clip.mp4", frames=40, size=(64, 48), fps=25, options={"g": "8", "bf": "2"})
    pieces = cut_at_keyframes(src, tmp_path, min_frames=10)
    assert [p.frames for p in pieces] == [16, 16, 8]  # cut at the first keyframe after 10 frames
    for piece in pieces:
        with av.open(str(piece.path)) as c:
            assert next(p for p in c.demux(video=0) if p.size).is_keyframe
        assert decodable_frames(piece.path) == piece.frames
    with av.open(str(src)) as c:
        assert sorted(p.pts for p in c.demux(video=0) if p.size) == [t for piece in pieces for t in piece.pts]


@pytest.mark.parametrize("name, extra", [("cfr.mp4", {"fps": 30000 / 1001, "audio": "aac", "rotation": 90}),
                                         ("vfr.mkv", {"pts": [0, 40, 90, 100, 180, 200, 260, 300, 333, 400, 420, 500, 540, 600, 700, 710, 800, 850, 900, 990]})])
def test_joined_pieces_equal_one_whole_restore(tmp_path, restorer, name, extra):
    frames = len(extra.get("pts", [])) or 30
    src = write_test_video(tmp_path / name, frames=frames, size=(64, 48), options={"g": "6"}, **{"fps": 25, **extra})
    settings = media.EncoderSettings("ffv1")
    whole = media.restore_video(restorer, src, tmp_path / f"whole-{name}", progress=False, settings=settings)
    pieces = cut_at_keyframes(src, tmp_path, min_frames=5)
    assert len(pieces) >= 3
    restored = []
    for i, piece in enumerate(pieces):
        out = tmp_path / f"restored-{i}{piece.path.suffix}"
        media.restore_video(restorer, piece.path, out, progress=False, settings=settings, audio="none")
        restored.append((out, piece))
    joined = join_pieces(src, restored, tmp_path / f"joined-{name}")
    (ours, our_audio), (theirs, their_audio) = decoded(joined), decoded(whole)
    assert [(pts, rot) for pts, rot, _ in ours] == [(pts, rot) for pts, rot, _ in theirs] and len(ours) == frames
    for (_, _, a), (_, _, b) in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)
    assert our_audio == their_audio
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
