"""``MRLVectorStore``: a LangChain ``VectorStore`` over the coarse-to-fine ``MRLStore``.

Swapping ``InMemoryVectorStore``, FAISS or Chroma for it is a one-line change; every search is a
coarse shortlist on the MRL prefix followed by an exact rerank on the full vectors.

Sync and async share one core: the only difference is how the texts are embedded (``embed_*`` vs
awaited ``aembed_*``). Store calls run in a worker thread on the async path (a write fsyncs), with
the same code and arguments as on the sync path, so both return identical results.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor
from langchain_core.vectorstores import VectorStore

from mrl_retrievers import EmbeddingSpec, Hit, MRLStore, open_store
from mrl_retrievers import VectorStore as StoreProtocol
from mrl_retrievers.errors import ConfigError, InvalidInputError

from ._filters import to_mrl_filter
from ._utils import cosine_relevance, mmr_select, open_existing, prepare_add, store_source, unit_rows, unit_vector
from .embeddings import MRLEmbeddings

_SEARCH_KWARGS = ("shortlist", "filter", "score_threshold", "ef", "target_recall")


@dataclasses.dataclass(frozen=True)
class _Search:
    shortlist: int | None = None
    filter: Any = None
    score_threshold: float | None = None
    ef: int | None = None
    target_recall: float | None = None


class MRLVectorStore(VectorStore):
    """A persistent LangChain vector store with coarse-to-fine MRL retrieval.

    Args:
        embedding: ``MRLEmbeddings`` or any LangChain ``Embeddings`` (e.g.
            ``OpenAIEmbeddings(dimensions=1024)``). For an embedding we do not know, the width is
            learnt from the first vector, vectors are renormalized, and the store records a spec
            named after the class (``langchain:OpenAIEmbeddings``) so another model cannot be mixed in.
        store: a path (opened if it holds a store, else created there), an open ``MRLStore``, a
            ``StoreSettings`` / ``Settings`` block, or None for a temporary store.
        shortlist: default coarse shortlist per search (None: the store's default).
        ef: default hnswlib ``ef`` per search (None: the store's default).
        target_recall: default recall@10 per search (None: the store's target; the store adapts
            each query's effort to it; do not combine with ``shortlist``/``ef``, which fix it).
        **store_kwargs: options used only when the store is created: ``prefix_dim``, ``dtype``,
            ``exact_below`` (0 forces the ANN path), ``funnel_dim``, ``M``, ``ef_construction``.

    Nothing is pickled: reopening the same path gives the same documents without
    ``allow_dangerous_deserialization``. Thread-safety: searches run in parallel and beside writes.

    Example:
        >>> from langchain_mrl import MRLEmbeddings, MRLVectorStore
        >>> vs = MRLVectorStore(MRLEmbeddings("fake", dim=32))
        >>> vs.add_texts(["red apple pie", "blue whale song"], ids=["a", "b"])
        ['a', 'b']
        >>> vs.similarity_search("apple", k=1)[0].id
        'a'
    """

    def __init__(
        self,
        embedding: Embeddings,
        store: Any = None,
        *,
        shortlist: int | None = None,
        ef: int | None = None,
        target_recall: float | None = None,
        **store_kwargs: Any,
    ) -> None:
        if not (callable(getattr(embedding, "embed_documents", None)) and callable(getattr(embedding, "embed_query", None))):
            raise ConfigError(f"embedding must be a LangChain Embeddings, got {type(embedding).__name__}")
        self._embedding = embedding
        self._mrl = embedding.client if isinstance(embedding, MRLEmbeddings) else None
        self._store_like, self._create_kwargs = store_source(store, store_kwargs)
        self.shortlist = shortlist
        self.ef = ef
        self.target_recall = target_recall
        self._lock = threading.Lock()
        self._store: MRLStore | None = None
        self._verified = False  # width and spec checked against the embedding
        if self._mrl is not None:  # the width is known: open or create now (checks the spec)
            self._store = self._open(self._mrl.dim)
            self._verified = True
        elif isinstance(store, StoreProtocol):  # an open store of any backend (local, Qdrant)
            self._store = store
        else:
            self._store = open_existing(self._store_like)

    # --- what it is ---------------------------------------------------------------------------------

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    @property
    def store(self) -> MRLStore | None:
        """The underlying ``MRLStore`` (None until the first vector when the width is not known yet)."""
        return self._store

    def close(self) -> None:
        """Close the underlying store (checkpoint, release the writer lock). Other handles of the same
        store in this process are the same object: close only when done with it everywhere."""
        if self._store is not None:
            self._store.close()

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return cosine_relevance

    # --- writes -------------------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed and upsert texts (by id; ids default to uuid4 strings). Returns the ids.

        Each batch of ``batch_size`` texts (default: all) is one provider call sequence and one
        store transaction, durable when this returns. Costs one embedding per text.
        """
        texts, metas, ids, batches = prepare_add(texts, metadatas, ids, batch_size, kwargs)
        for part in batches:
            vectors = self._document_vectors(texts[part])
            self._write(ids[part], vectors, texts[part], metas[part])
        return ids

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Async ``add_texts``: awaits ``aembed_documents``; the store write runs in a thread."""
        texts, metas, ids, batches = prepare_add(texts, metadatas, ids, batch_size, kwargs)
        for part in batches:
            vectors = await self._adocument_vectors(texts[part])
            await run_in_executor(None, self._write, ids[part], vectors, texts[part], metas[part])
        return ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete by id; unknown ids are ignored. Durable when it returns."""
        if kwargs:
            raise TypeError(f"MRLVectorStore.delete got unexpected arguments {sorted(kwargs)}")
        if ids is None:
            raise InvalidInputError("delete needs a list of ids (deleting everything is not supported: remove the store)")
        if self._store is not None and ids:
            self._store.delete(list(ids))
        return True

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        return await run_in_executor(None, self.delete, ids, **kwargs)

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Documents for the ids that exist, in the order asked (missing ids are skipped)."""
        if self._store is None or not ids:
            return []
        return [Document(id=r.id, page_content=r.text or "", metadata=dict(r.metadata)) for r in self._store.get(list(ids))]

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return await run_in_executor(None, self.get_by_ids, ids)

    # --- similarity search --------------------------------------------------------------------------

    def similarity_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        """Top-``k`` documents with their cosine similarity (full vectors; higher is better).

        Keyword arguments: ``shortlist``, ``filter`` (dict syntax), ``score_threshold`` (minimum
        *relevance* ``(1 + cos) / 2``, as everywhere in LangChain), ``ef``, ``target_recall``. Costs one query embedding.
        """
        options = self._options(kwargs)
        if self._store is None:  # nothing stored yet: no need to pay for the query embedding
            return []
        return self._scored(self._query_vector(query), k, options)

    async def asimilarity_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        options = self._options(kwargs)
        if self._store is None:
            return []
        vector = await self._aquery_vector(query)
        return await run_in_executor(None, self._scored, vector, k, options)

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        options = self._options(kwargs)
        return [] if self._store is None else self._scored(unit_vector(embedding), k, options)

    async def asimilarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        return await run_in_executor(None, self.similarity_search_with_score_by_vector, embedding, k, **kwargs)

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        options = self._options(kwargs)
        if self._store is None:
            return []
        return [_document(hit) for hit in self._hits(self._query_vector(query), k, options)]

    async def asimilarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in await self.asimilarity_search_with_score(query, k, **kwargs)]

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, **kwargs)]

    async def asimilarity_search_by_vector(self, embedding: list[float], k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in await self.asimilarity_search_with_score_by_vector(embedding, k, **kwargs)]

    # --- maximal marginal relevance (on the full stored vectors) -----------------------------------

    def max_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        """``k`` documents chosen among the ``fetch_k`` most similar for relevance and diversity.

        ``lambda_mult`` = 1 is plain similarity, 0 is maximal diversity. Diversity is measured on the
        full stored vectors, not on the prefix.
        """
        options = self._options(kwargs)
        _check_lambda(lambda_mult)  # before paying for the query embedding
        if self._store is None:
            return []
        return self._mmr(self._query_vector(query), k, fetch_k, lambda_mult, options)

    async def amax_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        options = self._options(kwargs)
        _check_lambda(lambda_mult)
        if self._store is None:
            return []
        vector = await self._aquery_vector(query)
        return await run_in_executor(None, self._mmr, vector, k, fetch_k, lambda_mult, options)

    def max_marginal_relevance_search_by_vector(
        self, embedding: list[float], k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        options = self._options(kwargs)
        return [] if self._store is None else self._mmr(unit_vector(embedding), k, fetch_k, lambda_mult, options)

    async def amax_marginal_relevance_search_by_vector(
        self, embedding: list[float], k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        return await run_in_executor(
            None, self.max_marginal_relevance_search_by_vector, embedding, k, fetch_k, lambda_mult, **kwargs
        )

    # --- constructors -----------------------------------------------------------------------------

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        store: Any = None,
        **kwargs: Any,
    ) -> "MRLVectorStore":
        """A store (``store``: path / MRLStore / settings / None) holding ``texts``.

        Example:
            >>> vs = MRLVectorStore.from_texts(["a cat", "a dog"], MRLEmbeddings("fake", dim=8))
            >>> len(vs.similarity_search("cat", k=5))
            2
        """
        vectorstore = cls(embedding, store, **kwargs)
        vectorstore.add_texts(texts, metadatas, ids=ids)
        return vectorstore

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        store: Any = None,
        **kwargs: Any,
    ) -> "MRLVectorStore":
        vectorstore = await run_in_executor(None, cls, embedding, store, **kwargs)
        await vectorstore.aadd_texts(texts, metadatas, ids=ids)
        return vectorstore

    # --- the shared core (no embedding calls below: identical for sync and async) -------------------

    def _open(self, width: int) -> MRLStore:
        return open_store(self._store_like, full_dim=width, spec=self._spec(width), **self._create_kwargs)

    def _spec(self, width: int) -> EmbeddingSpec:
        if self._mrl is not None:
            return self._mrl.spec
        emb = self._embedding
        names = (getattr(emb, "model", None), getattr(emb, "model_name", None))
        model = next((n for n in names if isinstance(n, str) and n), type(emb).__name__)
        return EmbeddingSpec(provider=f"langchain:{type(emb).__name__}", model=model, dim=width)

    def _ready(self, width: int) -> MRLStore:
        """The store, created on the first vector if needed, checked once against width and spec."""
        if self._store is not None and self._verified:
            return self._store
        with self._lock:
            if self._store is None:
                self._store = self._open(width)
            elif not self._verified:
                open_store(self._store, full_dim=width, spec=self._spec(width))  # raises on a mismatch
            self._verified = True
            return self._store

    def _write(self, ids: list[str], vectors: np.ndarray, texts: list[str], metas: list[dict[str, Any]]) -> None:
        self._ready(vectors.shape[1]).add(ids, vectors, texts, metas)

    def _document_vectors(self, texts: list[str]) -> np.ndarray:
        if self._mrl is not None:  # straight from the provider: no round trip through Python lists
            return self._mrl.embed_documents(texts)
        return unit_rows(self._embedding.embed_documents(texts), len(texts))

    def _query_vector(self, text: str) -> np.ndarray:
        if self._mrl is not None:
            return self._mrl.embed_query(text)
        return unit_vector(self._embedding.embed_query(text))

    # The async twins differ from the two above only in awaiting the embedding's async path.
    async def _adocument_vectors(self, texts: list[str]) -> np.ndarray:
        if self._mrl is not None:
            return await self._mrl.aembed_documents(texts)
        return unit_rows(await self._embedding.aembed_documents(texts), len(texts))

    async def _aquery_vector(self, text: str) -> np.ndarray:
        if self._mrl is not None:
            return await self._mrl.aembed_query(text)
        return unit_vector(await self._embedding.aembed_query(text))

    def _options(self, kwargs: dict[str, Any]) -> _Search:
        if not kwargs:  # the common call: the store's defaults
            return _Search(shortlist=self.shortlist, ef=self.ef, target_recall=self.target_recall)
        unknown = sorted(set(kwargs) - set(_SEARCH_KWARGS))
        if unknown:
            raise TypeError(
                f"MRLVectorStore search got unexpected arguments {unknown}; accepted: k, {', '.join(_SEARCH_KWARGS)} "
                "(MMR also fetch_k, lambda_mult)"
            )
        threshold = kwargs.get("score_threshold")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or not 0.0 <= threshold <= 1.0):
            raise InvalidInputError(f"score_threshold is a relevance in [0, 1] ((1 + cosine) / 2), got {threshold!r}")
        return _Search(
            shortlist=kwargs.get("shortlist", self.shortlist),
            filter=to_mrl_filter(kwargs.get("filter")),
            score_threshold=threshold,
            ef=kwargs.get("ef", self.ef),
            target_recall=kwargs.get("target_recall", self.target_recall),
        )

    def _hits(self, vector: np.ndarray, k: int, options: _Search) -> list[Hit]:
        store = self._ready(len(vector))
        effort = {} if options.target_recall is None else {"target_recall": options.target_recall}
        hits = store.search(vector, k=k, shortlist=options.shortlist, filter=options.filter, ef=options.ef, **effort)
        if options.score_threshold is not None:
            hits = [h for h in hits if cosine_relevance(h.score) >= options.score_threshold]
        return hits

    def _scored(self, vector: np.ndarray, k: int, options: _Search) -> list[tuple[Document, float]]:
        return [(_document(hit), float(hit.score)) for hit in self._hits(vector, k, options)]

    def _mmr(self, vector: np.ndarray, k: int, fetch_k: int, lambda_mult: float, options: _Search) -> list[Document]:
        _check_lambda(lambda_mult)
        hits = self._hits(vector, max(k, fetch_k), options)
        records = {r.id: r for r in self._ready(len(vector)).get([h.id for h in hits], include_vectors=True)}
        hits = [h for h in hits if h.id in records]  # an item deleted meanwhile is skipped
        if not hits:
            return []
        candidates = unit_rows(np.stack([records[h.id].vector for h in hits]), len(hits))
        return [_document(hits[i]) for i in mmr_select(vector, candidates, k, lambda_mult)]


def _check_lambda(lambda_mult: float) -> None:
    if isinstance(lambda_mult, bool) or not isinstance(lambda_mult, (int, float)) or not 0.0 <= lambda_mult <= 1.0:
        raise InvalidInputError(f"lambda_mult must be a number in [0, 1], got {lambda_mult!r}")


def _document(hit: Hit) -> Document:
    return Document(id=hit.id, page_content=hit.text or "", metadata=hit.metadata)  # validation copies the dict


__all__ = ["MRLVectorStore"]
