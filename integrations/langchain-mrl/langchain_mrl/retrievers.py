"""``MRLRetriever``: a LangChain retriever over ``MRLVectorStore`` whose knobs are fields.

``k``, ``shortlist``, ``filter``, ``score_threshold`` and ``target_recall`` are set on the retriever and can be
overridden per call (``retriever.invoke(q, k=3, filter={...})``): the override replaces the field for
that call only. LangChain drops keyword arguments a retriever does not declare, so they are declared.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from .vectorstores import MRLVectorStore


class MRLRetriever(BaseRetriever):
    """Coarse-to-fine MRL retrieval as a LangChain ``BaseRetriever``.

    Attributes:
        vectorstore: the ``MRLVectorStore`` searched.
        k: documents returned per query.
        shortlist: coarse candidates reranked on full vectors (None: the store's default).
        filter: a metadata filter in the dict syntax (``{"year": {"$gte": 2020}}``), or None.
        score_threshold: minimum cosine similarity (the store's relevance, as in Chroma), or None.
        target_recall: recall@10 to aim for (None: the store's target); not with ``shortlist``.

    Thread-safety: as the vector store (searches run in parallel). Cost: one query embedding.

    Example:
        >>> from langchain_mrl import MRLEmbeddings, MRLVectorStore
        >>> vs = MRLVectorStore.from_texts(["red apple", "green pear", "red cherry"], MRLEmbeddings("fake", dim=16),
        ...                                metadatas=[{"colour": "red"}, {"colour": "green"}, {"colour": "red"}])
        >>> retriever = MRLRetriever(vectorstore=vs, k=2, filter={"colour": "red"})
        >>> sorted(d.page_content for d in retriever.invoke("red fruit"))
        ['red apple', 'red cherry']
        >>> len(retriever.invoke("red fruit", k=1))
        1
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    vectorstore: MRLVectorStore
    k: int = Field(default=4, gt=0)
    shortlist: int | None = Field(default=None, gt=0)
    filter: Any = None
    score_threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    target_recall: float | None = Field(default=None, gt=0.0, le=1.0)

    def _search_kwargs(self, k: int | None, overrides: dict[str, Any]) -> dict[str, Any]:
        fields = {"shortlist": self.shortlist, "filter": self.filter, "score_threshold": self.score_threshold,
                  "target_recall": self.target_recall}
        unknown = sorted(set(overrides) - set(fields))
        if unknown:  # a typo such as `filters=` must not silently search without the filter
            raise TypeError(f"MRLRetriever got unexpected arguments {unknown}; accepted: k, {', '.join(fields)}")
        merged = {**fields, **overrides}
        return {"k": self.k if k is None else k, **{name: value for name, value in merged.items() if value is not None}}

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        shortlist: int | None = None,
        filter: Any = None,  # noqa: A002 - LangChain's name for it
        target_recall: float | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        overrides = _given(shortlist=shortlist, filter=filter, target_recall=target_recall, **kwargs)
        return self.vectorstore.similarity_search(query, **self._search_kwargs(k, overrides))

    # Not the default (the sync retrieval in a thread): awaits the vector store's async search, whose query embedding is awaited.
    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        shortlist: int | None = None,
        filter: Any = None,  # noqa: A002
        target_recall: float | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        overrides = _given(shortlist=shortlist, filter=filter, target_recall=target_recall, **kwargs)
        return await self.vectorstore.asimilarity_search(query, **self._search_kwargs(k, overrides))


def _given(**kwargs: Any) -> dict[str, Any]:
    return {name: value for name, value in kwargs.items() if value is not None}


__all__ = ["MRLRetriever"]
