"""Reused input tensors: no per-frame allocation of the network input on the hot path.

A :class:`TensorPool` lends arrays by ``(shape, dtype)`` and takes them back once inference has
read them. Lending (instead of one buffer per predictor or per thread) is what keeps it correct
when tensors are in flight: a stream pre-processes frame n+1 while frame n is still inferring
(OpenVINO asynchronous requests, ``inflight`` > 1), and a :class:`~edgecv.runtimes.Predictor`
may be called from several threads; each tensor is owned by one caller from ``acquire`` to
``release``. A tensor that is never released (a caller of ``Predictor.prepare_tensor`` that drops
it) is simply garbage-collected: the pool holds only weak references to lent arrays.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

#: Free arrays kept per ``(shape, dtype)``: enough for a stream's in-flight frames plus a few threads.
DEFAULT_KEEP = 4


class TensorPool:
    """Arrays lent by ``(shape, dtype)``; thread-safe.

    Args:
        keep: free arrays kept per ``(shape, dtype)`` (more released ones are dropped).

    ``acquire`` returns an uninitialised array (the caller fills every element); ``release`` takes
    back an array this pool lent (anything else is ignored, so callers may pass any tensor).
    """

    def __init__(self, keep: int = DEFAULT_KEEP) -> None:
        self.keep = int(keep)
        self._free: dict[tuple[tuple[int, ...], str], list[np.ndarray]] = {}
        self._lent: weakref.WeakValueDictionary[int, np.ndarray] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()
        self.allocations = 0  # arrays created so far (a test / benchmark figure)

    def acquire(self, shape: tuple[int, ...], dtype: type | np.dtype) -> np.ndarray:
        """An array of ``shape`` and ``dtype``: a released one when there is one, else a new one."""
        key = (tuple(int(v) for v in shape), np.dtype(dtype).str)
        with self._lock:
            free = self._free.get(key)
            array = free.pop() if free else None
            if array is None:
                self.allocations += 1
        if array is None:
            array = np.empty(key[0], np.dtype(dtype))
        with self._lock:
            self._lent[id(array)] = array
        return array

    def release(self, array: np.ndarray) -> None:
        """Give back ``array`` once nothing reads it any more (no-op for an array this pool did not lend)."""
        with self._lock:
            if self._lent.get(id(array)) is not array:
                return
            del self._lent[id(array)]
            free = self._free.setdefault((array.shape, array.dtype.str), [])
            if len(free) < self.keep:
                free.append(array)
