"""Two measurements that only apply to our store: framework wrapper overhead and the cold rerank.

* ``framework_overhead``: the same query vector through a bare ``store.search``, LangChain's
  ``MRLRetriever.invoke`` and LlamaIndex's ``MRLRetriever.retrieve`` (interleaved per query, so
  machine noise hits all three alike). The "embedding" is a provider that looks the query text up
  in a table: what is left is the wrappers' own cost.
* ``rerank_cold``: the rerank stage alone (gather the shortlist's full rows, check, score) with the
  vector file evicted from the page cache before every query, and the bytes the kernel really read.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np

from ..providers.base import Provider


class StoredQueries(Provider):
    """A provider that returns precomputed query vectors by text (``"q0"``, ``"q1"``, ...)."""

    name: ClassVar[str] = "bench"

    def __init__(self, model: str, dim: int, queries: np.ndarray | None = None) -> None:
        super().__init__(model=model, dim=dim)
        self._table = {f"q{i}": v for i, v in enumerate(queries if queries is not None else [])}

    def embed_query(self, text: str) -> np.ndarray:
        # Straight from the table: the provider layer's batching and checks are not what is measured.
        return self._table[text]

    async def aembed_query(self, text: str) -> np.ndarray:
        # The same lookup: MRLIndex.aquery's own cost (to_thread around the store search) is measured.
        return self._table[text]

    def _embed_batch(self, texts: list[str], kind: str) -> np.ndarray:
        try:
            return np.stack([self._table[t] for t in texts])
        except KeyError as exc:
            raise NotImplementedError(f"StoredQueries knows only its query texts, not {exc}") from None


def framework_overhead(store, queries: np.ndarray, k: int, setting: dict[str, Any]) -> dict[str, Any]:
    """p50 of bare ``store.search`` vs the LangChain and LlamaIndex retrievers at the store's defaults."""
    provider = StoredQueries(store.spec.model if store.spec else "stored-queries", store.full_dim, queries)
    calls = {"bare": lambda i: store.search(queries[i], k=k)}
    notes = {}
    try:
        from langchain_mrl import MRLEmbeddings, MRLRetriever, MRLVectorStore  # noqa: PLC0415

        lc = MRLRetriever(vectorstore=MRLVectorStore(MRLEmbeddings(provider), store=store), k=k)
        calls["langchain"] = lambda i: lc.invoke(f"q{i}")
    except ImportError as exc:
        notes["langchain"] = f"not measured: {exc}"
    try:
        from llama_index.embeddings.mrl import MRLEmbedding  # noqa: PLC0415
        from llama_index.retrievers.mrl import MRLRetriever as LIRetriever  # noqa: PLC0415
        from llama_index.vector_stores.mrl import MRLVectorStore as LIStore  # noqa: PLC0415

        li = LIRetriever(LIStore(store), MRLEmbedding(provider), similarity_top_k=k)
        calls["llamaindex"] = lambda i: li.retrieve(f"q{i}")
    except ImportError as exc:
        notes["llamaindex"] = f"not measured: {exc}"
    times: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for rep in range(2):  # the first pass warms caches and imports; only the second is kept
        for i in range(len(queries)):
            order = names[i % len(names):] + names[: i % len(names)]  # rotate who goes first
            for name in order:
                started = time.perf_counter()
                calls[name](i)
                if rep:
                    times[name].append(time.perf_counter() - started)
    bare = float(np.median(times["bare"]))
    out: dict[str, Any] = {"framework_p50_ms": {n: float(np.median(t)) * 1e3 for n, t in times.items()}}
    out["framework_ratio"] = {n: float(np.median(t)) / bare for n, t in times.items() if n != "bare"}
    if notes:
        out["framework_notes"] = notes
    return out


def rerank_cold(peer, queries: np.ndarray, k: int, candidates: int = 200) -> dict[str, Any]:
    """Cold-cache rerank of ``candidates`` shortlisted rows per query (gather + checksum + score),
    with the vector file evicted from the page cache before each query."""
    from ..mrl import normalize  # noqa: PLC0415

    stages = peer.store.diagnostics.search_stages  # the search's own stages, under the store's read lock
    setting = {"k": k, "shortlist": candidates, "ef": 2 * candidates}
    io = _io_counter()
    times, read = [], []
    for q in queries:
        query = normalize(q)
        rows = stages(lambda st, query=query: st.coarse(query)[0], **setting)
        peer.evict()  # outside the stages: eviction takes the read lock itself

        def timed(st, rows=rows, query=query) -> tuple[float, int]:
            before = io()
            started = time.perf_counter()
            st.rerank(query, rows)
            return time.perf_counter() - started, io() - before

        elapsed, bytes_read = stages(timed, **setting)
        times.append(elapsed)
        read.append(bytes_read)
    return {
        "rerank_cold_p50_ms": float(np.median(times)) * 1e3,
        "rerank_cold_p99_ms": float(np.percentile(times, 99)) * 1e3,
        "rerank_cold_candidates": stages(lambda st: st.plan.shortlist, **setting),
        "rerank_cold_kib_read": float(np.median(read)) / 1024,
    }


def _io_counter():
    """Bytes this process made the kernel read from storage (not from the page cache)."""
    try:
        import psutil  # noqa: PLC0415

        proc = psutil.Process()
        proc.io_counters()
        return lambda: proc.io_counters().read_bytes
    except (ImportError, AttributeError, OSError):
        return lambda: 0


__all__ = ["StoredQueries", "framework_overhead", "rerank_cold"]
