"""Copy every item from one store to another (local -> Qdrant and back) from the stored vectors.

Nothing is re-embedded: ids, texts, metadata and the stored full vectors are read in batches with
``get(..., include_vectors=True)`` and written with ``add``, in the source's insertion order. The
destination builds its own coarse index at its own prefix width. The destination must hold the same
vector space: equal widths, and the source's ``EmbeddingSpec`` (adopted if it has none).

Store URIs (for ``mrl-retrievers migrate SRC DST``):

- ``path/to/store``: a local ``MRLStore`` folder;
- ``qdrant://host[:port]/collection`` (``qdrants://`` for TLS): a Qdrant server; the API key comes
  from ``api_key=`` or the ``QDRANT_API_KEY`` / ``MRL_STORE_API_KEY`` environment variables, never
  from the URI;
- ``qdrant+path://folder[?collection=name]``: qdrant-client's local mode (tests and demos only).

Example:
    >>> import numpy as np
    >>> from mrl_retrievers.store import MRLStore
    >>> src = MRLStore.create(None, full_dim=8, prefix_dim=4)
    >>> _ = src.add(["a", "b"], np.eye(8)[:2])
    >>> dst = MRLStore.create(None, full_dim=8, prefix_dim=2)
    >>> migrate(src, dst)
    MigrationReport(copied=2, source_count=2, destination_count=2)
    >>> src.close(); dst.close()
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Iterator

import numpy as np

from ..config import Secret, StoreSettings
from ..checks import positive_int
from ..errors import ConfigError, SpecMismatchError

DEFAULT_BATCH = 512


@dataclasses.dataclass(frozen=True)
class MigrationReport:
    copied: int
    source_count: int
    destination_count: int


def migrate(src: Any, dst: Any, *, batch_size: int = DEFAULT_BATCH, progress: Callable[[int], None] | None = None) -> MigrationReport:
    """Copy every item of ``src`` into ``dst`` (upsert by id). Returns the counts.

    Costs one ``get`` and one ``add`` per batch; no provider call. Items written to ``src`` while
    this runs may or may not be copied; stop writers for an exact copy.
    """
    batch_size = positive_int("batch_size", batch_size, error=ConfigError)
    if src.full_dim != dst.full_dim:
        raise ConfigError(f"source holds {src.full_dim}-wide vectors, destination {dst.full_dim}-wide: nothing copied")
    if src.spec is not None:
        dst.check_spec(src.spec)
    elif dst.spec is not None:
        raise SpecMismatchError(
            f"the source records no EmbeddingSpec but the destination holds {dst.spec.provider}/{dst.spec.model}: "
            "refusing to mix vectors of unknown origin into it"
        )
    copied = 0
    for ids in iter_ids(src, batch_size):
        records = [r for r in src.get(ids, include_vectors=True) if r.vector is not None]
        if not records:
            continue
        dst.add([r.id for r in records], np.stack([r.vector for r in records]),
                texts=[r.text for r in records], metadatas=[r.metadata for r in records])
        copied += len(records)
        if progress is not None:
            progress(copied)
    return MigrationReport(copied=copied, source_count=len(src), destination_count=len(dst))


def iter_ids(store: Any, batch_size: int = DEFAULT_BATCH) -> Iterator[list[str]]:
    """Every id of ``store`` (``store.ids()``: insertion order), in lists of ``batch_size``."""
    ids = store.ids()
    for start in range(0, len(ids), batch_size):
        yield ids[start : start + batch_size]


# --- URIs (the CLI's SRC / DST) ----------------------------------------------------------------


def parse_store_uri(text: str, *, api_key: Secret | str | None = None) -> StoreSettings:
    """A ``[store]`` block for a store URI (see the module docstring)."""
    if not isinstance(text, str) or not text:
        raise ConfigError(f"a store URI must be a non-empty string, got {text!r}")
    if text.startswith("qdrant+path:"):
        rest = text[len("qdrant+path:"):].removeprefix("//")
        folder, _, query = rest.partition("?")
        collection = None
        if query:
            key, _, value = query.partition("=")
            if key != "collection" or not value:
                raise ConfigError(f"{text!r}: the only option of a qdrant+path URI is ?collection=NAME")
            collection = value
        if not folder:
            raise ConfigError(f"{text!r}: give the folder, e.g. qdrant+path://./qdrant-data?collection=docs")
        return StoreSettings(backend="qdrant", path=folder, collection=collection)
    for scheme, http in (("qdrant://", "http"), ("qdrants://", "https")):
        if text.startswith(scheme):
            hostport, _, collection = text[len(scheme):].partition("/")
            if not hostport or not collection or "/" in collection or "@" in hostport:
                raise ConfigError(f"{text!r}: expected {scheme}host[:port]/collection (keys go in QDRANT_API_KEY, not the URI)")
            if ":" not in hostport:
                hostport += ":6333"
            key = api_key if api_key is not None else os.environ.get("QDRANT_API_KEY") or os.environ.get("MRL_STORE_API_KEY")
            return StoreSettings(backend="qdrant", url=f"{http}://{hostport}", collection=collection,
                                 api_key=None if not key else key if isinstance(key, Secret) else Secret(key))
    return StoreSettings(backend="local", path=text)


def migrate_uris(src: str, dst: str, *, prefix_dim: int | None = None, batch_size: int = DEFAULT_BATCH,
                 api_key: Secret | str | None = None, progress: Callable[[int], None] | None = None) -> MigrationReport:
    """``mrl-retrievers migrate SRC DST``: open SRC (it must exist), open or create DST, copy, close both.

    A new DST gets the source's widths, dtype and spec (``prefix_dim`` overrides the coarse width).
    """
    from .factory import open_store

    source = open_store(parse_store_uri(src, api_key=api_key), full_dim=None)
    try:
        target = open_store(parse_store_uri(dst, api_key=api_key), full_dim=source.full_dim, spec=source.spec,
                            prefix_dim=prefix_dim or source.prefix_dim, dtype=getattr(source, "dtype", "float16"))
        try:
            return migrate(source, target, batch_size=batch_size, progress=progress)
        finally:
            target.close()
    finally:
        source.close()


__all__ = ["MigrationReport", "iter_ids", "migrate", "migrate_uris", "parse_store_uri"]
