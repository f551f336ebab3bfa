"""Plain helpers of ``MRLVectorStore`` (no LangChain state): relevance, MMR, input checks, store options."""

from __future__ import annotations

import dataclasses
import os
import uuid
from typing import Any, Iterable

import numpy as np

from mrl_retrievers import Settings
from mrl_retrievers import VectorStore as StoreProtocol
from mrl_retrievers.checks import positive_int
from mrl_retrievers.config import StoreSettings
from mrl_retrievers.errors import ConfigError, InvalidInputError

# Creation options of a new store; prefix_dim and dtype travel in StoreSettings, the rest as-is.
STORE_KWARGS = ("prefix_dim", "dtype", "exact_below", "funnel_dim", "M", "ef_construction")


def cosine_relevance(cosine: float) -> float:
    """Relevance from a cosine similarity: the cosine itself, clipped to LangChain's [0, 1].

    It is what Chroma (cosine space) reports, ``_cosine_relevance_score_fn(1 - cos)``, and what
    ``InMemoryVectorStore`` scores are, so a threshold tuned on either selects the same documents.
    (Our scores are similarities, not distances: the base class's function would invert them.)
    """
    return min(1.0, max(0.0, float(cosine)))


def check_count(name: str, value: Any) -> int:
    """A non-negative integer (``k=0`` is a valid request for nothing, as reference stores treat it)."""
    return positive_int(name, value, minimum=0)


def mmr_select(query: np.ndarray, candidates: np.ndarray, k: int, lambda_mult: float) -> list[int]:
    """Indices of ``k`` rows of ``candidates`` (unit rows) by maximal marginal relevance to ``query``.

    Each step takes the row maximizing ``lambda * sim(query) - (1 - lambda) * max sim(selected)``;
    the first is the most similar. Ties go to the earlier row (the better-ranked hit).
    """
    n = len(candidates)
    to_query = candidates @ query
    redundancy = np.zeros(n, dtype=np.float64)
    chosen: list[int] = []
    available = np.ones(n, dtype=bool)
    for step in range(min(k, n)):
        score = to_query if step == 0 else lambda_mult * to_query - (1.0 - lambda_mult) * redundancy
        pick = int(np.argmax(np.where(available, score, -np.inf)))
        chosen.append(pick)
        available[pick] = False
        redundancy = np.maximum(redundancy, candidates @ candidates[pick]) if step else candidates @ candidates[pick]
    return chosen


def unit_rows(raw: Any, n: int) -> np.ndarray:
    """Embeddings as a float32 (n, dim) matrix of unit rows (zero / NaN rows are left for the store to
    reject with a typed error)."""
    try:
        rows = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"the embedding returned vectors of unequal width or non-numbers: {exc}") from None
    if rows.ndim != 2 or len(rows) != n:
        raise InvalidInputError(f"the embedding returned an array of shape {rows.shape} for {n} texts")
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        return rows / np.where(norms > 0, norms, 1.0).astype(np.float32)


def unit_vector(raw: Any) -> np.ndarray:
    return unit_rows([raw], 1)[0]


def prepare_add(
    texts: Iterable[str], metadatas: Any, ids: Any, batch_size: int | None, kwargs: dict[str, Any]
) -> tuple[list[str], list[dict[str, Any]], list[str], list[slice]]:
    """Validated lists (ids filled with uuid4 strings) and the batch slices. Nothing is mutated."""
    if kwargs:
        raise TypeError(f"MRLVectorStore.add_texts got unexpected arguments {sorted(kwargs)}")
    texts = list(texts)
    n = len(texts)
    metas = [dict(m) if m else {} for m in metadatas] if metadatas is not None else [{} for _ in range(n)]
    if len(metas) != n:
        raise InvalidInputError(f"got {len(metas)} metadatas for {n} texts")
    ids = [i if i is not None else str(uuid.uuid4()) for i in ids] if ids is not None else [str(uuid.uuid4()) for _ in range(n)]
    if len(ids) != n:
        raise InvalidInputError(f"got {len(ids)} ids for {n} texts")
    if batch_size is not None:
        batch_size = positive_int("batch_size", batch_size)
    step = batch_size or max(n, 1)
    return texts, metas, ids, [slice(i, min(i + step, n)) for i in range(0, n, step)]


def store_source(store: Any, store_kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Split creation options: prefix_dim/dtype go into a StoreSettings, the rest to the LazyStore."""
    unknown = sorted(set(store_kwargs) - set(STORE_KWARGS))
    if unknown:
        raise TypeError(f"MRLVectorStore got unexpected arguments {unknown}; store options: {', '.join(STORE_KWARGS)}")
    kwargs = dict(store_kwargs)
    in_settings = {name: kwargs.pop(name) for name in ("prefix_dim", "dtype") if name in kwargs}
    if in_settings:
        if isinstance(store, StoreProtocol):
            raise ConfigError(f"{sorted(in_settings)} apply when a store is created; {getattr(store, 'path', store)} exists "
                              "(change its prefix width with store.reindex(prefix_dim=...))")
        base = store.store if isinstance(store, Settings) else store if isinstance(store, StoreSettings) else StoreSettings(
            path=None if store is None else os.fspath(store))
        store = dataclasses.replace(base, **in_settings)
    return store, kwargs


__all__ = ["check_count", "cosine_relevance", "mmr_select", "prepare_add", "store_source", "unit_rows", "unit_vector"]
