"""Camera streams on the cluster: one Ray actor per camera, each calling the batched deployment.

``cams.yaml``::

    streams:
      - name: gate                      # unique; names the jsonl and the report
        source: rtsp://127.0.0.1:8554/gate   # anything `edgecv predict --source` takes
        jsonl: out/gate.jsonl           # default: <name>.jsonl beside cams.yaml
        policy: latest                  # latest (live default) | every (files default)
        max_frames: 1000                # optional bound
        give_up_after: 30               # s without frames before the camera is given up (default 30)
      - name: yard
        source: 0

Each actor reads its source through the self-healing capture of
:mod:`edgecv.runtimes.streams.capture` (reconnect with backoff, stall watchdog, gaps reported) in a
reader thread, hands the newest frame (``latest``) or every frame (``every``) to the deployment's
Python handle (requests of all cameras meet in the replicas' ``@serve.batch``), and writes each
result to its sink: the jsonl file (one ``edgecv.result/1`` line per frame, appended and flushed,
as :class:`~edgecv.runtimes.streams.sinks.jsonl.JsonlSink`) and/or a callback run in the actor.
A camera that cannot be opened, gives up, or whose requests fail, ends only its own actor: its
report says why; the other cameras go on.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgecv.errors import EdgecvError, MissingDependencyError, OptionError, SourceError
from edgecv.runtimes.streams.channel import Channel, End
from edgecv.runtimes.streams.readers import Captured

DEFAULT_GIVE_UP_S = 30.0
REQUEST_TIMEOUT_S = 30.0  # one frame's request; a replica being replaced answers well within this
STOP_GRACE_S = 10.0  # after a stop, how long run_streams waits for actors to close their sinks
_KEYS = {"name", "source", "jsonl", "policy", "max_frames", "give_up_after", "stall_timeout"}


@dataclass
class Camera:
    """One stream: ``source`` as ``edgecv predict --source`` takes it; ``jsonl`` its sink file."""

    name: str
    source: str | int
    jsonl: str | None = None
    policy: str | None = None
    max_frames: int | None = None
    give_up_after: float | None = DEFAULT_GIVE_UP_S
    stall_timeout: float = 2.0


@dataclass
class StreamReport:
    """How one camera's stream ended: ``error`` is ``None`` for a normal end (or a stop)."""

    name: str
    frames: int = 0
    dropped: int = 0
    failed_requests: int = 0
    gaps: int = 0
    seconds: float = 0.0
    error: str | None = None
    jsonl: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        status = "ok" if self.error is None else f"failed: {self.error}"
        return (f"{self.name}: {self.frames} frames in {self.seconds:.1f}s, {self.dropped} dropped, "
                f"{self.failed_requests} failed requests, {self.gaps} gaps; {status}")


def read_cameras(path: str | Path) -> list[Camera]:
    """The cameras of a ``cams.yaml`` (see the module docstring); relative ``jsonl`` paths are
    relative to the file's folder.

    Raises:
        OptionError: a malformed file (names the entry and the field, expected vs found).
    """
    try:
        import yaml
    except ImportError as exc:
        raise MissingDependencyError("--streams needs PyYAML: pip install 'edgecv[serve]'") from exc
    file = Path(path)
    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise OptionError(f"{file}: expected a readable YAML file, found: {str(exc).splitlines()[0]}") from None
    entries = doc.get("streams") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise OptionError(f"{file}: expected a 'streams:' list with at least one camera, found {type(entries).__name__}")
    cameras = [_camera(entry, index, file.parent) for index, entry in enumerate(entries)]
    names = [camera.name for camera in cameras]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise OptionError(f"{file}: expected unique stream names, found {', '.join(duplicates)} more than once")
    return cameras


