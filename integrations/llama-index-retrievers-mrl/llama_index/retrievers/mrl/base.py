"""MRLRetriever: a LlamaIndex retriever over an MRL store and an embedding model, no index needed."""

from __future__ import annotations

import os
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle
from llama_index.core.vector_stores.types import (
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.embeddings.mrl import MRLEmbedding
from llama_index.embeddings.mrl.base import with_signature
from llama_index.vector_stores.mrl import MRLVectorStore
from llama_index.vector_stores.mrl.base import QUERY_ARRAY

from mrl_retrievers import MRLStore, Provider
from mrl_retrievers.checks import positive_int

__all__ = ["MRLRetriever"]


class MRLRetriever(BaseRetriever):
    """Coarse-to-fine retrieval: embed the query, shortlist on the prefix index, rerank at full width.

    Args:
        vector_store: an ``MRLVectorStore``, or what it takes (an ``MRLStore`` or a store path).
        embed_model: a LlamaIndex ``BaseEmbedding`` (e.g. ``MRLEmbedding``) or an mrl-retrievers
            ``Provider``. It must be the model the store was filled with.
        similarity_top_k: how many nodes to return (``k``).
        shortlist: coarse candidates to rerank (None: the store's default). More is slower and
            closer to exact.
        target_recall: recall@10 to aim for (None: the store's target); not with ``shortlist``.
        filters: LlamaIndex ``MetadataFilters`` (translated with LlamaIndex semantics, or rejected).
        doc_ids / node_ids: restrict to these documents / nodes.
        mode: "default" or "mmr" (``mmr_threshold``: 1 = relevance only, 0 = diversity only).

    Example:
        >>> from llama_index.vector_stores.mrl import MRLVectorStore
        >>> embed = MRLEmbedding("fake", dim=16)
        >>> retriever = MRLRetriever(MRLVectorStore(None), embed, similarity_top_k=3)
        >>> retriever.retrieve("anything")
        []
    """

    def __init__(
        self,
        vector_store: MRLVectorStore | MRLStore | str | os.PathLike[str],
        embed_model: BaseEmbedding | Provider,
        *,
        similarity_top_k: int = 4,
        shortlist: int | None = None,
        target_recall: float | None = None,
        filters: MetadataFilters | None = None,
        doc_ids: list[str] | None = None,
        node_ids: list[str] | None = None,
        mode: VectorStoreQueryMode | str = VectorStoreQueryMode.DEFAULT,
        mmr_threshold: float | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        similarity_top_k = positive_int("similarity_top_k", similarity_top_k)
        if not isinstance(vector_store, MRLVectorStore):
            vector_store = MRLVectorStore(vector_store)
        if isinstance(embed_model, Provider):
            embed_model = MRLEmbedding(embed_model)
        self._vector_store = vector_store
        self._embed_model = embed_model
        self._similarity_top_k = similarity_top_k
        self._shortlist = shortlist
        self._target_recall = target_recall
        self._filters = filters
        self._doc_ids = doc_ids
        self._node_ids = node_ids
        self._mode = VectorStoreQueryMode(mode)
        self._mmr_threshold = mmr_threshold
        # With one query text, the mean of one embedding is that embedding: BaseEmbedding's own
        # aggregation would only round-trip it through numpy. Kept when a model redefines it.
        model = type(embed_model)
        self._plain_agg = model.get_agg_embedding_from_queries is BaseEmbedding.get_agg_embedding_from_queries
        self._plain_aagg = model.aget_agg_embedding_from_queries is BaseEmbedding.aget_agg_embedding_from_queries
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @property
    def vector_store(self) -> MRLVectorStore:
        return self._vector_store

    def _query(self, query_bundle: QueryBundle, embedding: list[float]) -> VectorStoreQuery:
        return VectorStoreQuery(
            query_embedding=embedding,
            similarity_top_k=self._similarity_top_k,
            doc_ids=self._doc_ids,
            node_ids=self._node_ids,
            query_str=query_bundle.query_str,
            mode=self._mode,
            filters=self._filters,
            mmr_threshold=self._mmr_threshold,
        )

    def _kwargs(self, embedding: list[float]) -> dict[str, Any]:
        given = {"shortlist": self._shortlist, "target_recall": self._target_recall}
        if isinstance(self._embed_model, MRLEmbedding):  # the array the list came from: no conversion back
            given[QUERY_ARRAY] = self._embed_model.query_array(embedding)
        return {name: value for name, value in given.items() if value is not None}

    @with_signature
    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        embedding = query_bundle.embedding
        if embedding is None:
            texts = query_bundle.embedding_strs
            if len(texts) == 1 and self._plain_agg:  # the same events, callbacks and vector, no numpy mean
                embedding = self._embed_model.get_query_embedding(texts[0])
            else:
                embedding = self._embed_model.get_agg_embedding_from_queries(texts)
        result = self._vector_store.query(self._query(query_bundle, embedding), **self._kwargs(embedding))
        return _scored(result)

    @with_signature
    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        embedding = query_bundle.embedding
        if embedding is None:
            texts = query_bundle.embedding_strs
            if len(texts) == 1 and self._plain_aagg:
                embedding = await self._embed_model.aget_query_embedding(texts[0])
            else:
                embedding = await self._embed_model.aget_agg_embedding_from_queries(texts)
        result = await self._vector_store.aquery(self._query(query_bundle, embedding), **self._kwargs(embedding))
        return _scored(result)


def _scored(result: VectorStoreQueryResult) -> list[NodeWithScore]:
    nodes = result.nodes or []
    scores = result.similarities or [None] * len(nodes)
    return [NodeWithScore(node=node, score=score) for node, score in zip(nodes, scores)]
