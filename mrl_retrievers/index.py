"""MRLIndex: texts in, hits out. A provider + a store (+ the provider's embedding cache).

The store remembers the ``EmbeddingSpec`` it was built with; an index opened with another
provider, model, width or rotation fails with ``SpecMismatchError`` instead of mixing vector spaces.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .config import Settings, load_config
from .errors import InvalidInputError
from .providers import Provider, from_config
from .store import StoreLike, VectorStore, open_store
from .types import Hit, Record

# Texts embedded and stored per step: each step is one provider round (its batches cached as they
# complete) and one store transaction, so an interrupted ingestion resumes at the step it was in.
# The default step is one full round of the provider (batch_size x max_concurrency), at least
# DEFAULT_STEP and at most MAX_DEFAULT_STEP texts (bounds memory and what an uncached failure loses).
DEFAULT_STEP = 512
MAX_DEFAULT_STEP = 4096

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
        step: int | None = None,
        progress: Progress | None = None,
    ) -> list[str]:
        """Embed and store ``texts`` (upsert by id; ``ids=None`` gives uuid4 ids).

        Work goes in steps of ``step`` texts (default: one full provider round, see
        ``default_step``): one provider round (at most ``max_concurrency`` requests in flight),
        then one store transaction. Steps are pipelined: step N+1 is embedded while step N is
        written by one writer thread, and the writes land in order, so when an error stops the
        ingestion every step before the failing one is stored whole and nothing of a later one is.
        ``progress(done, total)`` is called in this thread after each step is stored. Returns the
        ids, in order.
        """
        texts, metadatas, ids = _check_batch(texts, metadatas, ids)
        spans = self._spans(len(texts), step)
        with _Writer(self.store, progress, len(texts), threaded=len(spans) > 1) as writer:
            for start, stop in spans:
                vectors = self.embedder.embed_documents(texts[start:stop])
                writer.put(ids[start:stop], vectors, texts[start:stop], metadatas[start:stop], stop)
        return ids

    async def aadd_texts(
        self,
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        step: int | None = None,
        progress: Progress | None = None,
    ) -> list[str]:
        """``add_texts`` with the provider's real async path; store writes run in a worker thread,
        pipelined the same way (step N is written while step N+1 is embedded)."""
        texts, metadatas, ids = _check_batch(texts, metadatas, ids)
        pending: tuple[asyncio.Future, int] | None = None

        async def drain() -> None:
            nonlocal pending
            if pending is not None:
                future, stop = pending
                pending = None
                await future
                if progress:
                    progress(stop, len(texts))

        try:
            for start, stop in self._spans(len(texts), step):
                vectors = await self.embedder.aembed_documents(texts[start:stop])
                await drain()
                write = asyncio.to_thread(self.store.add, ids[start:stop], vectors, texts[start:stop], metadatas[start:stop])
                pending = (asyncio.ensure_future(write), stop)
            await drain()
        except BaseException:
            if pending is not None:
                # Let the step being written commit (or fail) before the error propagates: a
                # re-run then finds every step before the failing one stored.
                await asyncio.wait([pending[0]])
                if not pending[0].cancelled() and pending[0].exception() is not None:
                    raise pending[0].exception()  # noqa: B904 - the earlier step failed first
            raise
        return ids

    def default_step(self) -> int:
        """Texts per step when ``step`` is not given: one full provider round, within bounds."""
        round_size = getattr(self.embedder, "batch_size", 0) * getattr(self.embedder, "max_concurrency", 1)
        return int(min(MAX_DEFAULT_STEP, max(DEFAULT_STEP, round_size)))

    def _spans(self, n: int, step: int | None) -> list[tuple[int, int]]:
        if step is None:
            step = self.default_step()
        elif isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
            raise InvalidInputError(f"step must be an integer >= 1, got {step!r}")
        step = int(step)
        return [(start, min(n, start + step)) for start in range(0, n, step)]

    def delete(self, ids: Sequence[str]) -> int:
        return self.store.delete(ids)

    def reindex(self, prefix_dim: int) -> None:
        """Change the coarse width from the stored full vectors: no provider call."""
        self.store.reindex(prefix_dim=prefix_dim)

    # --- reads -------------------------------------------------------------------------------------

    def query(self, text: str, k: int = 5, shortlist: int | None = None, filter: Any = None, *,
              target_recall: float | None = None) -> list[Hit]:
        """The ``k`` stored texts closest to ``text`` (one provider call, one store search).
        ``target_recall``: recall@10 to aim for (None: the store's target)."""
        effort = {} if target_recall is None else {"target_recall": target_recall}
        return self.store.search(self.embed_query(text), k=k, shortlist=shortlist, filter=filter, **effort)

    async def aquery(self, text: str, k: int = 5, shortlist: int | None = None, filter: Any = None, *,
                     target_recall: float | None = None) -> list[Hit]:
        vector = await self.embedder.aembed_query(_check_text(text))
        effort = {} if target_recall is None else {"target_recall": target_recall}
        return await asyncio.to_thread(functools.partial(self.store.search, vector, k, shortlist, filter, **effort))

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


class _Writer:
    """Writes steps to the store in order, one at a time, on one worker thread.

    ``put`` waits for the previous step's write (raising its error, reporting its progress), then
    starts this one and returns, so the caller embeds the next step meanwhile. Leaving the block
    waits for the last write; leaving it with an error still waits for the write in flight, so it
    commits (or fails) before the error propagates. ``threaded=False`` writes inline (one step).
    """

    def __init__(self, store: VectorStore, progress: Progress | None, total: int, *, threaded: bool) -> None:
        self._store, self._progress, self._total = store, progress, total
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mrl-store-writer") if threaded else None
        self._pending: tuple[Future, int] | None = None

    def put(self, ids: list[str], vectors: np.ndarray, texts: list[str], metadatas: list[Any], stop: int) -> None:
        self._drain()
        if self._pool is None:
            self._store.add(ids, vectors, texts=texts, metadatas=metadatas)
            self._report(stop)
        else:
            self._pending = (self._pool.submit(self._store.add, ids, vectors, texts=texts, metadatas=metadatas), stop)

    def _drain(self) -> None:
        if self._pending is not None:
            future, stop = self._pending
            self._pending = None
            future.result()
            self._report(stop)

    def _report(self, stop: int) -> None:
        if self._progress:
            self._progress(stop, self._total)

    def __enter__(self) -> "_Writer":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self._drain()
            elif self._pending is not None:
                # An error (the next step's embedding, usually): the step being written still
                # commits first. If that write failed too, its error is the one raised (it was
                # the earlier step), with this one as its context.
                future, _ = self._pending
                self._pending = None
                wait([future])
                if future.exception() is not None:
                    raise future.exception()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)


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
