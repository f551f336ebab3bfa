"""One conformance suite for every store backend: the semantics listed in store/protocol.py.

Each test runs against the local ``MRLStore`` (forced onto its coarse HNSW path) and ``QdrantStore``
(qdrant-client's local mode, in memory: its on-disk variant commits point by point and is tested
for reopening in test_qdrant.py). Filters are checked operator by operator
against the reference evaluator ``filters.matches`` on one shared fixture of varied metadata, plus
seeded random filters.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from mrl_retrievers import EmbeddingSpec, MRLStore, filters
from mrl_retrievers.bench.synthetic import dataset, queries_near, recall_at_k
from mrl_retrievers.errors import (
    DimensionMismatchError,
    DuplicateIdError,
    FilterError,
    InvalidInputError,
    InvalidMetadataError,
    InvalidVectorError,
    SpecMismatchError,
    StoreClosedError,
    UnsupportedFilterError,
)
from tests.helpers import unit_rows

qdrant_client = pytest.importorskip("qdrant_client")
from mrl_retrievers.store.qdrant import QdrantStore

# Local mode ignores search params (it is brute force) and says so on every search.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning"),
    # test_unreachable_server_is_a_typed_error: qdrant-client's version probe warns from a thread
    pytest.mark.filterwarnings("ignore:Failed to obtain server version:UserWarning"),
    pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection:UserWarning"),
]

DIM, PREFIX = 32, 8


class Backend:
    """Create / reopen stores of one backend under tmp_path."""

    def __init__(self, name: str, tmp_path) -> None:
        self.name, self.tmp_path, self.opened = name, tmp_path, []
        self.client = qdrant_client.QdrantClient(":memory:") if name == "qdrant" else None

    def create(self, label: str = "s", *, full_dim: int = DIM, prefix_dim: int = PREFIX, **kwargs):
        if self.name == "local":
            kwargs.setdefault("exact_below", 0)  # exercise the coarse path even on tiny stores
            store = MRLStore.create(self.tmp_path / label, full_dim=full_dim, prefix_dim=prefix_dim, **kwargs)
        else:
            store = QdrantStore.create(label, client=self.client, full_dim=full_dim, prefix_dim=prefix_dim, **kwargs)
        self.opened.append(store)
        return store

    def reopen(self, store, **kwargs):
        store.close()
        if self.name == "local":
            again = MRLStore.open(store.path, **kwargs)
        else:
            again = QdrantStore.open(store.collection, client=self.client, **kwargs)
        self.opened.append(again)
        return again

    def close_all(self) -> None:
        for store in self.opened:
            store.close()
        if self.client is not None:
            self.client.close()


@pytest.fixture(params=["local", "qdrant"])
def backend(request, tmp_path):
    made = Backend(request.param, tmp_path)
    yield made
    made.close_all()


def ids(n, start=0):
    return [f"doc-{i}" for i in range(start, start + n)]


# --- writes and reads ------------------------------------------------------------------------------


def test_add_get_len_and_order(backend, rng):
    store = backend.create()
    vectors = unit_rows(rng, 20, DIM)
    metas = [{"i": i} for i in range(20)]
    assert store.add(ids(20), vectors * 3.0, texts=[f"t{i}" for i in range(20)], metadatas=metas) == ids(20)
    assert len(store) == 20
    got = store.get(["doc-7", "missing", "doc-1", "doc-7"], include_vectors=True)
    assert [r.id for r in got] == ["doc-7", "doc-1", "doc-7"]
    assert got[0].text == "t7" and got[0].metadata == {"i": 7}
    np.testing.assert_allclose(got[0].vector, vectors[7], atol=2e-3)  # stored normalized
    assert all(r.vector is None for r in store.get(["doc-1"]))
    assert store.get([]) == [] and store.add([], np.empty((0, DIM))) == []


def test_upsert_replaces_vector_text_and_metadata(backend, rng):
    store = backend.create()
    vectors = unit_rows(rng, 10, DIM)
    store.add(ids(10), vectors, texts=["old"] * 10, metadatas=[{"v": 1}] * 10)
    new = unit_rows(rng, 1, DIM)
    store.add(["doc-3"], new, texts=["fresh"], metadatas=[{"v": 2}])
    assert len(store) == 10
    (record,) = store.get(["doc-3"], include_vectors=True)
    assert (record.text, record.metadata) == ("fresh", {"v": 2})
    np.testing.assert_allclose(record.vector, new[0], atol=2e-3)
    assert store.search(new[0], k=1)[0].id == "doc-3"
    old_hits = {h.id: h.score for h in store.search_exact(vectors[3], k=10)}
    assert old_hits["doc-3"] == pytest.approx(float(new[0] @ vectors[3]), abs=2e-3)  # scored with the new vector
    assert [h.id for h in store.search_exact(new[0], k=10, filter={"v": 1})].count("doc-3") == 0


def test_delete_ignores_unknown_ids(backend, rng):
    store = backend.create()
    vectors = unit_rows(rng, 5, DIM)
    store.add(ids(5), vectors)
    assert store.delete(["doc-1", "nope", "doc-1"]) == 1
    assert store.delete(["nope"]) == 0 and store.delete([]) == 0
    assert len(store) == 4 and store.get(["doc-1"]) == []
    assert all(h.id != "doc-1" for h in store.search(vectors[1], k=10))
    assert all(h.id != "doc-1" for h in store.search_exact(vectors[1], k=10))


def test_ids_lists_live_ids_in_insertion_order(backend, rng):
    store = backend.create()
    assert store.ids() == []
    store.add(["c", "a", "b"], unit_rows(rng, 3, DIM), metadatas=[{"t": "Hello"}, {"t": "bye"}, {"n": 1}])
    store.add(["d"], unit_rows(rng, 1, DIM))
    store.add(["c"], unit_rows(rng, 1, DIM), metadatas=[{"t": "HELLO again"}])  # an upsert moves to the end
    store.delete(["b"])
    assert store.ids() == ["a", "d", "c"]
    assert store.ids({"t": {"$exists": True}}) == ["a", "c"]
    assert store.ids({"t": {"$itext": "hello"}}) == ["c"] and store.ids({"t": {"$in": []}}) == []
    with pytest.raises(UnsupportedFilterError):
        store.ids({"t": {"$like": "x"}})


def test_k_clamps_and_empty_store(backend, rng):
    store = backend.create()
    q = unit_rows(rng, 1, DIM)[0]
    assert store.search(q, k=5) == [] and store.search_exact(q, k=5) == []
    store.add(ids(3), unit_rows(rng, 3, DIM))
    assert len(store.search(q, k=50)) == 3 and len(store.search_exact(q, k=50)) == 3
    assert len(store.search(q, k=2, shortlist=1)) == 2  # the shortlist never drops below k


def test_scores_are_full_cosine_highest_first(backend, rng):
    store = backend.create()
    vectors = unit_rows(rng, 40, DIM)
    store.add(ids(40), vectors * rng.uniform(0.5, 4.0, size=(40, 1)))
    q = rng.standard_normal(DIM)
    expected = vectors @ (q / np.linalg.norm(q))
    for hits in (store.search(q * 7, k=40, shortlist=40), store.search_exact(q, k=40)):
        assert len(hits) == 40
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        for h in hits:
            assert h.score == pytest.approx(expected[int(h.id.split("-")[1])], abs=2e-3)


def test_ties_go_to_the_earlier_insert(backend, rng):
    store = backend.create()
    v = unit_rows(rng, 2, DIM)
    store.add(["b", "a"], np.stack([v[0], v[0]]))
    store.add(["c", "z"], np.stack([v[0], v[1]]))
    for hits in (store.search(v[0], k=3), store.search_exact(v[0], k=3)):
        assert [h.id for h in hits] == ["b", "a", "c"]


def test_search_batch_matches_single_searches(backend, rng):
    store = backend.create()
    store.add(ids(60), unit_rows(rng, 60, DIM), metadatas=[{"even": i % 2 == 0} for i in range(60)])
    queries = unit_rows(rng, 4, DIM)
    for flt in (None, {"even": True}):
        batch = store.search_batch(queries, k=5, filter=flt)
        assert [[h.id for h in hits] for hits in batch] == [[h.id for h in store.search(q, k=5, filter=flt)] for q in queries]
    assert store.search_batch(np.empty((0, DIM)), k=5) == []


def test_recall_against_exact_on_mrl_like_data(backend):
    data = dataset(3000, 128, seed=3, clusters=64)
    queries = queries_near(data, 40, seed=4)
    store = backend.create(full_dim=128, prefix_dim=32)
    for start in range(0, len(data), 1000):
        store.add([str(i) for i in range(start, start + 1000)], data[start : start + 1000])
    truth = [[h.id for h in store.search_exact(q, k=10)] for q in queries]
    found = [[h.id for h in hits] for hits in store.search_batch(queries, k=10, shortlist=100)]
    assert recall_at_k(found, truth, 10) >= 0.99
    assert recall_at_k([[h.id for h in store.search(q, k=10, shortlist=100)] for q in queries], truth, 10) >= 0.99


def test_reindex_keeps_results_without_new_vectors(backend):
    data = dataset(800, 64, seed=5, clusters=32)
    queries = queries_near(data, 10, seed=6)
    store = backend.create(full_dim=64, prefix_dim=16)
    store.add([str(i) for i in range(800)], data, texts=[f"t{i}" for i in range(800)], metadatas=[{"i": i} for i in range(800)])
    before = [[h.id for h in store.search_exact(q, k=5)] for q in queries]
    store.reindex(prefix_dim=8)
    assert store.prefix_dim == 8 and len(store) == 800
    assert [[h.id for h in store.search(q, k=5, shortlist=200)] for q in queries] == before
    assert store.get(["42"])[0].metadata == {"i": 42}
    again = backend.reopen(store)
    assert again.prefix_dim == 8 and len(again) == 800
    assert [[h.id for h in again.search_exact(q, k=5)] for q in queries] == before
    with pytest.raises(InvalidInputError):
        again.reindex(prefix_dim=65)


def test_spec_is_recorded_and_enforced(backend, rng):
    spec = EmbeddingSpec(provider="fake", model="m1", dim=DIM)
    other = EmbeddingSpec(provider="fake", model="m2", dim=DIM)
    store = backend.create("spec", spec=spec)
    assert store.spec == spec
    with pytest.raises(SpecMismatchError, match="m2"):
        store.check_spec(other)
    assert backend.reopen(store, spec=spec).spec == spec
    with pytest.raises(SpecMismatchError):
        backend.reopen(backend.opened[-1], spec=other)
    bare = backend.create("bare")
    bare.check_spec(other)  # adopts the first spec offered
    assert backend.reopen(bare).spec == other


def test_closed_store_refuses_work(backend, rng):
    store = backend.create()
    store.add(ids(2), unit_rows(rng, 2, DIM))
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreClosedError):
        store.add(["x"], unit_rows(rng, 1, DIM))
    q = unit_rows(rng, 1, DIM)[0]
    for call in (lambda: store.get(["doc-1"]), lambda: store.search(q, k=1), lambda: store.search_exact(q, k=1),
                 lambda: store.search_batch(q[None, :], k=1), lambda: store.delete(["doc-1"]), lambda: len(store)):
        with pytest.raises(StoreClosedError):
            call()


# --- bad input: the same typed errors, and nothing written ------------------------------------------

GOOD = unit_rows(np.random.default_rng(0), 2, DIM)

BAD_ADDS = [
    (dict(ids=["d"], vectors=np.ones((1, DIM + 1))), DimensionMismatchError),
    (dict(ids=["d"], vectors=np.full((1, DIM), np.nan)), InvalidVectorError),
    (dict(ids=["d"], vectors=np.zeros((1, DIM))), InvalidVectorError),
    (dict(ids=["d", "e"], vectors=GOOD[:1]), InvalidInputError),
    (dict(ids=["d", "d"], vectors=GOOD), DuplicateIdError),
    (dict(ids=[7], vectors=GOOD[:1]), InvalidInputError),
    (dict(ids=[""], vectors=GOOD[:1]), InvalidInputError),
    (dict(ids=["d"], vectors=GOOD[:1], texts=[b"bytes"]), InvalidInputError),
    (dict(ids=["d"], vectors=GOOD[:1], metadatas=[{"b": b"x"}]), InvalidMetadataError),
    (dict(ids=["d"], vectors=GOOD[:1], metadatas=[{"n": float("nan")}]), InvalidMetadataError),
    (dict(ids=["d"], vectors=GOOD[:1], metadatas=[{1: "x"}]), InvalidMetadataError),
    (dict(ids=["d", "e"], vectors=GOOD, metadatas=[{"ok": 1}, {"s": {1, 2}}]), InvalidMetadataError),
]


@pytest.mark.parametrize("kwargs,error", BAD_ADDS)
def test_bad_adds_raise_typed_errors_and_write_nothing(backend, rng, kwargs, error):
    store = backend.create()
    store.add(["keep"], unit_rows(rng, 1, DIM), metadatas=[{"k": 1}])
    with pytest.raises(error):
        store.add(**kwargs)
    assert len(store) == 1 and store.get(["d", "e"]) == []


@pytest.mark.parametrize(
    "call,error",
    [
        (lambda s, q: s.search(q[:-1], k=1), DimensionMismatchError),
        (lambda s, q: s.search(q * np.nan, k=1), InvalidVectorError),
        (lambda s, q: s.search(q, k=0), InvalidInputError),
        (lambda s, q: s.search(q, k=1, shortlist=0), InvalidInputError),
        (lambda s, q: s.search_exact(q, k=-1), InvalidInputError),
        (lambda s, q: s.search(q, k=1, filter={"a": {"$regex": "x"}}), UnsupportedFilterError),
        (lambda s, q: s.search(q, k=1, filter={"a": {"$gt": ["x"]}}), FilterError),
        (lambda s, q: s.search_exact(q, k=1, filter=["a"]), FilterError),
        (lambda s, q: s.search_batch(np.stack([q, q * 0]), k=1), InvalidVectorError),
        (lambda s, q: s.get("doc-1"), InvalidInputError),
        (lambda s, q: s.delete([None]), InvalidInputError),
    ],
)
def test_bad_calls_raise_the_same_typed_errors(backend, rng, call, error):
    store = backend.create()
    store.add(ids(3), unit_rows(rng, 3, DIM))
    with pytest.raises(error):
        call(store, unit_rows(rng, 1, DIM)[0])


# --- filters: every operator agrees with the reference evaluator -------------------------------------

METADATA = [
    {"year": 2020, "lang": "en", "tags": ["a", "b"], "score": 0.5, "draft": False, "title": "Hello World"},
    {"year": 2021, "lang": "de", "tags": ["b"], "score": 1.0, "draft": True, "title": "Straße und Weg"},
    {"year": 2021.0, "lang": None, "tags": [], "score": 1, "title": "hello there"},
    {"year": "2021", "tags": "a", "score": True, "nested": {"x": 1}, "title": "HELLO"},
    {"lang": "en", "tags": ["a", ["b"], None, 1], "score": -3, "draft": None},
    {"year": 2019, "lang": "fr", "tags": [1, 2, True], "score": 2**60, "nested": {"x": 1}, "a.b": "dotted"},
    {},
    {"year": None, "lang": "EN", "tags": None, "score": 7.25, "title": "", "draft": 0},
    {"year": [2020, 2021], "lang": ["en"], "tags": ["A", "b", "b"], "score": [1], "a.b": 3, "k[0]": "x"},
    {"year": 1, "lang": "e", "tags": [None], "score": 1.5, "draft": 1, "title": "a straße"},
]

FILTERS = [
    {"year": 2021}, {"year": {"$eq": 2021.0}}, {"year": {"$eq": "2021"}}, {"year": {"$eq": None}},
    {"year": {"$eq": [2020, 2021]}}, {"nested": {"$eq": {"x": 1}}}, {"nested": {"$eq": {"x": 1.0}}},
    {"tags": {"$eq": []}}, {"tags": {"$eq": "a"}}, {"draft": False}, {"draft": 0}, {"draft": {"$eq": 1}},
    {"score": True}, {"score": 1}, {"score": 2**60},
    {"year": {"$ne": 2021}}, {"lang": {"$ne": None}}, {"tags": {"$ne": ["b"]}}, {"draft": {"$ne": False}},
    {"year": {"$gt": 2020}}, {"year": {"$gte": 2020}}, {"year": {"$lt": 2021}}, {"year": {"$lte": 2020.5}},
    {"score": {"$gt": 0}}, {"score": {"$gte": 1}}, {"score": {"$lt": 1.5}}, {"score": {"$gt": 2**59}},
    {"score": {"$gte": 2**60}}, {"score": {"$lt": -(2**62)}}, {"year": {"$gte": 2020, "$lt": 2021}},
    {"lang": {"$in": ["en", "de"]}}, {"lang": {"$in": [None]}}, {"year": {"$in": [2021, "2021"]}}, {"lang": {"$in": []}},
    {"lang": {"$nin": ["en"]}}, {"lang": {"$nin": []}}, {"score": {"$in": [1, True]}}, {"tags": {"$in": ["a"]}},
    {"tags": {"$contains": "a"}}, {"tags": {"$contains": "b"}}, {"tags": {"$contains": None}}, {"tags": {"$contains": 1}},
    {"tags": {"$contains": True}}, {"title": {"$contains": "ello"}}, {"title": {"$contains": ""}}, {"lang": {"$contains": "en"}},
    {"year": {"$contains": 2021}}, {"tags": {"$contains": "A"}},
    {"tags": {"$any": ["a", 2]}}, {"tags": {"$any": []}}, {"tags": {"$any": [None]}}, {"year": {"$any": [2021.0]}},
    {"tags": {"$all": ["a", "b"]}}, {"tags": {"$all": []}}, {"tags": {"$all": ["b", "b"]}}, {"tags": {"$all": [1, True]}},
    {"title": {"$text": "ello"}}, {"title": {"$text": "HELLO"}}, {"title": {"$text": ""}}, {"lang": {"$text": "n"}},
    {"title": {"$itext": "HELLO"}}, {"title": {"$itext": "STRASSE"}}, {"title": {"$itext": ""}}, {"tags": {"$itext": "a"}},
    {"lang": {"$exists": True}}, {"lang": {"$exists": False}}, {"draft": {"$exists": True}},
    {"tags": {"$empty": True}}, {"tags": {"$empty": False}}, {"title": {"$empty": True}}, {"nested": {"$empty": False}},
    {"a.b": "dotted"}, {"a.b": {"$gt": 1}}, {"k[0]": "x"}, {"a": {"$exists": True}},
    # string ranges: code point order on string values only ("2021" but not 2021; "HELLO" < "Hello" < "a")
    {"year": {"$gte": "2021"}}, {"year": {"$lt": "2022"}}, {"title": {"$lt": "a"}}, {"lang": {"$gt": "e"}},
    {"title": {"$gte": "Hello", "$lt": "hello"}}, {"title": {"$lte": ""}}, {"$not": {"lang": {"$lte": "en"}}},
    {"$or": [{"title": {"$gt": "hello"}}, {"year": {"$gt": 2020}}]},
    {"$and": [{"lang": "en"}, {"year": {"$gte": 2020}}]}, {"$or": [{"lang": "de"}, {"tags": {"$contains": 2}}]},
    {"$not": {"lang": "en"}}, {"$not": [{"lang": "en"}, {"draft": True}]},
    {"$not": {"title": {"$itext": "hello"}}}, {"$or": [{"title": {"$text": "Hello"}}, {"year": 2019}]},
    {"$and": [{"$not": {"tags": {"$contains": "a"}}}, {"title": {"$exists": True}}]},
    {"$not": {"$or": [{"title": {"$contains": "e"}}, {"score": {"$gt": 2**60 - 1}}]}},
    {"lang": "en", "$or": [{"draft": False}, {"draft": {"$exists": False}}]},
]


@pytest.fixture
def filtered(backend, rng):
    store = backend.create()
    vectors = unit_rows(rng, len(METADATA), DIM)
    names = [f"m{i}" for i in range(len(METADATA))]
    store.add(names, vectors, texts=names, metadatas=METADATA)
    return store, vectors


def _expected(flt):
    return {f"m{i}" for i, md in enumerate(METADATA) if filters.matches(flt, md)}


def test_every_operator_agrees_with_the_reference(filtered):
    store, vectors = filtered
    n = len(METADATA)
    for flt in FILTERS:
        expected = _expected(flt)
        got = {h.id for h in store.search_exact(vectors[0], k=n, filter=flt)}
        assert got == expected, flt
        assert {h.id for h in store.search(vectors[0], k=n, shortlist=n, filter=flt)} == expected, flt
        assert store.ids(flt) == [f"m{i}" for i in range(n) if f"m{i}" in expected], flt


def _random_filter(r: random.Random, depth: int = 0):
    if depth < 2 and r.random() < 0.3:
        kind = r.choice(["$and", "$or", "$not"])
        children = [_random_filter(r, depth + 1) for _ in range(r.randint(1, 3))]
        return {kind: children[0] if kind == "$not" and r.random() < 0.5 else children}
    key = r.choice(["year", "lang", "tags", "score", "draft", "title", "nested", "a.b", "missing"])
    values = [None, True, False, 0, 1, 1.0, 1.5, 2020, 2021, 2021.0, "2021", "a", "b", "A", "en", "EN", "", "hello", "straße"]
    op = r.choice(filters.OPERATORS)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        operand = r.choice([0, 1, 1.5, 2020, 2021, -3, 2**60, 2**59, "2021", "", "e", "en", "hello", "Hello", "straße"])
    elif op in ("$in", "$nin", "$any", "$all"):
        operand = r.sample([v for v in values], r.randint(0, 3))
    elif op in ("$text", "$itext"):
        operand = r.choice(["", "e", "ello", "HELLO", "STRASSE", "en", "a"])
    elif op in ("$exists", "$empty"):
        operand = r.random() < 0.5
    elif op == "$contains":
        operand = r.choice(values)
    else:
        operand = r.choice(values + [[], ["b"], ["a", "b"], {"x": 1}, [2020, 2021]])
    return {key: {op: operand}}


def test_random_filters_agree_with_the_reference(filtered):
    store, vectors = filtered
    r = random.Random(20240901)
    for _ in range(300):
        flt = _random_filter(r)
        got = {h.id for h in store.search_exact(vectors[1], k=len(METADATA), filter=flt)}
        assert got == _expected(flt), flt


def _random_metadata(r: random.Random) -> dict:
    scalars = [None, True, False, 0, 1, 1.0, -2.5, 2020, 2021.0, 2**60, "", "a", "b", "A", "en", "Hello", "straße", "2021"]
    md = {}
    for key in ["year", "lang", "tags", "score", "draft", "title", "nested", "a.b"]:
        roll = r.random()
        if roll < 0.3:
            continue  # missing
        if roll < 0.75:
            md[key] = r.choice(scalars)
        elif roll < 0.95:
            md[key] = [r.choice(scalars + [["b"]]) for _ in range(r.randint(0, 3))]
        else:
            md[key] = {"x": r.choice(scalars)}
    return md


def test_random_documents_and_filters_agree_with_the_reference(backend):
    r = random.Random(7)
    docs = [_random_metadata(r) for _ in range(60)]
    store = backend.create()
    vectors = unit_rows(np.random.default_rng(7), len(docs), DIM)
    store.add([f"r{i}" for i in range(len(docs))], vectors, metadatas=docs)
    for _ in range(250):
        flt = _random_filter(r)
        expected = [f"r{i}" for i, md in enumerate(docs) if filters.matches(flt, md)]
        assert store.ids(flt) == expected, flt
        assert {h.id for h in store.search_exact(vectors[0], k=len(docs), filter=flt)} == set(expected), flt
