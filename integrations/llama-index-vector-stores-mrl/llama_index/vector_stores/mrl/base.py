"""MRLVectorStore: a LlamaIndex vector store over the coarse-to-fine ``MRLStore``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.indices.query.embedding_utils import get_top_k_mmr_embeddings
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from mrl_retrievers import EmbeddingSpec, Hit, MRLStore, Settings
from mrl_retrievers import VectorStore as StoreProtocol
from mrl_retrievers.checks import positive_int
from mrl_retrievers.config import StoreSettings
from mrl_retrievers.errors import ConfigError, DimensionMismatchError, FilterError, InvalidInputError, UnsupportedFilterError
from mrl_retrievers.store import LazyStore

from .filters import Translation, translate_filters
from .images import image_keys, plain_node
from .reference import reference_matcher

__all__ = ["MRLVectorStore"]

# node_to_metadata_dict writes the node's ref doc id here ("None" when it has none), as every
# LlamaIndex store reads it; delete(ref_doc_id) and VectorStoreQuery.doc_ids filter on it.
REF_DOC_KEY = "ref_doc_id"
_NODE_CONTENT_KEY = "_node_content"  # the serialized node, written by node_to_metadata_dict


# ``query`` kwarg from our ``MRLRetriever``: the float32 array ``query_embedding`` was listed from.
QUERY_ARRAY = "mrl_query_array"


class MRLVectorStore(BasePydanticVectorStore):
    """LlamaIndex vector store on an ``MRLStore``: HNSW over a prefix, exact rerank at full width.

    Nodes keep their text, metadata and relationships (``node_to_metadata_dict``), so
    ``VectorStoreIndex.from_vector_store`` needs no docstore, ``delete_ref_doc`` works, and a store
    reopened from its path gives back the same nodes. ``ImageNode``s too: give one store as the
    ``image_store`` of a ``MultiModalVectorStoreIndex`` (with ``MRLEmbedding`` as its
    ``image_embed_model``) for text-to-image and image-to-image retrieval (see ``images.py``). Filters are translated operator by operator
    with LlamaIndex's semantics (see ``filters.py``) or rejected with ``UnsupportedFilterError``.

    Args:
        store: an open ``MRLStore``, a path (opened if it holds a store, else created by the first
            add, when the width is known), a ``Settings``/``StoreSettings``, or None (temporary).
        path: the same as a path given as ``store`` (``path`` is also the public field naming it).
        full_dim: the vector width expected: checked against an existing store now, and against
            the first add (which still creates the store: constructing creates nothing).
        spec: the ``EmbeddingSpec`` of the vectors (e.g. ``MRLEmbedding(...).spec``); checked
            against, or recorded in, the store.
        shortlist: default coarse shortlist per query (a query's ``vector_store_kwargs`` win).
        mmr_prefetch_factor: in MMR mode, candidates fetched per result (``mmr_prefetch_k`` wins).
        read_only: open read-only (no writer lock; writes raise ``ReadOnlyStoreError``). A store
            another process holds for writing is opened read-only anyway, with a warning.
        **create_kwargs: options for a store created here: ``prefix_dim``, ``dtype``, ``ef``,
            ``exact_below``, ``funnel_dim`` (as in ``[store]``), ``M``, ``ef_construction``.

    A first ``add`` that fails leaves nothing behind (no store directory). Scores are what
    ``SimpleVectorStore`` reports: the cosine similarity (DEFAULT mode) and LlamaIndex's MMR score
    (MMR mode). The object pickles and round-trips ``to_dict``/``from_dict`` by reopening its path
    (vectors are never pickled; a temporary store, having no path, refuses to pickle).

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
    path: str | None = Field(default=None, description="The store's directory (None: temporary, or not a local store).")
    shortlist: int | None = Field(default=None, description="Default coarse shortlist per query.")
    mmr_prefetch_factor: float = Field(default=4.0, description="MMR candidates fetched per result.")
    read_only: bool = Field(default=False, description="Opened read-only (no writer lock; writes raise).")

    _lazy: LazyStore = PrivateAttr()
    _spec: EmbeddingSpec | None = PrivateAttr(default=None)
    _full_dim: int | None = PrivateAttr(default=None)
    _create_kwargs: dict = PrivateAttr(default_factory=dict)

    def __init__(
        self,
        store: MRLStore | StoreSettings | Settings | str | os.PathLike[str] | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        full_dim: int | None = None,
        spec: EmbeddingSpec | None = None,
        shortlist: int | None = None,
        mmr_prefetch_factor: float = 4.0,
        read_only: bool = False,
        stores_text: bool = True,
        flat_metadata: bool = False,
        is_embedding_query: bool = True,
        **create_kwargs: Any,
    ) -> None:
        if path is not None:  # issue 14: `path` is a public field, so users pass it by name
            same = isinstance(store, (str, os.PathLike)) and os.fspath(store) == os.fspath(path)
            if store is not None and not same:
                raise ConfigError(f"got store={store!r} and path={os.fspath(path)!r}; give one of them")
            store = path
        if not stores_text or not is_embedding_query:
            raise ConfigError("MRLVectorStore always stores the node text and is queried by embedding")
        super().__init__(shortlist=shortlist, mmr_prefetch_factor=mmr_prefetch_factor, flat_metadata=flat_metadata)
        self._spec, self._full_dim, self._create_kwargs = spec, full_dim, dict(create_kwargs)
        self._lazy = LazyStore(store, read_only=read_only, **create_kwargs)
        found = self._lazy.existing()  # an existing store is checked now; nothing is created here
        if found is not None and (full_dim is not None or spec is not None):
            self._lazy.checked(full_dim or found.full_dim, spec)
        self.path = None if self._lazy.path is None else str(self._lazy.path)
        self.read_only = self._lazy.read_only

    @classmethod
    def class_name(cls) -> str:
        return "MRLVectorStore"

    @property
    def client(self) -> StoreProtocol | None:
        """The underlying store (``MRLStore`` or ``QdrantStore``); None until the first add creates it."""
        return self._lazy.existing()

    def close(self) -> None:
        """Close the store (checkpoints its index and releases the writer lock)."""
        self._lazy.close()

    # --- pickling: reopen by path, never the vectors ----------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        source = self.path if self.path is not None else self._lazy.source
        if source is None or isinstance(source, StoreProtocol) or (
            isinstance(source, (Settings, StoreSettings)) and _is_temporary(source)
        ):
            raise TypeError(
                "a temporary MRLVectorStore (no path) cannot be pickled: its contents would be lost; "
                "give it a path, e.g. MRLVectorStore('my-index')"
            )
        return {"init": {
            "store": source, "spec": self._spec, "full_dim": self._full_dim, "shortlist": self.shortlist,
            "mmr_prefetch_factor": self.mmr_prefetch_factor, "read_only": self.read_only,
            "flat_metadata": self.flat_metadata, **self._create_kwargs,
        }}  # fmt: skip

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state["init"])  # type: ignore[misc] - reopens the store by its path

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
        metadatas = [  # an ImageNode's record also says what it is (images.py)
            {**node_to_metadata_dict(node, remove_text=True, flat_metadata=self.flat_metadata), **image_keys(node)}
            for node in batch
        ]
        texts = [node.get_content(metadata_mode=MetadataMode.NONE) for node in batch]
        if self._full_dim is not None and vectors.shape[1] != self._full_dim:
            raise DimensionMismatchError(f"node embeddings are {vectors.shape[1]}-wide; this store expects {self._full_dim}")
        self._lazy.write(vectors.shape[1], self._spec, lambda store: store.add(list(latest), vectors, texts=texts, metadatas=metadatas))
        return [node.node_id for node in nodes]

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the document ``ref_doc_id``.

        As in ``SimpleVectorStore``, nodes without a source document are filed under "None".
        """
        self._lazy.check_writable()
        store = self._lazy.existing()
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
        self._lazy.check_writable()
        store = self._lazy.existing()
        if store is not None:
            ids = [node.node_id for node in self._select(store, node_ids, filters)]
            if ids:
                store.delete(ids)

    def clear(self) -> None:
        """Delete every node (the store and its settings stay)."""
        self._lazy.check_writable()
        store = self._lazy.existing()
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
        store = self._lazy.existing()
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
        vector = kwargs.get(QUERY_ARRAY)
        if vector is None or len(vector) != len(query.query_embedding):
            vector = np.asarray(query.query_embedding, dtype=np.float32)
        k = _check_k(query.similarity_top_k)
        translation = translate_filters(query.filters)  # refused filters raise even on an empty store
        store = self._lazy.existing()
        live = 0 if store is None else len(store)
        if live == 0:
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        fetch = k
        if mode == VectorStoreQueryMode.MMR:
            fetch = kwargs.get("mmr_prefetch_k") or max(k, int(k * kwargs.get("mmr_prefetch_factor", self.mmr_prefetch_factor)))
        hits = self._search(store, vector, query, translation, fetch, kwargs, live)
        scores = [float(h.score) for h in hits]  # DEFAULT: the cosine, as SimpleVectorStore reports
        if mode == VectorStoreQueryMode.MMR:
            threshold = query.mmr_threshold if query.mmr_threshold is not None else kwargs.get("mmr_threshold")
            hits, scores = _mmr(store, vector, hits, k, threshold)  # MMR: LlamaIndex's MMR scores, as the reference
        hits, scores = hits[:k], scores[:k]
        return VectorStoreQueryResult(
            nodes=[_to_node(h.id, h.text, h.metadata) for h in hits],
            similarities=scores,
            ids=[h.id for h in hits],
        )

    def _search(
        self, store: MRLStore, vector: np.ndarray, query: VectorStoreQuery, translation: Translation, fetch: int,
        kwargs: Mapping[str, Any], live: int,
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

        return _refined(search, fetch, check, live)

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


def _is_temporary(settings: Settings | StoreSettings) -> bool:
    block = settings.store if isinstance(settings, Settings) else settings
    return block.path is None and block.url is None


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


def _mmr(store: MRLStore, vector: np.ndarray, hits: list[Hit], k: int, threshold: float | None) -> tuple[list[Hit], list[float]]:
    """Maximal marginal relevance among the fetched hits (LlamaIndex's own algorithm) and its scores."""
    if not hits:
        return [], []
    vectors = {r.id: r.vector for r in store.get([h.id for h in hits], include_vectors=True)}
    hits = [h for h in hits if h.id in vectors]  # deleted meanwhile
    scores, ids = get_top_k_mmr_embeddings(
        vector.tolist(),
        [vectors[h.id].tolist() for h in hits],
        similarity_top_k=k,
        embedding_ids=[h.id for h in hits],
        mmr_threshold=threshold,
    )
    by_id = {h.id: h for h in hits}
    return [by_id[i] for i in ids], [float(s) for s in scores]


def _to_node(node_id: str, text: str | None, metadata: Mapping[str, Any]) -> BaseNode:
    if _NODE_CONTENT_KEY in metadata:
        return metadata_dict_to_node(dict(metadata), text=text)
    # An item written without LlamaIndex (MRLIndex, LangChain, the CLI): a plain text or image node.
    return plain_node(node_id, text, metadata)


def _check_k(k: Any) -> int:
    return positive_int("similarity_top_k", k)
