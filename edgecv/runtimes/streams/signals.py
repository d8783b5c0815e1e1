"""SIGTERM (systemd, ``docker stop``) handled like Ctrl-C while a stream runs, so that stopping
a service finalises its recordings instead of killing the process mid-write."""

from __future__ import annotations

import signal
import threading
from typing import Any


class SigtermAsInterrupt:
    """While any stream is open in the main thread, SIGTERM raises KeyboardInterrupt there."""

    _lock = threading.Lock()
    _open = 0
    _previous: Any = None

    @classmethod
    def _handler(cls, signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    @classmethod
    def enter(cls) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False
        with cls._lock:
            if cls._open == 0:
                if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, cls._handler):
                    return False  # the application handles SIGTERM itself: leave it alone
                previous = signal.signal(signal.SIGTERM, cls._handler)
                # ours still installed (a stream closed outside the main thread could not restore it)
                cls._previous = signal.SIG_DFL if previous == cls._handler else previous
            cls._open += 1
        return True

    @classmethod
    def leave(cls) -> None:
        with cls._lock:
            cls._open -= 1
            if cls._open == 0 and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, cls._previous)
