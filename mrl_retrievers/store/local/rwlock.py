"""A readers-writer lock: searches run side by side; adds, deletes and resizes run alone.

hnswlib's ``add_items``/``resize_index`` are not safe beside ``knn_query`` (they crash or raise), and
the vector map is replaced after appends, so every mutation takes the write side. Writers are
preferred (a waiting writer stops new readers) so a stream of searches cannot starve an ingest,
except while a *long* reader holds the lock (a calibration: seconds at 20k items, ~50 s at 1M): the
writer waits for it anyway, so new readers pass meanwhile, and once it ends the writer goes as soon
as the readers in flight finish (before, a second add queued behind a calibration stopped every
search until the calibration ended: tests/store/test_calibration_beside_searches.py).
A writer may ``downgrade`` to a reader without letting another writer in between (a read-only
handle catches its index up, then searches the state it caught up to).
Not re-entrant: public store methods take it once and call lock-free internals.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator


class ReadWriteLock:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._long_readers = 0  # of them, long ones (``read(long=True)``)
        self._writer = False
        self._writers_waiting = 0

    def acquire_read(self, long: bool = False) -> None:
        with self._cond:
            # A long reader enters as any reader does (a waiting writer goes first); while one holds
            # the lock, other readers pass a waiting writer.
            while self._writer or (self._writers_waiting and (long or not self._long_readers)):
                self._cond.wait()
            self._readers += 1
            if long:
                self._long_readers += 1
                self._cond.notify_all()  # readers queued behind a waiting writer may pass now

    def release_read(self, long: bool = False) -> None:
        with self._cond:
            self._readers -= 1
            if long:
                self._long_readers -= 1
            if self._readers == 0:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True

    def release_write(self) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()

    def downgrade(self) -> None:
        """Turn the held write side into a read side, atomically."""
        with self._cond:
            self._writer = False
            self._readers += 1
            self._cond.notify_all()

    @contextmanager
    def read(self, long: bool = False) -> Iterator[None]:
        """The read side; ``long``: a reader that holds it for seconds (see the module docstring)."""
        self.acquire_read(long)
        try:
            yield
        finally:
            self.release_read(long)

    @contextmanager
    def write(self) -> Iterator[None]:
        self.acquire_write()
        try:
            yield
        finally:
            self.release_write()
