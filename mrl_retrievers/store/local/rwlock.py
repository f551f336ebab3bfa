"""A readers-writer lock: searches run side by side; adds, deletes and resizes run alone.

hnswlib's ``add_items``/``resize_index`` are not safe beside ``knn_query`` (they crash or raise), and
the vector map is replaced after appends, so every mutation takes the write side. Writers are
preferred (a waiting writer stops new readers) so a stream of searches cannot starve an ingest.
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
        self._writer = False
        self._writers_waiting = 0

    def acquire_read(self) -> None:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1

    def release_read(self) -> None:
        with self._cond:
            self._readers -= 1
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
    def read(self) -> Iterator[None]:
        self.acquire_read()
        try:
            yield
        finally:
            self.release_read()

    @contextmanager
    def write(self) -> Iterator[None]:
        self.acquire_write()
        try:
            yield
        finally:
            self.release_write()
