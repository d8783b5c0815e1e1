"""The hand-over between two stages of the stream pipeline: a bounded channel whose ``latest``
form replaces a waiting frame instead of waiting (dropped frames counted), and the end marker."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable

from edgecv.runtimes.streams.readers import Captured

POLL_S = 0.05  # how often blocked stages look at the stop flag


class End:
    """The last item through a channel: the stage before ended (``error`` is None) or failed."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Channel:
    """A bounded hand-over between two threads; ``latest`` drops the oldest item instead of waiting."""

    def __init__(self, size: int, latest: bool = False) -> None:
        self._items: deque[Any] = deque()
        self._size, self._latest = size, latest
        self._cond = threading.Condition()
        self._dropped = 0

    def put(self, item: Any, stopped: Callable[[], bool]) -> bool:
        """Hand ``item`` over; False if the pipeline stopped first."""
        with self._cond:
            if stopped():  # checked first: with ``latest`` the loop below never waits, so never looks
                return False
            while len(self._items) >= self._size:
                if self._latest and not isinstance(item, End):
                    self._items.popleft()  # a newer frame makes the waiting one stale
                    self._dropped += 1
                    break
                if stopped():
                    return False
                self._cond.wait(POLL_S)
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self, stopped: Callable[[], bool]) -> Any:
        """The next item (a :class:`Captured` carries the drops before it); None if stopped first."""
        with self._cond:
            while not self._items:
                if stopped():
                    return None
                self._cond.wait(POLL_S)
            item = self._items.popleft()
            if isinstance(item, Captured):
                item.dropped, self._dropped = self._dropped, 0
            self._cond.notify_all()
            return item
