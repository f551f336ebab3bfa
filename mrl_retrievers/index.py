"""MRLIndex: texts in, hits out. A provider + a store (+ the provider's embedding cache).

The store remembers the ``EmbeddingSpec`` it was built with; an index opened with another
provider, model, width or rotation fails with ``SpecMismatchError`` instead of mixing vector spaces.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .config import Settings, load_config
from .errors import InvalidInputError
from .providers import Provider, from_config
from .store import StoreLike, VectorStore, open_store
from .types import Hit, Record

# Texts embedded and stored per step: each step is one provider round (cached as it completes)
# and one store transaction, so an interrupted ingestion resumes at the step it was in.
DEFAULT_STEP = 512

Progress = Callable[[int, int], None]


class MRLIndex:
    """Embed texts with a provider and keep them in a coarse-to-fine store.

    Example:
        >>> from mrl_retrievers import MRLIndex, get_provider
        >>> index = MRLIndex(get_provider("fake", dim=64))          # temporary store
        >>> _ = index.add_texts(["cats purr", "dogs bark"], ids=["c", "d"])
        >>> index.query("the cats purr loudly", k=1)[0].id
        'c'
        >>> index.close()
    """

    def __init__(self, embedder: Provider, store: VectorStore | StoreLike = None, **store_options: Any) -> None:
        self.embedder = embedder
        if isinstance(store, VectorStore):
            store.check_spec(embedder.spec)
            self.store = store
        else:
            self.store = open_store(store, full_dim=embedder.dim, spec=embedder.spec, **store_options)

    @classmethod
    def from_config(
        cls,
        source: str | Mapping[str, Any] | Settings | None = None,
        *,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> "MRLIndex":
        """Build the provider and the store that one config (TOML path, mapping or Settings) names.

        ``overrides`` (e.g. CLI flags) win over the file and the environment.
        """
        if isinstance(source, Settings):
            settings = source
            for block, values in (overrides or {}).items():
                settings = dataclasses.replace(settings, **{block: dataclasses.replace(getattr(settings, block), **values)})
        else:
            settings = load_config(source, overrides=overrides)
        return cls(from_config(settings), settings)

    # --- writes ------------------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        step: int = DEFAULT_STEP,
        progress: Progress | None = None,
    ) -> list[str]:
        """Embed and store ``texts`` (upsert by id; ``ids=None`` gives uuid4 ids).

        Work goes in steps of ``step`` texts: one provider round (at most one call per provider
        batch limit), one store transaction. Returns the ids, in order.
        """
        texts, metadatas, ids = _check_batch(texts, metadatas, ids)
        for start in range(0, len(texts), step):
            stop = min(len(texts), start + step)
            vectors = self.embedder.embed_documents(texts[start:stop])
            self.store.add(ids[start:stop], vectors, texts=texts[start:stop], metadatas=metadatas[start:stop])
            if progress:
                progress(stop, len(texts))
        return ids

    async def aadd_texts(
        self,
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        step: int = DEFAULT_STEP,
    ) -> list[str]:
        """``add_texts`` with the provider's real async path; store writes run in a worker thread."""
        texts, metadatas, ids = _check_batch(texts, metadatas, ids)
        for start in range(0, len(texts), step):
            stop = min(len(texts), start + step)
            vectors = await self.embedder.aembed_documents(texts[start:stop])
            await asyncio.to_thread(self.store.add, ids[start:stop], vectors, texts[start:stop], metadatas[start:stop])
        return ids

    def delete(self, ids: Sequence[str]) -> int:
        return self.store.delete(ids)

    def reindex(self, prefix_dim: int) -> None:
        """Change the coarse width from the stored full vectors: no provider call."""
        self.store.reindex(prefix_dim=prefix_dim)

    # --- reads -------------------------------------------------------------------------------------

    def query(self, text: str, k: int = 5, shortlist: int | None = None, filter: Any = None) -> list[Hit]:
        """The ``k`` stored texts closest to ``text`` (one provider call, one store search)."""
        return self.store.search(self.embed_query(text), k=k, shortlist=shortlist, filter=filter)

    async def aquery(self, text: str, k: int = 5, shortlist: int | None = None, filter: Any = None) -> list[Hit]:
        vector = await self.embedder.aembed_query(_check_text(text))
        return await asyncio.to_thread(self.store.search, vector, k, shortlist, filter)

    def query_exact(self, text: str, k: int = 5, filter: Any = None) -> list[Hit]:
        """The exact full-width answer (the oracle), for comparison."""
        return self.store.search_exact(self.embed_query(text), k=k, filter=filter)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embedder.embed_query(_check_text(text))

    def get(self, ids: Sequence[str], include_vectors: bool = False) -> list[Record]:
        return self.store.get(ids, include_vectors=include_vectors)

    def __len__(self) -> int:
        return len(self.store)

    # --- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        self.store.close()
        self.embedder.close()

    def __enter__(self) -> "MRLIndex":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MRLIndex(embedder={self.embedder!r}, store={self.store!r})"


def _check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise InvalidInputError(f"query text must be a string, got {type(text).__name__}")
    return text


def _check_batch(texts: Any, metadatas: Any, ids: Any) -> tuple[list[str], list[Any], list[str]]:
    if isinstance(texts, str):
        raise InvalidInputError("texts must be a list of strings, not one string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(f"texts[{i}] must be a string, got {type(text).__name__}")
    ids = [str(uuid.uuid4()) for _ in texts] if ids is None else list(ids)
    metadatas = [None] * len(texts) if metadatas is None else list(metadatas)
    if not len(ids) == len(metadatas) == len(texts):
        raise InvalidInputError(f"got {len(texts)} texts, {len(ids)} ids and {len(metadatas)} metadatas")
    if len(set(ids)) != len(ids):
        from .errors import DuplicateIdError

        raise DuplicateIdError("the same id appears more than once in one add_texts call")
    return texts, metadatas, ids


__all__ = ["MRLIndex"]
