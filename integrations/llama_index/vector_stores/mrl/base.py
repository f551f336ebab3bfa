"""MRLVectorStore: a LlamaIndex vector store over the coarse-to-fine ``MRLStore``."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.indices.query.embedding_utils import get_top_k_mmr_embeddings
from llama_index.core.schema import BaseNode, MetadataMode, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from mrl_retrievers import EmbeddingSpec, Hit, MRLStore, Settings, open_store
from mrl_retrievers.config import StoreSettings
from mrl_retrievers.errors import (
    ConfigError,
    FilterError,
    InvalidInputError,
    StoreNotFoundError,
    UnsupportedFilterError,
)

from .filters import Translation, translate_filters
from .reference import reference_matcher

__all__ = ["MRLVectorStore"]

# node_to_metadata_dict writes the node's ref doc id here ("None" when it has none), as every
# LlamaIndex store reads it; delete(ref_doc_id) and VectorStoreQuery.doc_ids filter on it.
REF_DOC_KEY = "ref_doc_id"
_NODE_CONTENT_KEY = "_node_content"  # the serialized node, written by node_to_metadata_dict


class MRLVectorStore(BasePydanticVectorStore):
    """LlamaIndex vector store on an ``MRLStore``: HNSW over a prefix, exact rerank at full width.

    Nodes keep their text, metadata and relationships (``node_to_metadata_dict``), so
    ``VectorStoreIndex.from_vector_store`` needs no docstore, ``delete_ref_doc`` works, and a store
    reopened from its path gives back the same nodes. Filters are translated operator by operator
    with LlamaIndex's semantics (see ``filters.py``) or rejected with ``UnsupportedFilterError``.

    Args:
        store: an open ``MRLStore``, a path (opened if it holds a store, else created at the first
            add, when the width is known), a ``Settings``/``StoreSettings``, or None (temporary).
        full_dim: the vector width, to open or create the store now rather than at the first add.
        spec: the ``EmbeddingSpec`` of the vectors (e.g. ``MRLEmbedding(...).spec``); checked
            against, or recorded in, the store.
        shortlist: default coarse shortlist per query (a query's ``vector_store_kwargs`` win).
        mmr_prefetch_factor: in MMR mode, candidates fetched per result (``mmr_prefetch_k`` wins).
        **create_kwargs: options for a store created here: ``prefix_dim``, ``dtype``, ``ef``,
            ``exact_below``, ``funnel_dim`` (as in ``[store]``), ``M``, ``ef_construction``.

    Query-time keyword arguments (``index.as_retriever(vector_store_kwargs={...})``): ``shortlist``,
    ``ef``, ``target_recall`` (recall@10 to aim for; not with ``shortlist``/``ef``), ``mmr_threshold``,
    ``mmr_prefetch_k``, ``mmr_prefetch_factor``.

    Thread-safety: as the store's: queries run beside each other and beside writes. The ``a*``
    methods run the same code in a worker thread, so they return exactly what the sync ones do.

    Example:
        >>> from llama_index.core import VectorStoreIndex
        >>> from llama_index.embeddings.mrl import MRLEmbedding
        >>> embed = MRLEmbedding("fake", dim=32)
        >>> vector_store = MRLVectorStore(None, spec=embed.spec)
        >>> index = VectorStoreIndex.from_vector_store(vector_store, embed_model=embed)
    """

    stores_text: bool = True
    flat_metadata: bool = False
    path: str | None = Field(default=None, description="The store's directory (None: not opened yet or temporary).")
    shortlist: int | None = Field(default=None, description="Default coarse shortlist per query.")
    mmr_prefetch_factor: float = Field(default=4.0, description="MMR candidates fetched per result.")

    _store: MRLStore | None = PrivateAttr(default=None)
    _store_like: Any = PrivateAttr(default=None)
    _spec: EmbeddingSpec | None = PrivateAttr(default=None)
    _create_kwargs: dict = PrivateAttr(default_factory=dict)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    def __init__(
        self,
        store: MRLStore | StoreSettings | Settings | str | os.PathLike[str] | None = None,
        *,
        full_dim: int | None = None,
        spec: EmbeddingSpec | None = None,
        shortlist: int | None = None,
        mmr_prefetch_factor: float = 4.0,
        **create_kwargs: Any,
    ) -> None:
        super().__init__(shortlist=shortlist, mmr_prefetch_factor=mmr_prefetch_factor)
        self._store_like, self._create_kwargs, self._spec = store, dict(create_kwargs), spec
        if isinstance(store, MRLStore):
            if create_kwargs:
                raise ConfigError(f"{sorted(create_kwargs)} only apply when creating a store; this one is open already")
            self._attach(open_store(store, full_dim=store.full_dim, spec=spec))
        elif full_dim is not None:
            self._attach(open_store(self._store_like, full_dim=full_dim, spec=spec, **self._create_kwargs))
        else:
            existing = _open_existing(self._store_like, spec)
            if existing is not None:
                self._attach(existing)

    @classmethod
    def class_name(cls) -> str:
        return "MRLVectorStore"

    @property
    def client(self) -> MRLStore | None:
        """The underlying ``MRLStore`` (None until the first add when created lazily)."""
        return self._store

    def close(self) -> None:
        """Close the store (checkpoints its index and releases the writer lock)."""
        if self._store is not None:
            self._store.close()

    # --- the store, opened when the width is known ---------------------------------------------

    def _attach(self, store: MRLStore) -> None:
        self._store = store
        path = getattr(store, "path", None)  # a configured Qdrant backend has none
        self.path = None if path is None else str(path)

    def _store_for_width(self, full_dim: int) -> MRLStore:
        with self._lock:
            if self._store is None:
                self._attach(open_store(self._store_like, full_dim=full_dim, spec=self._spec, **self._create_kwargs))
            return self._store

    # --- writes -----------------------------------------------------------------------------------

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Add (or overwrite, by node id) nodes with embeddings. One store transaction."""
        nodes = list(nodes)
        if not nodes:
            return []
        latest = {node.node_id: node for node in nodes}  # a repeated id: the last one wins
        batch = list(latest.values())
        try:
            vectors = np.asarray([node.get_embedding() for node in batch], dtype=np.float32)
        except ValueError as exc:  # ragged widths (get_embedding itself raises for a missing one)
            raise InvalidInputError(f"node embeddings must all have one width: {exc}") from None
        if vectors.ndim != 2:
            raise InvalidInputError(f"node embeddings must all have one width, got shape {vectors.shape}")
        metadatas = [
            node_to_metadata_dict(node, remove_text=True, flat_metadata=self.flat_metadata) for node in batch
        ]
        texts = [node.get_content(metadata_mode=MetadataMode.NONE) for node in batch]
        store = self._store_for_width(vectors.shape[1])
        store.add(list(latest), vectors, texts=texts, metadatas=metadatas)
        return [node.node_id for node in nodes]

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the document ``ref_doc_id``.

        As in ``SimpleVectorStore``, nodes without a source document are filed under "None".
        """
        store = self._store
        if store is not None:
            ids = _matching_ids(store, {REF_DOC_KEY: {"$eq": ref_doc_id}}, None)
            if ids:
                store.delete(ids)

    def delete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Delete nodes by id and/or filters (both: nodes meeting both). Neither: every node,
        as ``SimpleVectorStore`` does; an empty ``node_ids`` list deletes nothing."""
        store = self._store
        if store is not None:
            ids = [node.node_id for node in self._select(store, node_ids, filters)]
            if ids:
                store.delete(ids)

    def clear(self) -> None:
        """Delete every node (the store and its settings stay)."""
        store = self._store
        if store is not None:
            ids = _matching_ids(store, None, None)
            if ids:
                store.delete(ids)

    # --- reads ------------------------------------------------------------------------------------

    def get_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
    ) -> list[BaseNode]:
        """Nodes by id (in the order asked, unknown ids skipped) and/or filters (insertion order)."""
        store = self._store
        return [] if store is None else self._select(store, node_ids, filters)

    def _select(self, store: MRLStore, node_ids: list[str] | None, filters: MetadataFilters | None) -> list[BaseNode]:
        translation = translate_filters(filters)
        check = None if translation.exact else reference_matcher(filters)
        if node_ids is not None:
            keep = reference_matcher(filters)
            records = store.get(list(dict.fromkeys(node_ids))) if node_ids else []
            return [_to_node(r.id, r.text, r.metadata) for r in records if keep(r.metadata)]
        records = store.get(_store_call(store.ids, translation.filter))
        return [_to_node(r.id, r.text, r.metadata) for r in records if check is None or check(r.metadata)]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Top ``similarity_top_k`` nodes by cosine of the full vectors (DEFAULT or MMR mode).

        Honours ``node_ids`` (an empty list means no restriction, as ``as_retriever`` sends),
        ``doc_ids``, ``filters`` and ``mmr_threshold``; see the class docstring for kwargs.
        """
        if query.query_embedding is None:
            raise InvalidInputError("MRLVectorStore needs VectorStoreQuery.query_embedding (an embedding query)")
        mode = VectorStoreQueryMode(query.mode)
        if mode not in (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR):
            raise InvalidInputError(f"query mode {mode.value!r} is not supported; use 'default' or 'mmr'")
        vector = np.asarray(query.query_embedding, dtype=np.float32)
        k = _check_k(query.similarity_top_k)
        translation = translate_filters(query.filters)  # refused filters raise even on an empty store
        store = self._store
        if store is None or len(store) == 0:
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        fetch = k
        if mode == VectorStoreQueryMode.MMR:
            fetch = kwargs.get("mmr_prefetch_k") or max(k, int(k * kwargs.get("mmr_prefetch_factor", self.mmr_prefetch_factor)))
        hits = self._search(store, vector, query, translation, fetch, kwargs)
        if mode == VectorStoreQueryMode.MMR:
            threshold = query.mmr_threshold if query.mmr_threshold is not None else kwargs.get("mmr_threshold")
            hits = _mmr(store, vector, hits, k, threshold)
        hits = hits[:k]
        return VectorStoreQueryResult(
            nodes=[_to_node(h.id, h.text, h.metadata) for h in hits],
            similarities=[float(h.score) for h in hits],
            ids=[h.id for h in hits],
        )

    def _search(
        self, store: MRLStore, vector: np.ndarray, query: VectorStoreQuery, translation: Translation, fetch: int,
        kwargs: Mapping[str, Any],
    ) -> list[Hit]:
        doc_ids = list(query.doc_ids) if query.doc_ids else None
        if query.node_ids:  # a closed set of ids: score exactly those that pass the filters
            keep = reference_matcher(query.filters)
            records = store.get(list(dict.fromkeys(query.node_ids)), include_vectors=True)
            records = [r for r in records if keep(r.metadata) and (doc_ids is None or r.metadata.get(REF_DOC_KEY) in doc_ids)]
            return _score_records(records, vector)[:fetch]
        flt = translation.filter
        if doc_ids is not None:
            docs = {REF_DOC_KEY: {"$in": doc_ids}}
            flt = docs if flt is None else {"$and": [flt, docs]}
        check = None if translation.exact else reference_matcher(query.filters)
        shortlist = kwargs.get("shortlist") or self.shortlist
        ef = kwargs.get("ef")
        effort = {} if kwargs.get("target_recall") is None else {"target_recall": kwargs["target_recall"]}

        def search(n: int) -> list[Hit]:
            return _store_call(store.search, vector, k=n, shortlist=shortlist, filter=flt, ef=ef, **effort)

        return _refined(search, fetch, check, len(store))

    # --- async twins: the same code in a worker thread ----------------------------------------------

    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)

    async def adelete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        await asyncio.to_thread(self.delete_nodes, node_ids, filters, **delete_kwargs)

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)

    async def aget_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
    ) -> list[BaseNode]:
        return await asyncio.to_thread(self.get_nodes, node_ids, filters)

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)


# --- helpers ---------------------------------------------------------------------------------------


def _open_existing(store_like: Any, spec: EmbeddingSpec | None) -> MRLStore | None:
    """The store ``store_like`` names if it exists already (its width is then known), else None."""
    if store_like is None:
        return None  # a temporary store is made at the first add
    try:
        return open_store(store_like, full_dim=None, spec=spec)
    except StoreNotFoundError:
        return None


def _store_call(fn: Callable[..., list[Hit]], *args: Any, **kwargs: Any) -> list[Hit]:
    try:
        return fn(*args, **kwargs)
    except UnsupportedFilterError:
        raise
    except FilterError as exc:  # the translator should have caught it; never fall back to no filter
        raise UnsupportedFilterError(f"the store refused the translated filter: {exc}") from exc


def _refined(search: Callable[[int], list[Hit]], k: int, check: Callable[[Mapping[str, Any]], bool] | None, live: int) -> list[Hit]:
    """``k`` hits of ``search`` that pass ``check``, fetching more while some are rejected."""
    fetch = k
    while True:
        hits = search(fetch)
        if check is None:
            return hits
        kept = [h for h in hits if check(h.metadata)]
        if len(kept) >= k or len(hits) < fetch or fetch >= live:
            return kept[:k]
        fetch = min(live, fetch * 4)


def _matching_ids(store: MRLStore, flt: dict | None, check: Callable[[Mapping[str, Any]], bool] | None) -> list[str]:
    """Every id whose metadata matches ``flt`` (then ``check``), in insertion order."""
    ids = _store_call(store.ids, flt)
    if check is None or not ids:
        return ids
    return [r.id for r in store.get(ids) if check(r.metadata)]


def _score_records(records: list, vector: np.ndarray) -> list[Hit]:
    if not records:
        return []
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise InvalidInputError("the query embedding must be finite and non-zero")
    query = vector / norm
    matrix = np.stack([r.vector for r in records])
    scores = matrix @ query
    order = sorted(range(len(records)), key=lambda i: (-float(scores[i]), records[i].id))
    return [Hit(id=records[i].id, score=float(scores[i]), text=records[i].text, metadata=records[i].metadata) for i in order]


def _mmr(store: MRLStore, vector: np.ndarray, hits: list[Hit], k: int, threshold: float | None) -> list[Hit]:
    """Maximal marginal relevance among the fetched hits (LlamaIndex's own algorithm)."""
    if not hits:
        return []
    vectors = {r.id: r.vector for r in store.get([h.id for h in hits], include_vectors=True)}
    hits = [h for h in hits if h.id in vectors]  # deleted meanwhile
    _, ids = get_top_k_mmr_embeddings(
        vector.tolist(),
        [vectors[h.id].tolist() for h in hits],
        similarity_top_k=k,
        embedding_ids=[h.id for h in hits],
        mmr_threshold=threshold,
    )
    by_id = {h.id: h for h in hits}
    return [by_id[i] for i in ids]


def _to_node(node_id: str, text: str | None, metadata: Mapping[str, Any]) -> BaseNode:
    if _NODE_CONTENT_KEY in metadata:
        return metadata_dict_to_node(dict(metadata), text=text)
    # An item written without LlamaIndex (MRLIndex, the CLI): a plain text node.
    return TextNode(id_=node_id, text=text or "", metadata=metadata)  # validation copies the mapping


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInputError(f"similarity_top_k must be a positive integer, got {k!r}")
    return k
