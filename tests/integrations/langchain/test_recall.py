"""Recall of the coarse path (prefix HNSW shortlist + full rerank) against the exact scan, through
the LangChain vector store, on a few thousand MRL-like documents (seeded)."""

from __future__ import annotations

import numpy as np
import pytest

from langchain_mrl import MRLVectorStore
from mrl_retrievers.bench.synthetic import dataset, queries_near, recall_at_k

from .conftest import TableEmbeddings

N, DIM, NQ, K = 3000, 512, 60, 10


@pytest.fixture(scope="module")
def corpus() -> tuple[np.ndarray, np.ndarray]:
    data = dataset(N, DIM, seed=11)
    return data, queries_near(data, NQ, seed=12)


def embeddings(corpus) -> TableEmbeddings:
    data, queries = corpus
    table = {f"doc {i}": v for i, v in enumerate(data)} | {f"query {j}": q for j, q in enumerate(queries)}
    return TableEmbeddings(table, scale=1.7)


def _fill(vs: MRLVectorStore) -> MRLVectorStore:
    vs.add_texts([f"doc {i}" for i in range(N)], [{"cluster_half": i % 2} for i in range(N)],
                 ids=[str(i) for i in range(N)], batch_size=1000)
    return vs


@pytest.fixture(scope="module")
def coarse_store(corpus, tmp_path_factory):
    """Default prefix width and shortlist; exact_below=0 so the coarse path runs on 3000 documents."""
    vs = _fill(MRLVectorStore(embeddings(corpus), tmp_path_factory.mktemp("recall") / "s", exact_below=0))
    yield vs
    vs.close()


def test_coarse_recall_against_exact_at_the_defaults(coarse_store: MRLVectorStore, corpus) -> None:
    data, queries = corpus
    found = [[d.id for d in coarse_store.similarity_search(f"query {j}", k=K)] for j in range(NQ)]
    exact = [[h.id for h in coarse_store.store.search_exact(queries[j], k=K)] for j in range(NQ)]
    numpy_truth = [[str(i) for i in np.argsort(-(data @ q), kind="stable")[:K]] for q in queries]
    assert recall_at_k(exact, numpy_truth, K) >= 0.99  # the oracle itself (float16 rows) against numpy
    recall = recall_at_k(found, exact, K)
    print(f"recall@{K} coarse (prefix {coarse_store.store.prefix_dim} of {DIM}) vs exact over {N} docs: {recall:.3f}")
    assert coarse_store.store.prefix_dim < DIM
    assert recall >= 0.99


def test_coarse_recall_with_a_filter(coarse_store: MRLVectorStore, corpus) -> None:
    _, queries = corpus
    flt = {"cluster_half": 1}
    found = [[d.id for d in coarse_store.similarity_search(f"query {j}", k=K, filter=flt)] for j in range(NQ)]
    exact = [[h.id for h in coarse_store.store.search_exact(queries[j], k=K, filter=flt)] for j in range(NQ)]
    assert all(int(i) % 2 == 1 for ids in found for i in ids)
    assert recall_at_k(found, exact, K) >= 0.99


def test_scores_of_the_coarse_path_are_exact_cosines(coarse_store: MRLVectorStore, corpus) -> None:
    _, queries = corpus
    for j in range(5):
        got = coarse_store.similarity_search_with_score(f"query {j}", k=K)
        exact = {h.id: h.score for h in coarse_store.store.search_exact(queries[j], k=N)}
        for doc, score in got:
            assert score == pytest.approx(exact[doc.id], abs=1e-6)


def test_a_wider_shortlist_buys_back_recall_of_a_narrow_prefix(corpus, tmp_path) -> None:
    """The ``shortlist`` knob reaches the store from LangChain: on a 32-wide prefix of 512, a
    shortlist of 400 recovers recall that 100 loses."""
    _, queries = corpus
    vs = _fill(MRLVectorStore(embeddings(corpus), tmp_path / "narrow", exact_below=0, prefix_dim=32))
    exact = [[h.id for h in vs.store.search_exact(queries[j], k=K)] for j in range(NQ)]
    recall = {
        shortlist: recall_at_k([[d.id for d in vs.similarity_search(f"query {j}", k=K, shortlist=shortlist)]
                                for j in range(NQ)], exact, K)
        for shortlist in (100, 400)
    }
    print(f"prefix 32 of {DIM}: recall@{K} {recall}")
    assert recall[400] > recall[100] and recall[400] >= 0.95
    vs.close()
