"""Open or create a store from a path, a ``[store]`` settings block, or an existing handle.

The one place that turns configuration into a store, shared by MRLIndex, the CLI and the framework
integrations (which often learn the full width only from the first vector they see). Opening and
creating are separate on purpose: ``open_existing`` never writes a file, ``create_store`` is called
by code that has the vectors in hand, and ``open_store`` (open, else create) is for callers that
want both.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

from ..config import Settings, StoreSettings
from ..errors import ConfigError, StoreNotFoundError
from ..types import EmbeddingSpec
from .local import MRLStore
from .protocol import VectorStore

StoreLike = Union[VectorStore, StoreSettings, Settings, str, "os.PathLike[str]", None]


def store_settings(store: StoreLike) -> StoreSettings:
    """The ``[store]`` block ``store`` stands for (a path is a local store at that path)."""
    if isinstance(store, Settings):
        return store.store
    if isinstance(store, StoreSettings):
        return store
    if isinstance(store, VectorStore):
        raise ConfigError("an open store has no settings to read")
    return StoreSettings(path=None if store is None else os.fspath(store))


def store_exists(store: StoreLike) -> bool:
    """Whether ``store`` names a store that exists now (an open handle always does).

    Local: the directory holds a manifest. Qdrant: the collection can be opened (a network call
    for a server). A temporary store (no path) never exists before it is created.
    """
    if isinstance(store, VectorStore):
        return True
    settings = store_settings(store)
    if settings.backend == "qdrant":
        if settings.url is None and settings.path is None:
            return False
        try:
            open_existing(settings).close()
        except StoreNotFoundError:
            return False
        return True
    return settings.path is not None and (Path(settings.path) / "manifest.json").is_file()


def open_existing(store: StoreLike, *, read_only: bool = False, spec: EmbeddingSpec | None = None) -> VectorStore:
    """Open the store ``store`` names; never creates anything.

    ``read_only`` opens a local store without the writer lock (works beside a running writer).
    ``spec``, if given, must match the store's (``SpecMismatchError`` otherwise).

    Raises:
        StoreNotFoundError: nothing is there (the message says how to create it).
    """
    if isinstance(store, VectorStore):
        if spec is not None:
            store.check_spec(spec)
        return store
    settings = store_settings(store)
    _check_backend(settings)
    if settings.backend == "qdrant":
        from .qdrant import open_from_settings  # qdrant-client is imported lazily

        return open_from_settings(settings, full_dim=None, spec=spec)
    if settings.path is None:
        raise StoreNotFoundError("a temporary store (no path) cannot be opened: it exists only once created")
    return MRLStore.open(settings.path, read_only=read_only, spec=spec)


def create_store(store: StoreLike, *, full_dim: int, spec: EmbeddingSpec | None = None, **create_kwargs: Any) -> VectorStore:
    """Create the store ``store`` names, for ``full_dim``-wide vectors (``None`` path: temporary).

    ``create_kwargs`` (``prefix_dim``, ``dtype``, ``exact_below``, ...) win over the settings. The
    coarse width is the one given, else ``StoreSettings.prefix_dim_for(full_dim)``: a width wider
    than the vectors is an error, never clamped.

    Raises:
        StoreExistsError: a local store is already there (open it instead).
    """
    settings = store_settings(store)
    _check_backend(settings)
    if settings.backend == "qdrant":  # created if missing (an existing collection is opened and checked)
        from .qdrant import open_from_settings

        if create_kwargs.get("prefix_dim") is None:
            create_kwargs["prefix_dim"] = settings.prefix_dim_for(full_dim)
        return open_from_settings(settings, full_dim=full_dim, spec=spec, **create_kwargs)
    options = {
        "prefix_dim": settings.prefix_dim_for(full_dim) if create_kwargs.get("prefix_dim") is None else None,
        "dtype": settings.dtype, "shortlist": settings.shortlist, "ef": settings.ef,
        "exact_below": settings.exact_below, "target_recall": settings.target_recall, "funnel_dim": settings.funnel_dim,
    }
    options.update({k: v for k, v in create_kwargs.items() if v is not None})
    return MRLStore.create(settings.path, full_dim=full_dim, spec=spec, **{k: v for k, v in options.items() if v is not None})


def open_store(store: StoreLike, *, full_dim: int | None, spec: EmbeddingSpec | None = None, **create_kwargs: Any) -> VectorStore:
    """Return an open store for ``store``, creating it if it does not exist yet.

    ``full_dim`` is the width of the vectors that will be stored, checked against an existing
    store; ``spec`` is checked against (or recorded in) the store. ``None`` makes a temporary
    store. ``full_dim=None`` (width not known yet) only opens, and raises ``StoreNotFoundError``
    when nothing is there. ``create_kwargs`` apply only when the store is created (see
    ``create_store``).
    """
    try:
        opened = open_existing(store)
    except StoreNotFoundError:
        if full_dim is None:
            raise
        return create_store(store, full_dim=full_dim, spec=spec, **create_kwargs)
    # On a mismatch the handle is not closed here: a store opened twice in a process is one shared
    # handle, and closing it would close the other user's too.
    if full_dim is not None and opened.full_dim != full_dim:
        raise ConfigError(f"{_where(opened)} holds {opened.full_dim}-wide vectors; these are {full_dim}-wide")
    if spec is not None:
        opened.check_spec(spec)
    return opened


def _check_backend(settings: StoreSettings) -> None:
    if settings.backend not in ("local", "qdrant"):
        raise ConfigError(f"[store] backend {settings.backend!r} is not available in this version; use 'local' or 'qdrant'")


def _where(store: VectorStore) -> str:
    return f"store {store.path}" if isinstance(store, MRLStore) else f"Qdrant collection {getattr(store, 'collection', '?')!r}"


__all__ = ["StoreLike", "create_store", "open_existing", "open_store", "store_exists", "store_settings"]
