"""``MRLVectorStore``: a LangChain ``VectorStore`` over the coarse-to-fine ``MRLStore``.

Swapping ``InMemoryVectorStore``, FAISS or Chroma for it is a one-line change; every search is a
coarse shortlist on the MRL prefix followed by an exact rerank on the full vectors.

Sync and async share one core: the only difference is how the texts are embedded (``embed_*`` vs
awaited ``aembed_*``). Store calls run in a worker thread on the async path (a write fsyncs), with
the same code and arguments as on the sync path, so both return identical results.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor
from langchain_core.vectorstores import VectorStore

from mrl_retrievers import EmbeddingSpec, Hit
from mrl_retrievers import VectorStore as StoreProtocol
from mrl_retrievers.errors import ConfigError
from mrl_retrievers.store import LazyStore

from ._filters import to_mrl_filter
from ._images import ImageSearch, document_content
from ._search import Search, check_mmr, parse_search_kwargs
from ._utils import check_count, cosine_relevance, mmr_select, prepare_add, store_source, unit_rows, unit_vector
from .embeddings import MRLEmbeddings

class MRLVectorStore(ImageSearch, VectorStore):
    """A persistent LangChain vector store with coarse-to-fine MRL retrieval.

    Args:
        embedding: ``MRLEmbeddings`` or any LangChain ``Embeddings`` (e.g.
            ``OpenAIEmbeddings(dimensions=1024)``). For an embedding we do not know, the width is
            learnt from the first vector, vectors are renormalized, and the store records a spec
            named after the class (``langchain:OpenAIEmbeddings``) so another model cannot be mixed in.
        store: a path (opened if it holds a store, else created there by the first write), an open
            ``MRLStore``, a ``StoreSettings`` / ``Settings`` block, or None for a temporary store.
        shortlist: default coarse shortlist per search (None: the store's default).
        ef: default hnswlib ``ef`` per search (None: the store's default).
        read_only: open the store read-only (never the writer lock; writes raise
            ``ReadOnlyStoreError``). Without it, a store another process holds for writing is
            opened read-only anyway, with a warning (web workers beside one indexing process).
        target_recall: default recall@10 per search (None: the store's target; the store adapts
            each query's effort to it; do not combine with ``shortlist``/``ef``, which fix it).
        **store_kwargs: options used only when the store is created: ``prefix_dim``, ``dtype``,
            ``exact_below`` (0 forces the ANN path), ``funnel_dim``, ``M``, ``ef_construction``.

    Constructing creates nothing: the store is created by the first ``add_texts`` once its vectors
    are in hand, and removed again if that first write fails. Scores: ``similarity_search_with_score``
    gives the cosine similarity; relevance (``similarity_search_with_relevance_scores``,
    ``search_type="similarity_score_threshold"``) is the same cosine, clipped to [0, 1], and
    ``score_threshold`` is a minimum cosine, as Chroma (cosine space) reads it: a threshold tuned
    there, or on ``InMemoryVectorStore``'s scores, selects the same documents here.

    Nothing is pickled: reopening the same path gives the same documents without
    ``allow_dangerous_deserialization``. Thread-safety: searches run in parallel and beside writes.

    Images (``add_images(uris)``, ``similarity_search_by_image(uri)``; see ``_images.py``) share the
    store with texts when the embedding is multimodal: a text query finds images and texts alike.

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
        read_only: bool = False,
        target_recall: float | None = None,
        **store_kwargs: Any,
    ) -> None:
        if not (callable(getattr(embedding, "embed_documents", None)) and callable(getattr(embedding, "embed_query", None))):
            raise ConfigError(f"embedding must be a LangChain Embeddings, got {type(embedding).__name__}")
        self._embedding = embedding
        self._mrl = embedding.client if isinstance(embedding, MRLEmbeddings) else None
        store_like, create_kwargs = store_source(store, store_kwargs)
        self.shortlist = shortlist
        self.ef = ef
        self.target_recall = target_recall
        self._lazy = LazyStore(store_like, read_only=read_only, **create_kwargs)
        if self._mrl is not None:  # an existing store is checked against the known spec at once
            self._lazy.checked(self._mrl.dim, self._mrl.spec)
        else:
            self._lazy.existing()

    # --- what it is ---------------------------------------------------------------------------------

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    @property
    def store(self) -> StoreProtocol | None:
        """The underlying store (``MRLStore`` or ``QdrantStore``); None until the first write creates it."""
        return self._lazy.existing()

    def close(self) -> None:
        """Close the underlying store (checkpoint, release the writer lock). Idempotent."""
        self._lazy.close()

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return cosine_relevance

    def similarity_search_with_relevance_scores(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        """Documents with relevance = cosine clipped to [0, 1]; ``score_threshold`` is a minimum
        cosine (applied before clipping, as Chroma compares it). Costs one query embedding."""
        return [(doc, cosine_relevance(score)) for doc, score in self.similarity_search_with_score(query, k, **kwargs)]

    async def asimilarity_search_with_relevance_scores(  # not the default: score_threshold is a checked cosine, as in sync
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        scored = await self.asimilarity_search_with_score(query, k, **kwargs)
        return [(doc, cosine_relevance(score)) for doc, score in scored]

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
        self._lazy.check_writable()  # before paying for embeddings
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
        """Async ``add_texts``, not the default (all in a thread): awaits ``aembed_documents``; the store write takes a thread."""
        texts, metas, ids, batches = prepare_add(texts, metadatas, ids, batch_size, kwargs)
        self._lazy.check_writable()
        for part in batches:
            vectors = await self._adocument_vectors(texts[part])
            await run_in_executor(None, self._write, ids[part], vectors, texts[part], metas[part])
        return ids

    def delete(self, ids: list[str] | None = None, *, filter: Any = None, **kwargs: Any) -> bool | None:  # noqa: A002
        """Delete by id and/or by metadata filter (both: the ids that match it). Neither: every
        document, as the base class specifies (the store and its settings stay). Unknown ids are
        ignored; ``ids=[]`` deletes nothing. One transaction, durable when it returns."""
        if kwargs:
            raise TypeError(f"MRLVectorStore.delete got unexpected arguments {sorted(kwargs)}; accepted: ids, filter")
        flt = to_mrl_filter(filter)
        self._lazy.check_writable()
        store = self._lazy.existing()
        if store is None or (ids is not None and not ids):
            return True
        if ids is None:
            targets = store.ids(flt)
        else:
            wanted = set(ids)
            targets = list(ids) if flt is None else [i for i in store.ids(flt) if i in wanted]
        if targets:
            store.delete(targets)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Documents for the ids that exist, in the order asked (missing ids are skipped)."""
        store = self._lazy.existing()
        if store is None or not ids:
            return []
        return [Document(id=r.id, page_content=document_content(r.text, r.metadata), metadata=dict(r.metadata))
                for r in store.get(list(ids))]

    def get_by_filter(self, filter: Any = None, *, limit: int | None = None) -> list[Document]:  # noqa: A002
        """Documents whose metadata match ``filter`` (dict syntax or structured-query IR; None: all),
        in insertion order, at most ``limit``. Reads SQLite only (no vectors); safe beside writers.

        Example:
            >>> vs = MRLVectorStore.from_texts(["a", "b"], MRLEmbeddings("fake", dim=8), [{"n": 1}, {"n": 2}])
            >>> [d.page_content for d in vs.get_by_filter({"n": {"$gte": 2}})]
            ['b']
        """
        flt = to_mrl_filter(filter)
        if limit is not None:
            check_count("limit", limit)
        store = self._lazy.existing()
        if store is None:
            return []
        ids = store.ids(flt)
        return self.get_by_ids(ids if limit is None else ids[:limit])

    # --- similarity search --------------------------------------------------------------------------

    def similarity_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        """Top-``k`` documents with their cosine similarity (full vectors; higher is better).

        Keyword arguments: ``shortlist``, ``filter`` (dict syntax), ``score_threshold`` (minimum
        cosine, the relevance of this store), ``ef``, ``target_recall``; ``fetch_k`` / ``lambda_mult`` are MMR's and
        ignored here, as ``VectorStoreRetriever`` passes them on. ``k=0`` gives ``[]``. Costs one
        query embedding.
        """
        options = self._options(kwargs)
        if self._lazy.existing() is None or check_count("k", k) == 0:  # no need to pay for the query embedding
            return []
        return self._scored(self._query_vector(query), k, options)

    async def asimilarity_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        options = self._options(kwargs)
        if self._lazy.existing() is None or check_count("k", k) == 0:
            return []
        vector = await self._aquery_vector(query)  # not the default (sync search in a thread): the embedding is awaited
        return await run_in_executor(None, self._scored, vector, k, options)

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        options = self._options(kwargs)
        return [] if self._lazy.existing() is None else self._scored(unit_vector(embedding), k, options)

    async def asimilarity_search_with_score_by_vector(  # no langchain-core default: the async twin of ours, as FAISS has
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        return await run_in_executor(None, self.similarity_search_with_score_by_vector, embedding, k, **kwargs)

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        options = self._options(kwargs)
        if self._lazy.existing() is None or check_count("k", k) == 0:
            return []
        return [_document(hit) for hit in self._hits(self._query_vector(query), k, options)]

    async def asimilarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in await self.asimilarity_search_with_score(query, k, **kwargs)]  # not the default: awaited

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, **kwargs)]

    # --- maximal marginal relevance (on the full stored vectors) -----------------------------------

    def max_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        """``k`` documents chosen among the ``fetch_k`` most similar for relevance and diversity.

        ``lambda_mult`` = 1 is plain similarity, 0 is maximal diversity. Diversity is measured on the
        full stored vectors, not on the prefix. As in ``InMemoryVectorStore``, at most ``fetch_k``
        documents come back (``fetch_k < k`` gives ``fetch_k``), and ``k=0`` gives ``[]``.
        """
        options = self._options(kwargs)
        check_mmr(k, fetch_k, lambda_mult)  # before paying for the query embedding
        if self._lazy.existing() is None or min(k, fetch_k) == 0:
            return []
        return self._mmr(self._query_vector(query), k, fetch_k, lambda_mult, options)

    async def amax_marginal_relevance_search(  # not the default (sync MMR in a thread): awaits the async query embedding
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        options = self._options(kwargs)
        check_mmr(k, fetch_k, lambda_mult)
        if self._lazy.existing() is None or min(k, fetch_k) == 0:
            return []
        vector = await self._aquery_vector(query)
        return await run_in_executor(None, self._mmr, vector, k, fetch_k, lambda_mult, options)

    def max_marginal_relevance_search_by_vector(
        self, embedding: list[float], k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        options = self._options(kwargs)
        return [] if self._lazy.existing() is None else self._mmr(unit_vector(embedding), k, fetch_k, lambda_mult, options)

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
        """A store (``store``: path / MRLStore / settings / None) holding ``texts``. If adding them
        fails, a store this call created is removed again.

        Example:
            >>> vs = MRLVectorStore.from_texts(["a cat", "a dog"], MRLEmbeddings("fake", dim=8))
            >>> len(vs.similarity_search("cat", k=5))
            2
        """
        vectorstore = cls(embedding, store, **kwargs)
        vectorstore.add_texts(texts, metadatas, ids=ids)
        return vectorstore

    @classmethod
    async def afrom_texts(  # not the default (from_texts in a thread): aadd_texts awaits the embeddings
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

    def _spec(self, width: int) -> EmbeddingSpec:
        if self._mrl is not None:
            return self._mrl.spec
        emb = self._embedding
        names = (getattr(emb, "model", None), getattr(emb, "model_name", None))
        model = next((n for n in names if isinstance(n, str) and n), type(emb).__name__)
        return EmbeddingSpec(provider=f"langchain:{type(emb).__name__}", model=model, dim=width)

    def _write(self, ids: list[str], vectors: np.ndarray, texts: list[str], metas: list[dict[str, Any]]) -> None:
        width = vectors.shape[1]
        self._lazy.write(width, self._spec(width), lambda store: store.add(ids, vectors, texts, metas))

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

    def _options(self, kwargs: dict[str, Any]) -> Search:
        return parse_search_kwargs(kwargs, shortlist=self.shortlist, ef=self.ef, target_recall=self.target_recall)

    def _hits(self, vector: np.ndarray, k: int, options: Search) -> list[Hit]:
        store = self._lazy.verified or self._lazy.checked(len(vector), self._spec(len(vector)))
        if store is None or check_count("k", k) == 0:
            return []
        hits = store.search(vector, k=k, shortlist=options.shortlist, filter=options.filter, ef=options.ef, **options.effort())
        if options.score_threshold is not None:
            hits = [h for h in hits if h.score >= options.score_threshold]
        return hits

    def _scored(self, vector: np.ndarray, k: int, options: Search) -> list[tuple[Document, float]]:
        return [(_document(hit), float(hit.score)) for hit in self._hits(vector, k, options)]

    def _mmr(self, vector: np.ndarray, k: int, fetch_k: int, lambda_mult: float, options: Search) -> list[Document]:
        check_mmr(k, fetch_k, lambda_mult)
        hits = self._hits(vector, fetch_k, options) if k else []  # candidates: fetch_k, as the reference
        if not hits:
            return []
        records = {r.id: r for r in self._lazy.existing().get([h.id for h in hits], include_vectors=True)}
        hits = [h for h in hits if h.id in records]  # an item deleted meanwhile is skipped
        if not hits:
            return []
        candidates = unit_rows(np.stack([records[h.id].vector for h in hits]), len(hits))
        return [_document(hits[i]) for i in mmr_select(vector, candidates, k, lambda_mult)]


def _document(hit: Hit) -> Document:
    # validation copies the dict; an image's page_content is its source (see _images.py)
    return Document(id=hit.id, page_content=document_content(hit.text, hit.metadata), metadata=hit.metadata)


__all__ = ["MRLVectorStore"]
