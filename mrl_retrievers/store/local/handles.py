"""Handles and what they share: one open store per path and mode per process, many handles on it.

A user (or two LangChain chains, or a retriever and an ingestion job) may open the same store
several times in one process. They must not take the writer lock twice (flock is per open file:
the second open would lock itself out), and closing one must not close the others. So every
``MRLStore`` handle points at a ``SharedStore`` that holds the open files, the coarse index and
the readers-writer lock, reference-counted by its open handles: the last handle to close
checkpoints and releases it; a handle that is garbage-collected without ``close()`` drops its
reference the same way (without the checkpoint: the next writer catches the index up).

A process keeps at most one writable ``SharedStore`` per path (it holds the lock) and at most one
read-only one; a read-only handle asked for while a writable one is open shares the writable one
(it is refused writes by its own flag).
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Callable

from . import opening
from .rwlock import ReadWriteLock
from .search import Searcher
from .state import StoreState

_registry: "weakref.WeakValueDictionary[tuple[str, bool], SharedStore]" = weakref.WeakValueDictionary()
registry_lock = threading.RLock()


class SharedStore:
    """The open state of one store in this process, shared by all its handles."""

    def __init__(self, state: StoreState) -> None:
        self.state = state
        self.rw = ReadWriteLock()
        self.searcher = Searcher(state)
        self.handles = 0
        self.closed = False

    @property
    def read_only(self) -> bool:
        return self.state.read_only

    def attach(self) -> None:
        with registry_lock:
            self.handles += 1

    def detach(self, before_release: Callable[[], None] | None = None) -> None:
        """Drop one handle's reference; the last one runs ``before_release`` and releases the files."""
        with registry_lock:
            self.handles -= 1
            if self.handles > 0 or self.closed:
                return
            self.closed = True
            for key, shared in list(_registry.items()):
                if shared is self:
                    del _registry[key]
        try:
            if before_release is not None:
                before_release()
        finally:
            opening.release(self.state)


def key_of(directory: Path, read_only: bool) -> tuple[str, bool]:
    return str(directory.resolve()), read_only


def find(directory: Path, read_only: bool) -> SharedStore | None:
    """The open store to share for a request (caller holds ``registry_lock``).

    A writer request shares only a writable store; a read-only request prefers a writable one
    (it sees every write at once) and else shares the read-only one.
    """
    candidates = [key_of(directory, False)] + ([key_of(directory, True)] if read_only else [])
    for key in candidates:
        shared = _registry.get(key)
        if shared is not None and not shared.closed:
            return shared
    return None


def register(directory: Path, shared: SharedStore) -> None:
    _registry[key_of(directory, shared.read_only)] = shared


__all__ = ["SharedStore", "find", "register", "registry_lock"]
