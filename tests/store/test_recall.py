"""Recall of the coarse-to-fine path against the exact oracle, at the defaults and after reindex.

Data: seeded synthetic MRL-like vectors (20k x 1024, float16 on disk), queries that resemble but do
not copy stored vectors. The oracle itself is checked against plain numpy.
"""

from __future__ import annotations

import numpy as np
import pytest

from mrl_retrievers import MRLStore
from mrl_retrievers.bench.synthetic import dataset, queries_near, recall_at_k

N, DIM, NQ = 20_000, 1024, 100


@pytest.fixture(scope="module")
def corpus():
    return dataset(N, DIM, seed=11), queries_near(dataset(N, DIM, seed=11), NQ, seed=12)


@pytest.fixture(scope="module")
def store(corpus, tmp_path_factory):
    data, _ = corpus
    store = MRLStore.create(tmp_path_factory.mktemp("recall") / "s", full_dim=DIM, prefix_dim=128, exact_below=0)
    for start in range(0, N, 5000):
        store.add([str(i) for i in range(start, start + 5000)], data[start : start + 5000])
    yield store
    store.close()


def _ids(results):
    return [[h.id for h in hits] for hits in results]


@pytest.fixture(scope="module")
def truth(store, corpus):
    _, queries = corpus
    return _ids(store.search_exact(q, k=10) for q in queries)


def test_exact_oracle_agrees_with_numpy(corpus, truth):
    data, queries = corpus
    stored = data.astype(np.float16).astype(np.float32)  # what the float16 file holds
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    for q, ids in zip(queries[:20], truth[:20]):
        scores = stored @ q
        expected = np.argsort(-scores)[:10]
        # Ties at float16 precision may swap neighbours; the top-10 sets must agree.
        assert set(map(str, expected[:9])) <= set(ids)


def test_recall_at_defaults_meets_bar(store, corpus, truth):
    _, queries = corpus
    recall = recall_at_k(_ids(store.search(q, k=10) for q in queries), truth, 10)
    print(f"recall@10 prefix=128 shortlist={store.manifest.shortlist}: {recall:.4f}")
    assert recall >= 0.99
    assert recall_at_k(_ids(store.search_batch(queries, k=10)), truth, 10) >= 0.99


def test_explicit_shortlist_200_meets_bar(store, corpus, truth):
    _, queries = corpus
    assert recall_at_k(_ids(store.search(q, k=10, shortlist=200) for q in queries), truth, 10) >= 0.99


def test_prefix_alone_is_not_enough(store, corpus, truth):
    """The rerank is doing real work: ranking by the 128-wide prefix alone misses neighbours."""
    data, queries = corpus
    from mrl_retrievers.mrl import prefix

    p = prefix(data, 128)
    found = [[str(i) for i in np.argsort(-(p @ prefix(q, 128)))[:10]] for q in queries]
    assert recall_at_k(found, truth, 10) < 0.97


@pytest.mark.parametrize("width", [64, 256])
def test_reindex_changes_coarse_width_and_keeps_recall(store, corpus, truth, width):
    _, queries = corpus
    path = store.path
    store = MRLStore.open(path)  # the module's handle, or a fresh one if a previous case closed it
    store.reindex(prefix_dim=width)
    assert store.prefix_dim == width
    recall = recall_at_k(_ids(store.search(q, k=10) for q in queries), truth, 10)
    print(f"recall@10 after reindex to {width}: {recall:.4f}")
    assert recall >= 0.99
    # The new width is what a reopened store uses (the manifest changed, nothing was re-embedded).
    store.close()
    reopened = MRLStore.open(path)
    assert reopened.prefix_dim == width and len(reopened) == N
    assert reopened.stats()["rows"] == N  # no vector was rewritten
    reopened.reindex(prefix_dim=128)
    reopened.close()