def _camera(entry: Any, index: int, folder: Path) -> Camera:
    where = f"streams[{index}]"
    if not isinstance(entry, dict) or "name" not in entry or "source" not in entry:
        raise OptionError(f"{where}: expected a mapping with at least 'name' and 'source', found {entry!r:.80}")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise OptionError(f"{where}: expected keys among {', '.join(sorted(_KEYS))}, found {', '.join(unknown)}")
    name = str(entry["name"])
    if not name or "/" in name:
        raise OptionError(f"{where}.name: expected a non-empty name without '/', found {name!r}")
    if entry.get("policy") not in (None, "latest", "every"):
        raise OptionError(f"{where}.policy: expected latest or every, found {entry['policy']!r}")
    max_frames = entry.get("max_frames")
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1):
        raise OptionError(f"{where}.max_frames: expected an integer >= 1, found {max_frames!r}")
    jsonl = entry.get("jsonl", f"{name}.jsonl")
    jsonl_path = None if jsonl is None else str(folder / jsonl)
    return Camera(name, entry["source"], jsonl_path, entry.get("policy"), max_frames,
                  entry.get("give_up_after", DEFAULT_GIVE_UP_S), entry.get("stall_timeout", 2.0))


class CameraWorker:
    """The actor body (made a Ray actor by :func:`run_streams`): one camera -> deployment -> sinks."""

    def __init__(self, camera: Camera, app_name: str, callback: Callable[[Any], object] | None = None,
                 inflight: int = 2, request_timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.camera, self.app_name, self.callback = camera, app_name, callback
        self.inflight, self.request_timeout = inflight, request_timeout
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask :meth:`run` to end after the frame in hand (callable while it runs)."""
        self._stop.set()

    def run(self) -> dict[str, Any]:
        """Stream until the source ends, ``max_frames``, a stop, or a failure; the report as a dict."""
        report = StreamReport(self.camera.name, jsonl=self.camera.jsonl)
        start = time.perf_counter()
        sinks: list[Any] = []
        try:
            sinks = self._sinks()
            self._stream(report, sinks)
        except EdgecvError as exc:  # the camera's own failure: reported, never raised into the cluster
            report.error = str(exc).splitlines()[0]
        finally:
            for sink in sinks:
                sink.close()
            report.seconds = time.perf_counter() - start
        return asdict(report)

    def _sinks(self) -> list[Any]:
        from edgecv.runtimes.streams.sinks.callback import CallbackSink
        from edgecv.runtimes.streams.sinks.jsonl import JsonlSink

        sinks: list[Any] = []
        if self.camera.jsonl is not None:
            Path(self.camera.jsonl).parent.mkdir(parents=True, exist_ok=True)
            sinks.append(JsonlSink(self.camera.jsonl))
        if self.callback is not None:
            sinks.append(CallbackSink(self.callback))
        return sinks

    def _stream(self, report: StreamReport, sinks: list[Any]) -> None:
        from ray import serve

        from edgecv.runtimes.streams.readers import check_policy, open_source

        camera = self.camera
        source = open_source(camera.source, None, {"give_up_after": camera.give_up_after,
                                                   "stall_timeout": camera.stall_timeout})
        try:
            policy = check_policy(camera.policy, source)
            channel = Channel(2, latest=policy == "latest")
            reader = threading.Thread(target=_read, args=(source, channel, self._stop, camera.max_frames),
                                      name=f"edgecv-cam-{camera.name}", daemon=True)
            reader.start()
            handle = serve.get_app_handle(self.app_name)
            self._pump(channel, handle, report, sinks)
            if source.problems:  # e.g. a damaged file's "ended at frame 45 of 90"
                report.extra["problems"] = source.problems
        finally:
            self._stop.set()
            source.close()

    def _pump(self, channel: Channel, handle: Any, report: StreamReport, sinks: list[Any]) -> None:
        """Keep up to ``inflight`` requests in the air; write results in frame order."""
        pending: deque[tuple[Captured, Any]] = deque()
        ended: End | None = None
        while ended is None or pending:
            item = None
            if ended is None and len(pending) < self.inflight:
                item = channel.get(lambda: bool(pending) or self._stop.is_set())
            if isinstance(item, End):
                ended = item
            elif isinstance(item, Captured):
                report.dropped += item.dropped
                report.gaps += item.gap is not None
                pending.append((item, handle.predict.remote(item.image)))
            elif pending:
                self._finish(*pending.popleft(), report, sinks)
            elif self._stop.is_set():
                break
        if ended is not None and ended.error is not None:
            raise ended.error if isinstance(ended.error, EdgecvError) else SourceError(str(ended.error))

    def _finish(self, captured: Captured, response: Any, report: StreamReport, sinks: list[Any]) -> None:
        from edgecv.runtimes.detections import Detections
        from edgecv.runtimes.results import read_result
        from edgecv.runtimes.semantic_map import SemanticMap
        from edgecv.runtimes.streams.result import StreamResult

        try:
            doc = response.result(timeout_s=self.request_timeout)
        except Exception as exc:  # noqa: BLE001  a replica died or timed out: this frame is lost, the stream goes on
            report.failed_requests += 1
            report.extra["last_request_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            return
        result = read_result(doc, strict=False)
        semantic = result if isinstance(result, SemanticMap) else None
        detections = Detections.empty(result.class_names) if semantic is not None else result
        out = StreamResult(captured.image, detections, captured.index, f"{self.camera.name}#{captured.index:06d}",
                           captured.timestamp, age=time.time() - captured.timestamp, dropped=captured.dropped,
                           gap=captured.gap, semantic=semantic)
        for sink in sinks:
            sink.write(out)
        report.frames += 1


def _read(source: Any, channel: Channel, stop: threading.Event, max_frames: int | None) -> None:
    """The reader thread: frames into ``channel`` until the end, ``max_frames``, a stop or a failure."""
    end = End()
    try:
        for count, captured in enumerate(source.read(), 1):
            if not channel.put(captured, stop.is_set) or count == max_frames:
                break
    except BaseException as exc:  # handed to the actor's loop, which reports it
        end = End(exc)
    channel.put(end, stop.is_set)


def run_streams(app: Any, cameras: list[Camera], *, callbacks: dict[str, Callable[[Any], object]] | None = None,
                stop: threading.Event | None = None, timeout: float | None = None) -> list[StreamReport]:
    """Run one :class:`CameraWorker` actor per camera against the application ``app`` (a
    :class:`~edgecv.serve.app.ServeHandle` or an application name) until every stream ends,
    ``stop`` is set, or ``timeout`` seconds pass; returns one :class:`StreamReport` per camera.

    ``callbacks``: stream name -> ``fn(StreamResult)``, pickled into that camera's actor and run there.
    """
    import ray

    app_name = app if isinstance(app, str) else app.app_name
    actor_class = ray.remote(num_cpus=0, max_concurrency=2, max_restarts=0)(CameraWorker)
    actors = [actor_class.remote(camera, app_name, (callbacks or {}).get(camera.name)) for camera in cameras]
    runs = {actor.run.remote(): camera for actor, camera in zip(actors, cameras)}
    deadline = None if timeout is None else time.monotonic() + timeout
    pending = list(runs)
    while pending and not (stop is not None and stop.is_set()) and \
            (deadline is None or time.monotonic() < deadline):
        _, pending = ray.wait(pending, timeout=0.5)
    if pending:  # stopped or timed out: ask the rest to end, give them time to close their sinks
        for actor in actors:
            actor.stop.remote()
        ray.wait(pending, num_returns=len(pending), timeout=STOP_GRACE_S)
    reports = [_report(ref, camera) for ref, camera in runs.items()]
    for report, ref in zip(reports, runs):
        if ref in pending:  # still running when stopped: its end was ours, not the source's
            report.extra["stopped"] = "timeout" if stop is None or not stop.is_set() else "stop"
    for actor in actors:
        ray.kill(actor)
    return reports


def _report(ref: Any, camera: Camera) -> StreamReport:
    import ray

    try:
        doc = ray.get(ref, timeout=0.1)
    except Exception as exc:  # noqa: BLE001  the actor died or did not stop in time: say so for this camera only
        return StreamReport(camera.name, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
                            jsonl=camera.jsonl)
    return StreamReport(**doc)
