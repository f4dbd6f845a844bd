"""``restore run --cluster``: the same jobs as a local run, restored by a pool of Ray actors.

Optional (``pip install "restore[cluster]"``); Ray is imported only here and only when
``--cluster`` is given. Each actor holds one ``Restorer`` built from the run's options and
restores whole jobs: an image, or one keyframe-aligned piece of a video (media/segments.py).
The driver cuts videos into pieces, hands jobs to idle actors, and joins a video's restored
pieces by remux once all are in, copying its audio once from the source. Workers read and write
the job's paths themselves, so on several machines the inputs and outputs must be on a shared
filesystem (the same path on every node).

Plain actors, not Ray Data's ``map_batches``: a job here is one coarse file write (0.1 to tens
of seconds) with a tiny result, so Ray Data's blocks and streaming executor add start-up time
(docs/SCALING.md) and nothing this needs -- the retry of a job whose worker died
(``max_restarts``/``max_task_retries``), a per-job error, cancelling on Ctrl-C and resuming
per job are direct with actors.

Output rules are a local run's: images through the same atomic writers; a video's pieces are
written atomically into a hidden ``.NAME.segments`` folder beside the output, and the output
itself appears only when the join has checked that every restored frame is in it. ``--resume``
keeps finished pieces; the folder is removed once its video is done. On Ctrl-C the actors are
killed and the temporary files of the jobs they held are removed.
"""
import collections
import dataclasses
import json
import math
import os
import shutil
import socket
import sys
from pathlib import Path

from . import errors
from .artifact import resolve_model
from .atomic import atomic_write_text
from .errors import BackendError, ConfigError, OutputError, RestoreError

PIECES_PER_WORKER = 4  # pieces a video is cut into per worker: keeps every worker busy to the end
RETRIES = 3  # restarts of a dead worker, and retries of the job it held


@dataclasses.dataclass
class Job:
    kind: str  # "image" or "piece"
    src: Path
    dst: Path
    segment: object = None  # a piece: the media.segments.Segment it restores
    video: "VideoJob" = None


@dataclasses.dataclass
class VideoJob:
    src: Path
    dst: Path
    work: Path
    pieces: list
    left: int
    failed: bool = False


class RestoreWorker:
    """One Ray actor: a Restorer and the job functions. Returns an error description instead of
    raising for a user's error (RestoreError does not pickle by its message)."""

    def __init__(self, options, skip_sharp, quality=None):
        from .api import Restorer

        self.restorer = Restorer(**options)
        self.quality = quality
        if skip_sharp:
            from .run_cli import sharp_tile_skipper

            self.skip = sharp_tile_skipper()
        else:
            self.skip = None

    def restore(self, kind, src, dst, frames, settings):
        from . import media, streams
        from .media.probe import count_video_packets

        try:
            if kind == "image":
                image, info = streams.read_image_info(src)  # pixels and what makes them the same picture (EXIF, ICC, DPI)
                streams.write_restored_image(self.restorer, image, dst, self.skip, info=info, quality=self.quality)
                return None
            media.restore_video(self.restorer, src, dst, self.skip, False, settings, "none", False)
            written = count_video_packets(dst)
            if written != frames:
                os.unlink(dst)
                raise OutputError(dst, f"restored {written} of the piece's {frames} frames", "run again")
        except RestoreError as e:
            return type(e).__name__, e.subject, e.problem, e.hint
        return None


