"""A provider wrapper that looks texts up in an ``EmbeddingCache`` before paying for them.

Lives here rather than in ``mrl_retrievers.cache`` because the cache sits below the providers in
the layering (it knows specs and vectors, never providers).

Example:
    >>> from mrl_retrievers.cache import EmbeddingCache
    >>> from mrl_retrievers.providers.fake import FakeProvider
    >>> inner = FakeProvider(dim=8)
    >>> emb = CachedProvider(inner, EmbeddingCache())
    >>> _ = emb.embed_documents(["a", "b"]); _ = emb.embed_documents(["a", "b", "c"])
    >>> inner.texts_embedded
    3
"""

from __future__ import annotations

import os
from typing import AsyncIterator, Iterator, Sequence

import numpy as np

from ..cache import EmbeddingCache
from ..media import cache_key
from ..types import EmbeddingSpec
from . import multimodal
from .base import Kind, Provider, _check_kind, _check_texts


class CachedProvider(Provider):
    """Same vectors and spec as ``provider``; texts already cached for that spec are not re-sent.

    Misses are de-duplicated, embedded by ``provider`` batch by batch, and each finished batch is
    committed to the cache before the next result is used, so a killed process loses at most the
    batches in flight. Images and interleaved inputs (``embed_images`` / ``embed_inputs``) are
    cached too, keyed by their texts and the sha256 of their image bytes (``media.cache_key``).

    Args:
        provider: the provider to wrap.
        cache: an ``EmbeddingCache``, or a path to open one at (closed with this provider).

    Attributes:
        hits / misses: texts served from the cache / sent to the provider (unique texts).
    """

    def __init__(self, provider: Provider, cache: EmbeddingCache | str | os.PathLike[str]) -> None:
        if isinstance(provider, CachedProvider):
            provider = provider.inner
        self.inner = provider
        self._owns_cache = not isinstance(cache, EmbeddingCache)
        self.cache = EmbeddingCache(cache) if self._owns_cache else cache
        self.name = provider.name  # type: ignore[misc]  # the registry name of what we wrap
        self.model = provider.model
        self.dim = provider.dim
        self.reject_empty = provider.reject_empty  # type: ignore[misc]
        for capability in ("modalities", "interleaved", "image_types", "image_urls", "max_images_per_input"):
            setattr(self, capability, getattr(provider, capability))
        self.batch_size = provider.batch_size
        self.max_concurrency = provider.max_concurrency
        self.hits = 0
        self.misses = 0

    @property
    def spec(self) -> EmbeddingSpec:
        return self.inner.spec

    def _embed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        return self.inner._embed_batch(texts, kind)  # noqa: SLF001 - not used by our own paths

    def _lookup(
        self, items: Sequence[str], kind: str
    ) -> tuple[list[str], EmbeddingSpec, tuple[np.ndarray, np.ndarray] | None, list[str], dict[str, list[int]]]:
        """Cache hits for ``items`` (texts, or the cache keys of other inputs) and the unique misses."""
        _check_kind(kind)
        spec = self.spec
        cached = self.cache.get_many(spec, kind, items)
        hit_pos = [i for i, v in enumerate(cached) if v is not None]
        where: dict[str, list[int]] = {}
        for i, v in enumerate(cached):
            if v is None:
                where.setdefault(items[i], []).append(i)
        self.hits += len(hit_pos)
        self.misses += len(where)
        hits = None
        if hit_pos:
            hits = (np.asarray(hit_pos, dtype=np.intp), np.stack([cached[i] for i in hit_pos]))
        return items, spec, hits, list(where), where

    def _store(self, spec: EmbeddingSpec, kind: str, missing: list[str], where: dict[str, list[int]],
               positions: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = [missing[i] for i in positions]
        self.cache.put_many(spec, kind, batch, vectors)
        # Map back to the caller's positions, repeating vectors of duplicated texts.
        out_pos = [p for text in batch for p in where[text]]
        reps = [len(where[text]) for text in batch]
        return np.asarray(out_pos, dtype=np.intp), np.repeat(vectors, reps, axis=0)

    def iter_embed(self, texts: Sequence[str], kind: Kind = "document") -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Cached vectors first (one batch), then each provider batch as it is committed."""
        _items, spec, hits, missing, where = self._lookup(_check_texts(texts, self.reject_empty), kind)
        if hits is not None:
            yield hits
        if missing:
            for positions, vectors in self.inner.iter_embed(missing, kind):
                yield self._store(spec, kind, missing, where, positions, vectors)

    def iter_embed_inputs(self, inputs: Sequence[object], kind: Kind = "document") -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``iter_embed`` for texts, images and interleaved inputs, through the cache."""
        items = multimodal.check_inputs(self.inner, inputs)
        by_key = {cache_key(item): item for item in items}
        _keys, spec, hits, missing, where = self._lookup(list(map(cache_key, items)), kind)
        if hits is not None:
            yield hits
        if missing:
            for positions, vectors in self.inner.iter_embed_inputs([by_key[k] for k in missing], kind):
                yield self._store(spec, kind, missing, where, positions, vectors)

    async def aiter_embed_inputs(
        self, inputs: Sequence[object], kind: Kind = "document"
    ) -> AsyncIterator[tuple[np.ndarray, np.ndarray]]:
        """Async ``iter_embed_inputs``."""
        items = multimodal.check_inputs(self.inner, inputs)
        by_key = {cache_key(item): item for item in items}
        _keys, spec, hits, missing, where = self._lookup(list(map(cache_key, items)), kind)
        if hits is not None:
            yield hits
        if missing:
            async for positions, vectors in self.inner.aiter_embed_inputs([by_key[k] for k in missing], kind):
                yield self._store(spec, kind, missing, where, positions, vectors)

    async def aiter_embed(
        self, texts: Sequence[str], kind: Kind = "document"
    ) -> AsyncIterator[tuple[np.ndarray, np.ndarray]]:
        """Async ``iter_embed``."""
        _items, spec, hits, missing, where = self._lookup(_check_texts(texts, self.reject_empty), kind)
        if hits is not None:
            yield hits
        if missing:
            async for positions, vectors in self.inner.aiter_embed(missing, kind):
                yield self._store(spec, kind, missing, where, positions, vectors)

    def close(self) -> None:
        self.inner.close()
        if self._owns_cache:
            self.cache.close()

    async def aclose(self) -> None:
        await self.inner.aclose()
        if self._owns_cache:
            self.cache.close()

    def __repr__(self) -> str:
        return f"CachedProvider({self.inner!r}, {self.cache!r})"

    __str__ = __repr__


__all__ = ["CachedProvider"]
