"""MRLRetriever: fields overridable per invoke, sync == async, and as_retriever's search_kwargs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from langchain_mrl import MRLRetriever, MRLVectorStore

TEXTS = [f"note {i} about {'apples' if i % 2 else 'oceans'} and topic {i % 5}" for i in range(20)]
META = [{"i": i, "fruit": bool(i % 2)} for i in range(20)]


@pytest.fixture
def filled(any_path_store: MRLVectorStore) -> MRLVectorStore:
    any_path_store.add_texts(TEXTS, META, ids=[f"n{i}" for i in range(20)])
    return any_path_store


def test_fields_and_per_invoke_overrides(filled: MRLVectorStore) -> None:
    retriever = MRLRetriever(vectorstore=filled, k=5, filter={"fruit": True})
    assert len(retriever.invoke("apples")) == 5
    assert len(retriever.invoke("apples", k=3)) == 3  # not silently dropped
    assert all(d.metadata["fruit"] for d in retriever.invoke("apples", k=8))
    # a per-call filter replaces the field's for that call only
    assert all(not d.metadata["fruit"] for d in retriever.invoke("apples", filter={"fruit": False}))
    assert all(d.metadata["fruit"] for d in retriever.invoke("apples"))
    assert retriever.invoke("apples", shortlist=20) == retriever.invoke("apples")
    assert len(retriever.invoke("apples", k=50)) == 10  # fewer match than asked: fewer come back


def test_score_threshold_field(filled: MRLVectorStore) -> None:
    scored = filled.similarity_search_with_relevance_scores("note about apples", k=20)
    cut = scored[4][1]
    retriever = MRLRetriever(vectorstore=filled, k=20, score_threshold=cut)
    assert [d.id for d in retriever.invoke("note about apples")] == [d.id for d, r in scored if r >= cut]


def test_unknown_invoke_argument_is_refused(filled: MRLVectorStore) -> None:
    with pytest.raises(TypeError, match="filters"):
        MRLRetriever(vectorstore=filled).invoke("apples", filters={"fruit": True})


@pytest.mark.parametrize("bad", [{"k": 0}, {"shortlist": -1}, {"score_threshold": 2.0}])
def test_field_validation(filled: MRLVectorStore, bad) -> None:
    with pytest.raises(ValidationError):
        MRLRetriever(vectorstore=filled, **bad)


async def test_sync_and_async_identical(filled: MRLVectorStore) -> None:
    retriever = MRLRetriever(vectorstore=filled, k=6, filter={"i": {"$gte": 4}})
    for query in ["apples", "oceans topic 3", "note 7"]:
        for kwargs in ({}, {"k": 2}, {"filter": {"fruit": False}}, {"shortlist": 6}):
            assert await retriever.ainvoke(query, **kwargs) == retriever.invoke(query, **kwargs)


async def test_as_retriever_search_kwargs(filled: MRLVectorStore) -> None:
    kwargs = {"k": 4, "shortlist": 12, "filter": {"fruit": True}, "score_threshold": 0.0}  # a minimum cosine
    retriever = filled.as_retriever(search_kwargs=kwargs)
    docs = retriever.invoke("apples")
    assert len(docs) == 4 and all(d.metadata["fruit"] for d in docs)
    assert len(retriever.invoke("apples", k=2)) == 2  # LangChain's own per-call override
    assert await retriever.ainvoke("apples") == docs
    assert filled.as_retriever(search_type="similarity_score_threshold",
                               search_kwargs={"score_threshold": 0.999999, "k": 4}).invoke("zzz") == []
