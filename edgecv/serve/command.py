"""What ``edgecv serve`` does between parsing its options and exiting (the CLI stays thin).

It deploys the model (:func:`edgecv.serve.app.serve`), prints where it listens, then either
serves until Ctrl-C / SIGTERM, or with ``--streams cams.yaml`` runs the camera streams until they
end (or the signal), printing one line per stream. Either way the cluster it started is shut down
before it returns: SIGTERM is turned into a normal stop, so ``finally`` runs.
"""

from __future__ import annotations

import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from edgecv.serve.cluster import PublicBindWarning


def run_serve(model: str, *, streams: Path | None, duration: float | None, say: Callable[[str], object],
              warn: Callable[[str], object], **options: Any) -> int:
    """Serve ``model`` with ``options`` (keywords of :func:`~edgecv.serve.app.serve`); returns the
    exit code: 0, or 2 when a stream failed. ``duration``: stop after that many seconds (tests, soaks)."""
    from edgecv.serve.app import BatchingWarning, serve
    from edgecv.serve.streams import read_cameras, run_streams

    cameras = read_cameras(streams) if streams is not None else None  # a bad file fails before Ray starts
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PublicBindWarning)
            warnings.simplefilter("always", BatchingWarning)
            app = serve(model, **options)
        for item in caught:
            warn(str(item.message))
        with app:
            say(f"serving {Path(model).name} at {app.url} (POST /predict, GET /health); "
                f"{app.config.replicas} replica(s), {app.batching}")
            if cameras is None:
                deadline = None if duration is None else time.monotonic() + duration
                while not stop.wait(0.5) and (deadline is None or time.monotonic() < deadline):
                    pass  # until SIGTERM / Ctrl-C (KeyboardInterrupt) / --duration
                return 0
            reports = run_streams(app, cameras, stop=stop, timeout=duration)
            for report in reports:
                (say if report.error is None else warn)(report.line())
            return 0 if all(report.error is None for report in reports) else 2
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
