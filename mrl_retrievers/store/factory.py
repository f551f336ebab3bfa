"""Open-or-create a store from a path, a ``[store]`` settings block, or an existing handle.

The one place that turns configuration into a store, shared by MRLIndex, the CLI and the framework
integrations (which often learn the full width only from the first vector they see).
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


def open_store(store: StoreLike, *, full_dim: int | None, spec: EmbeddingSpec | None = None, **create_kwargs: Any) -> VectorStore:
    """Return an open store for ``store``, creating it if it does not exist yet.

    ``full_dim`` is the width of the vectors that will be stored. A configured ``prefix_dim``
    wider than ``full_dim`` is clamped to it (tiny test embeddings), and ``spec`` is checked
    against (or recorded in) the store. ``None`` makes a temporary store. ``full_dim=None``
    (width not known yet) only opens an existing local store and raises ``StoreNotFoundError``
    otherwise. ``create_kwargs`` (``prefix_dim``, ``dtype``, ``exact_below``, ...) apply only when
    the store is created, and win over the settings.
    """
    if isinstance(store, VectorStore):  # an open store of any backend
        if full_dim is not None and store.full_dim != full_dim:
            where = store.path if isinstance(store, MRLStore) else f"Qdrant collection {getattr(store, 'collection', '?')!r}"
            raise ConfigError(f"store {where} holds {store.full_dim}-wide vectors; these are {full_dim}-wide")
        if spec is not None:
            store.check_spec(spec)
        return store
    settings = store.store if isinstance(store, Settings) else store if isinstance(store, StoreSettings) else StoreSettings(
        path=None if store is None else os.fspath(store)
    )
    if settings.backend == "qdrant":  # url / path / in-memory; created if missing (qdrant-client imported lazily)
        from .qdrant import open_from_settings

        return open_from_settings(settings, full_dim=full_dim, spec=spec, **create_kwargs)
    if settings.backend != "local":
        raise ConfigError(f"[store] backend {settings.backend!r} is not available in this version; use 'local' or 'qdrant'")
    if full_dim is None or (settings.path is not None and (Path(settings.path) / "manifest.json").exists()):
        if settings.path is None:
            raise StoreNotFoundError("a temporary store cannot be opened before its width is known")
        opened = MRLStore.open(settings.path)
        if full_dim is not None and opened.full_dim != full_dim:
            raise ConfigError(f"store {settings.path} holds {opened.full_dim}-wide vectors; these are {full_dim}-wide")
        if spec is not None:
            opened.check_spec(spec)
        return opened
    options = {
        "prefix_dim": settings.prefix_dim, "dtype": settings.dtype, "shortlist": settings.shortlist, "ef": settings.ef,
        "exact_below": settings.exact_below, "target_recall": settings.target_recall,
        "funnel_dim": settings.funnel_dim if settings.funnel_dim and settings.funnel_dim < full_dim else None,
    }
    options.update(create_kwargs)
    options["prefix_dim"] = min(options["prefix_dim"], full_dim)  # tiny test embeddings (6 dims)
    return MRLStore.create(settings.path, full_dim=full_dim, spec=spec, **{k: v for k, v in options.items() if v is not None})


__all__ = ["StoreLike", "open_store"]