def run_on_cluster(jobs, cluster, workers, gpus_per_worker, options, settings, audio="copy", skip_sharp=False, resume=False, progress=True,
                   quality=None):
    """Restore ``jobs`` ((kind, src, dst) from run_cli) on ``cluster``; returns the failed sources
    (a single job's error is raised, as in a local run)."""
    for kind, src, dst in jobs:
        if kind not in ("image", "video") or not isinstance(src, Path) or not isinstance(dst, Path):
            raise ConfigError("--cluster", f"runs images and video files, not {src} -> {dst}", "run streams, --frames and frame folders without --cluster")
    resolve_model(options["model"])  # a bad --model is one error here, not one per worker
    ray = _connect(cluster, workers)
    try:
        failed = _run(ray, jobs, workers, gpus_per_worker, options, settings, audio, skip_sharp, resume, progress, quality)
    finally:
        ray.shutdown()
    if len(jobs) == 1 and failed:  # as a local run: one input's error is the run's error
        raise failed[0][1]
    return [src for src, _ in failed]


def _connect(cluster, workers):
    try:
        import ray
    except ImportError:
        raise ConfigError("--cluster", "Ray is not installed", 'pip install "restore[cluster]"') from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs = {"logging_level": "ERROR", "log_to_driver": False, "include_dashboard": False}
    if cluster not in ("local", "auto"):
        _check_reachable(cluster)
    try:
        if cluster == "local":
            ray.init(num_cpus=workers or os.cpu_count(), **kwargs)
        else:
            ray.init(address=cluster, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ConfigError(f"--cluster {cluster}", f"cannot connect ({str(e).splitlines()[0]})",
                          "start one with `ray start --head`, or use --cluster local") from None
    return ray


def _check_reachable(cluster):
    """One line now for an address nobody answers at, instead of Ray's minutes of retries."""
    host, _, port = cluster.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except ValueError:
        raise ConfigError(f"--cluster {cluster}", "not an address", "give auto, local, HOST:PORT or ray://HOST:PORT") from None
    except OSError as e:
        raise ConfigError(f"--cluster {cluster}", f"nothing answers there ({e.strerror or e})",
                          "start one with `ray start --head`, or use --cluster local") from None


def start_workers(ray, count, gpus_per_worker, options, skip_sharp, quality=None):
    actor = ray.remote(RestoreWorker).options(num_cpus=1, num_gpus=gpus_per_worker or 0, max_restarts=RETRIES, max_task_retries=RETRIES)
    return [actor.remote(options, skip_sharp, quality) for _ in range(count)]


def _run(ray, jobs, workers, gpus_per_worker, options, settings, audio, skip_sharp, resume, progress, quality):
    if not workers:
        resources = ray.cluster_resources()
        workers = int(resources.get("GPU", 0) / gpus_per_worker) if gpus_per_worker else int(resources.get("CPU", 1))
    actors = start_workers(ray, max(1, workers), gpus_per_worker, options, skip_sharp, quality)  # they start while videos are cut
    if progress:
        nodes = sum(1 for node in ray.nodes() if node["Alive"])
        print(f"restore: cluster: {len(actors)} workers on {nodes} node{'s' * (nodes > 1)}, {len(jobs)} inputs", file=sys.stderr, flush=True)
    queue, running, idle, failed = collections.deque(), {}, list(actors), []
    try:
        for kind, src, dst in jobs:
            src, dst = src.resolve(), dst.resolve()
            if kind == "image":
                queue.append(Job("image", src, dst))
                continue
            try:
                video = _plan_video(src, dst, len(actors), settings, resume)
            except RestoreError as e:
                print(f"restore: skipped: {e}", file=sys.stderr, flush=True)
                failed.append((str(src), e))
                continue
            queue += [piece for piece in video.pieces if not piece.dst.is_file()]
            if video.left == 0:
                _join(video, audio, failed, progress)
        while queue or running:
            while idle and queue:
                job = queue.popleft()
                actor = idle.pop()
                running[actor.restore.remote(job.kind, job.src, job.dst, job.segment and job.segment.frames, settings)] = (job, actor)
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)  # a timeout: Ctrl-C is seen between waits
            if not ready:
                continue
            job, actor = running.pop(ready[0])
            try:
                error = ray.get(ready[0])
                idle.append(actor)
            except ray.exceptions.RayError as e:  # the worker died more than RETRIES times, or could not start
                error = ("BackendError", str(job.src), f"the cluster worker failed ({str(e).strip().splitlines()[-1]})", None)
                if not isinstance(e, ray.exceptions.RayActorError):
                    idle.append(actor)
            _finished(job, error, audio, failed, progress)
            if queue and not idle and not running:
                raise BackendError("--cluster", "every cluster worker died", "see the 'skipped' lines above; run again with --resume")
    except KeyboardInterrupt:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        for job, _ in running.values():
            _remove_temporaries(job.dst)
        raise
    return failed


