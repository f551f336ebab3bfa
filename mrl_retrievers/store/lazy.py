"""``LazyStore``: the store a framework object names, opened once the vector width is known.

LangChain and LlamaIndex objects are constructed before any vector exists (``MRLVectorStore(emb,
"my-index")``), but a store cannot be created without its width. This is the one place that bridges
the two, shared by both integrations:

* Constructing never creates anything: an existing store is opened, a missing one stays missing.
* The first write creates the store, with the vectors in hand; if that first write fails (bad
  metadata, a NaN vector...), the store it created is removed again, so a failed first call leaves
  nothing behind (no directory pinned to a width, nothing to delete by hand).
* A store another process holds for writing (``StoreLockedError``) is opened read-only instead, with
  a warning: web workers beside one indexing process. ``read_only=True`` asks for that from the
  start and never takes the writer lock (workers may then start before the writer).

Thread-safety: every method may be called from several threads; the store is opened or created
once, and the creating write runs alone, so no other write can land in a store that is rolled back.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Callable, TypeVar

from ..config import Settings, StoreSettings
from ..errors import ConfigError, ReadOnlyStoreError, StoreLockedError, StoreNotFoundError
from ..types import EmbeddingSpec
from .factory import StoreLike, open_store
from .local import MRLStore
from .protocol import VectorStore

log = logging.getLogger("mrl_retrievers.store")

T = TypeVar("T")


class LazyStore:
    """Open-or-create-on-first-write for a store source (path, settings block, open store, None).

    Args:
        source: an open store (any backend), a path, a ``StoreSettings``/``Settings`` block, or None
            for a temporary store (deleted on close).
        read_only: open read-only (never the writer lock; writes raise ``ReadOnlyStoreError``, and
            a missing store is not created). Local stores only.
        **create_kwargs: options for a store created here (``prefix_dim``, ``dtype``,
            ``exact_below``, ...), as ``open_store`` takes them.

    Example:
        >>> import numpy as np
        >>> lazy = LazyStore(None)
        >>> lazy.existing() is None  # nothing exists, nothing was created
        True
        >>> lazy.write(8, None, lambda s: s.add(["a"], np.eye(8)[:1]))
        ['a']
        >>> len(lazy.store)
        1
        >>> lazy.close()
    """

    def __init__(self, source: StoreLike, *, read_only: bool = False, **create_kwargs: Any) -> None:
        self._source = source
        self._read_only = bool(read_only)
        self._create_kwargs = dict(create_kwargs)
        self._lock = threading.RLock()
        self._verified = False  # width and spec checked once against what the caller writes or asks
        self._existed = False  # the directory of a store created here was there before (keep it)
        self._gave_up = False  # a missing non-local store is looked for once
        self._store: VectorStore | None = source if isinstance(source, VectorStore) else None
        self._settings = None if self._store is not None else _settings(source)
        if self._store is not None and create_kwargs:
            raise ConfigError(f"{sorted(create_kwargs)} apply when a store is created; this one is open already")
        if self._read_only and self._settings is not None and (self._settings.backend != "local" or self.path is None):
            raise ConfigError("read_only applies to a local store with a path (a temporary or Qdrant store has no read-only handle)")

    # --- what it names ----------------------------------------------------------------------------

    @property
    def store(self) -> VectorStore | None:
        """The open store, or None while it does not exist (or has not been looked for)."""
        return self._store

    @property
    def verified(self) -> VectorStore | None:
        """The store once ``checked``/``write`` accepted it (the per-call fast path), else None."""
        return self._store if self._verified else None

    @property
    def path(self) -> Path | None:
        """The local directory the source names (known before the store exists), else None."""
        if self._store is not None:
            path = getattr(self._store, "path", None)
            return None if path is None else Path(path)
        settings = self._settings
        return Path(settings.path) if settings is not None and settings.backend == "local" and settings.path else None

    @property
    def read_only(self) -> bool:
        """True for a read-only handle (asked for, or the fallback beside another process's writer)."""
        store = self._store
        return self._read_only or bool(getattr(store, "read_only", False))

    @property
    def source(self) -> StoreLike:
        return self._source

    # --- opening ----------------------------------------------------------------------------------

    def existing(self) -> VectorStore | None:
        """The store if it exists (opened now if needed), else None. Never creates anything.

        Cheap when the store is open; otherwise one look at the path (a local store another
        process creates later is found by the next call; a missing Qdrant collection is looked
        for once, as each look opens a client).
        """
        store = self._store
        if store is not None or self._settings is None or self._gave_up:
            return store
        with self._lock:
            if self._store is None:
                self._store = self._open_existing()
                self._gave_up = self._store is None and self._settings.backend != "local"
            return self._store

    def checked(self, width: int, spec: EmbeddingSpec | None) -> VectorStore | None:
        """``existing()``, checked once against the caller's width and spec (``ConfigError`` /
        ``SpecMismatchError`` on a mismatch), or None when there is no store yet."""
        store = self.existing()
        if store is None or self._verified:
            return store
        with self._lock:
            if not self._verified:
                open_store(store, full_dim=width, spec=spec)  # raises on a mismatch
                self._verified = True
        return store

    def check_writable(self) -> None:
        """Raise ``ReadOnlyStoreError`` now (before paying for embeddings) if writes cannot succeed."""
        if self._read_only or getattr(self.existing(), "read_only", False):
            where = self.path if self.path is not None else self._source
            raise ReadOnlyStoreError(
                f"store {where} is open read-only (asked for, or another process holds it for writing); "
                "write through the process that holds it, or construct this object once that process has closed it"
            )

    def write(self, width: int, spec: EmbeddingSpec | None, fn: Callable[[VectorStore], T]) -> T:
        """Run ``fn(store)``, creating the store first (``width`` wide, recording ``spec``) if it does
        not exist. If this call created the store and ``fn`` raises, the new store is removed."""
        self.check_writable()
        store = self.checked(width, spec)
        if store is not None:
            return fn(store)
        with self._lock:  # the creating write runs alone: nothing else can land in a store rolled back
            if self._store is not None:
                store = self._store
            else:
                store = self._create(width, spec)
                try:
                    result = fn(store)
                except BaseException:
                    _discard(store, self.path, self._existed)
                    raise
                self._store, self._verified = store, True
                return result
        return fn(store)

    def close(self) -> None:
        """Close the store if one is open (idempotent)."""
        store = self._store
        if store is not None:
            store.close()

    # --- internals --------------------------------------------------------------------------------

    def _open_existing(self) -> VectorStore | None:
        settings = self._settings
        if settings is None or (settings.path is None and settings.url is None):
            return None  # a temporary store exists only once written
        if self._read_only:
            try:
                return MRLStore.open(settings.path, read_only=True)
            except StoreNotFoundError:
                return None
        try:
            return open_store(settings, full_dim=None)
        except StoreNotFoundError:
            return None
        except StoreLockedError as exc:
            if settings.backend != "local":
                raise
            log.warning(
                "store %s is held for writing elsewhere (%s); opened read-only: searches work, writes raise "
                "ReadOnlyStoreError. Pass read_only=True to say so on purpose.", settings.path, exc,
            )
            return MRLStore.open(settings.path, read_only=True)

    def _create(self, width: int, spec: EmbeddingSpec | None) -> VectorStore:
        path = self.path
        self._existed = path is not None and path.exists()
        return open_store(self._settings, full_dim=width, spec=spec, **self._create_kwargs)


def _settings(source: Any) -> StoreSettings:
    if isinstance(source, Settings):
        return source.store
    if isinstance(source, StoreSettings):
        return source
    if source is None or isinstance(source, (str, os.PathLike)):
        return StoreSettings(path=None if source is None else os.fspath(source))
    raise ConfigError(
        f"a store must be a path, a StoreSettings/Settings block, an open store or None; got {type(source).__name__}"
    )


def _discard(store: VectorStore, path: Path | None, existed: bool) -> None:
    """Remove a store this process just created (its first write failed). Only its own files go."""
    store.close()  # a temporary store deletes itself here
    if path is None or not isinstance(store, MRLStore):
        return  # a Qdrant collection stays (empty): there is no directory to leave behind
    if not existed:
        shutil.rmtree(path, ignore_errors=True)
        return
    for child in path.iterdir():  # the directory was there (empty) before: keep it, empty
        shutil.rmtree(child) if child.is_dir() else child.unlink()


__all__ = ["LazyStore"]