def _finished(job, error, audio, failed, progress):
    if error is not None:
        name, subject, problem, hint = error
        error = getattr(errors, name, RestoreError)(subject, problem, hint)
        print(f"restore: skipped: {error}", file=sys.stderr, flush=True)
        if job.video is None:
            failed.append((str(job.src), error))
        elif not job.video.failed:
            job.video.failed = True
            failed.append((str(job.video.src), error))
        return
    if job.video is None:
        if progress:
            print(f"{job.src} -> {job.dst} (cluster)", file=sys.stderr, flush=True)
        return
    job.video.left -= 1
    if job.video.left == 0 and not job.video.failed:
        _join(job.video, audio, failed, progress)


def _join(video, audio, failed, progress):
    from .media.segments import join_pieces

    try:
        join_pieces(video.src, [(piece.dst, piece.segment) for piece in video.pieces], video.dst, audio)
    except RestoreError as e:
        print(f"restore: skipped: {e}", file=sys.stderr, flush=True)
        failed.append((str(video.src), e))
        return
    shutil.rmtree(video.work)
    if progress:
        print(f"{video.src} -> {video.dst} ({len(video.pieces)} pieces, cluster)", file=sys.stderr, flush=True)


def work_folder(dst):
    """The hidden folder beside ``dst`` that holds a video's pieces while it is restored."""
    return dst.with_name(f".{dst.name}.segments")


def _plan_video(src, dst, workers, settings, resume):
    """Cut ``src`` into pieces (or, with ``resume``, reuse the cut an earlier run recorded)."""
    from .media.probe import video_stream
    from .media.sources import open_source
    from .media.segments import Segment, cut_at_keyframes, piece_suffix

    work = work_folder(dst)
    manifest = work / "manifest.json"
    suffix = piece_suffix(settings.spec.family)
    resumed = resume and manifest.is_file()
    if resumed:
        cut = [Segment(work / p["path"], p["pts"]) for p in json.loads(manifest.read_text())["pieces"]]
    else:
        with open_source(src) as container:
            frames = video_stream(container, src).frames
        if work.exists():  # an earlier run's pieces, not asked to be resumed
            shutil.rmtree(work)
        work.mkdir(parents=True)
        try:
            cut = cut_at_keyframes(src, work, max(1, math.ceil((frames or 1) / (PIECES_PER_WORKER * workers))))
        except BaseException:
            shutil.rmtree(work)
            raise
        pieces = [{"path": s.path.name, "pts": s.pts} for s in cut]
        atomic_write_text(manifest, json.dumps({"source": str(src), "pieces": pieces}) + "\n")
    video = VideoJob(src, dst, work, [], 0)
    video.pieces = [Job("piece", s.path, work / f"restored-{i:04d}{suffix}", s, video) for i, s in enumerate(cut)]
    video.left = sum(1 for piece in video.pieces if not piece.dst.is_file())
    if resumed:
        print(f"restore: --resume: {src}: {len(cut) - video.left} of {len(cut)} pieces restored already", file=sys.stderr, flush=True)
    return video


def _remove_temporaries(dst):
    """The temporary files a killed worker was writing for ``dst`` (atomic_path's and VideoWriter's names)."""
    for tmp in dst.parent.glob(f".{dst.stem}.*partial{dst.suffix}"):
        tmp.unlink(missing_ok=True)
