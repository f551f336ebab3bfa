"""QdrantStore specifics: one server-side coarse-to-fine query, the collection layout, reopening,
id mapping, the collection's metadata, the filter translation, the factory, and migrate.

All of it runs in qdrant-client's local mode (brute force; no server here). What a real server adds
(HNSW on ``prefix``, on-disk ``full``, payload indexes) is configured by the same calls and checked
here through the collection's reported configuration.
"""

from __future__ import annotations

import dataclasses

import threading
import uuid

import numpy as np
import pytest

from mrl_retrievers import EmbeddingSpec, MRLStore, filters
from mrl_retrievers.bench.synthetic import recall_at_k
from mrl_retrievers.config import Secret, StoreSettings
from mrl_retrievers.errors import (
    ConfigError,
    SpecMismatchError,
    StoreError,
    StoreExistsError,
    StoreNotFoundError,
    UnsupportedFormatError,
)
from mrl_retrievers.providers.fake import FakeProvider
from mrl_retrievers.store import open_store
from tests.helpers import unit_rows

qdrant_client = pytest.importorskip("qdrant_client")
from qdrant_client import models

from mrl_retrievers.store.qdrant import filters as qf
from mrl_retrievers.store.migrate import migrate, migrate_uris, parse_store_uri
from mrl_retrievers.store.qdrant import ID_NAMESPACE, QdrantStore, point_id

pytestmark = [
    pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning"),
    # test_unreachable_server_is_a_typed_error: qdrant-client's version probe warns from a thread
    pytest.mark.filterwarnings("ignore:Failed to obtain server version:UserWarning"),
    pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection:UserWarning"),
]

DIM = 32


@pytest.fixture
def store():
    made = QdrantStore.create("docs", location=":memory:", full_dim=DIM, prefix_dim=8, shortlist=50, ef=64)
    yield made
    made.close()


class Spy:
    """Wraps one client method and records its calls."""

    def __init__(self, monkeypatch, client, name):
        self.calls = []
        real = getattr(client, name)

        def spy(*args, **kwargs):
            self.calls.append((args, kwargs))
            return real(*args, **kwargs)

        monkeypatch.setattr(client, name, spy)


# --- the coarse-to-fine query ------------------------------------------------------------------------


def test_search_is_one_query_points_call_with_a_prefix_prefetch(store, rng, monkeypatch):
    vectors = unit_rows(rng, 30, DIM)
    store.add([str(i) for i in range(30)], vectors, metadatas=[{"i": i} for i in range(30)])
    query_points = Spy(monkeypatch, store.client, "query_points")
    scroll = Spy(monkeypatch, store.client, "scroll")
    hits = store.search(vectors[4], k=3, shortlist=20, filter={"i": {"$lt": 10}})
    assert hits[0].id == "4" and len(hits) == 3
    assert len(query_points.calls) == 1 and not scroll.calls
    (_, kwargs), = query_points.calls
    assert kwargs["using"] == "full" and kwargs["limit"] == 3
    prefetch = kwargs["prefetch"]
    assert prefetch.using == "prefix" and prefetch.limit == 20 and len(prefetch.query) == 8
    assert prefetch.params.hnsw_ef == 64 and prefetch.filter is not None
    np.testing.assert_allclose(kwargs["query"], vectors[4], atol=1e-6)
    store.search(vectors[4], k=3)
    assert query_points.calls[-1][1]["prefetch"].limit == 50  # the collection's default shortlist


def test_search_exact_scans_full_vectors(store, rng, monkeypatch):
    store.add(["a", "b"], unit_rows(rng, 2, DIM))
    spy = Spy(monkeypatch, store.client, "query_points")
    store.search_exact(unit_rows(rng, 1, DIM)[0], k=2)
    (_, kwargs), = spy.calls
    assert kwargs["using"] == "full" and kwargs["search_params"].exact is True and "prefetch" not in kwargs


def test_search_batch_is_one_call(store, rng, monkeypatch):
    store.add([str(i) for i in range(10)], unit_rows(rng, 10, DIM))
    spy = Spy(monkeypatch, store.client, "query_batch_points")
    results = store.search_batch(unit_rows(rng, 3, DIM), k=2)
    assert len(spy.calls) == 1 and [len(r) for r in results] == [2, 2, 2]
    requests = spy.calls[0][1]["requests"]
    assert all(r.prefetch.using == "prefix" and r.using == "full" for r in requests)


def test_substring_filters_resolve_matches_first(store, rng, monkeypatch):
    vectors = unit_rows(rng, 6, DIM)
    titles = ["Hello", "HELLO world", "bye", None, "Straße", "shell"]
    store.add([str(i) for i in range(6)], vectors, metadatas=[{} if t is None else {"title": t} for t in titles])
    scroll = Spy(monkeypatch, store.client, "scroll")
    hits = store.search(vectors[0], k=6, filter={"title": {"$itext": "hello"}})
    assert {h.id for h in hits} == {"0", "1"}
    (_, kwargs), = scroll.calls  # one scroll over the strings, then the usual single query
    assert kwargs["with_payload"] == ["metadata"]
    assert store.search(vectors[0], k=6, filter={"title": {"$itext": "nowhere"}}) == []


# --- the collection ------------------------------------------------------------------------------


def test_layout_of_the_collection(rng):
    spec = EmbeddingSpec(provider="fake", model="m", dim=DIM)
    store = QdrantStore.create("docs", location=":memory:", full_dim=DIM, prefix_dim=8, spec=spec, quantization="int8")
    try:
        info = store.client.get_collection("docs")
        prefix_params, full = info.config.params.vectors["prefix"], info.config.params.vectors["full"]
        assert (prefix_params.size, full.size) == (8, DIM)
        assert full.hnsw_config.m == 0 and full.on_disk is True and full.datatype == models.Datatype.FLOAT16
        assert prefix_params.on_disk is False and prefix_params.hnsw_config.m == 16
        assert prefix_params.quantization_config.scalar.type == models.ScalarType.INT8
        assert prefix_params.distance == full.distance == models.Distance.COSINE
        meta = info.config.metadata["mrl_retrievers"]
        assert meta["format_version"] == 1 and meta["spec"] == spec.to_dict() and meta["prefix_dim"] == 8
        (alias,) = store.client.get_aliases().aliases
        assert alias.alias_name == "docs" and alias.collection_name.startswith("docs-mrl-")
    finally:
        store.close()


def test_ids_map_to_uuid5_and_back(store, rng):
    store.add(["doc/1", "ünïcode id", "42"], unit_rows(rng, 3, DIM))
    points = store.client.retrieve("docs", ids=[point_id("doc/1")], with_payload=True)
    assert points[0].id == str(uuid.uuid5(ID_NAMESPACE, "doc/1")) and points[0].payload["id"] == "doc/1"
    assert point_id("42") == point_id("42") != point_id("43")
    assert [r.id for r in store.get(["42", "ünïcode id"])] == ["42", "ünïcode id"]
    assert set(qf.MATCH) and points[0].payload[qf.MATCH]["present"] == []


def test_reopen_by_path_keeps_everything(tmp_path, rng):
    spec = EmbeddingSpec(provider="fake", model="m", dim=DIM)
    vectors = unit_rows(rng, 12, DIM)
    with QdrantStore.create("docs", path=tmp_path / "q", full_dim=DIM, prefix_dim=8, spec=spec, shortlist=30) as store:
        store.add([str(i) for i in range(12)], vectors, texts=[f"t{i}" for i in range(12)], metadatas=[{"i": i} for i in range(12)])
        second = QdrantStore.open("docs", path=tmp_path / "q")  # same process: shares the client
        assert len(second) == 12
        second.close()
        assert len(store) == 12  # still usable
    with QdrantStore.open("docs", path=tmp_path / "q", spec=spec) as again:
        assert (len(again), again.prefix_dim, again.layout.shortlist, again.spec) == (12, 8, 30, spec)
        assert again.search(vectors[5], k=1)[0].text == "t5"
        assert again.ids() == [str(i) for i in range(12)]  # insertion order


def test_open_and_create_errors(tmp_path):
    where = {"path": tmp_path / "q"}
    with pytest.raises(StoreNotFoundError, match="create it"):
        QdrantStore.open("nope", **where)
    QdrantStore.create("docs", full_dim=8, prefix_dim=4, **where).close()
    with pytest.raises(StoreExistsError):
        QdrantStore.create("docs", full_dim=8, prefix_dim=4, **where)
    with pytest.raises(ConfigError, match="one of"):
        QdrantStore.open("docs", url="http://127.0.0.1:9", **where)
    with pytest.raises(ConfigError):
        QdrantStore.create("a/b", full_dim=8, prefix_dim=4, **where)
    client = qdrant_client.QdrantClient(path=str(tmp_path / "other"))
    try:
        client.create_collection("plain", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
        with pytest.raises(StoreNotFoundError, match="not an mrl-retrievers collection"):
            QdrantStore.open("plain", client=client)
        store = QdrantStore.create("docs", client=client, full_dim=8, prefix_dim=4)
        physical = store.client.get_aliases().aliases[0].collection_name
        newer = {**store.layout.to_dict(), "format_version": 99}
        client.update_collection(physical, metadata={"mrl_retrievers": newer})
        with pytest.raises(UnsupportedFormatError, match="newer"):
            QdrantStore.open("docs", client=client)
        store.close()
        assert not client._client.closed  # a client we were given is never closed by us
    finally:
        client.close()


def test_reindex_moves_the_alias_and_drops_the_old_collection(store, rng):
    store.add([str(i) for i in range(20)], unit_rows(rng, 20, DIM))
    before = store.client.get_aliases().aliases[0].collection_name
    store.reindex(prefix_dim=4)
    (alias,) = store.client.get_aliases().aliases
    assert alias.collection_name != before
    assert [c.name for c in store.client.get_collections().collections] == [alias.collection_name]
    assert store.client.get_collection("docs").config.params.vectors["prefix"].size == 4
    assert len(store) == 20


def test_secrets_never_show(monkeypatch):
    made = {}

    class FakeClient:  # records what the real one would be built with; never connects
        def __init__(self, **kwargs):
            made.update(kwargs)

    monkeypatch.setattr(qdrant_client, "QdrantClient", FakeClient)
    from mrl_retrievers.store.qdrant.collection import Connection

    conn = Connection.make(url="https://user:pw@qdrant.example:6333/", api_key=Secret("canary-key-123"), path=None,
                            location=None, client=None, timeout=None)
    assert made["api_key"] == "canary-key-123"
    assert "canary" not in conn.where and "pw" not in conn.where and conn.where == "https://qdrant.example:6333/"


# --- the filter translation ----------------------------------------------------------------------


def test_translation_is_exact_except_for_substrings():
    exact = [{"a": 1}, {"a": {"$ne": [1]}}, {"a": {"$in": ["x", 1.0]}}, {"a": {"$gte": 3}}, {"a": {"$contains": 2}},
             {"a": {"$all": []}}, {"a": {"$text": ""}}, {"$not": [{"a": {"$exists": False}}, {"b": {"$empty": True}}]}]
    for flt in exact:
        t = qf.translate(flt)
        assert t.post is None and t.server is not None and not t.never, flt
    for flt in [{"a": {"$text": "x"}}, {"a": {"$itext": "x"}}, {"a": {"$contains": "x"}}, {"a": {"$gt": 2**53}},
                {"$not": {"a": {"$itext": "x"}}}, {"a": {"$gte": "2024-01-01"}}]:
        assert qf.translate(flt).post is not None, flt
    assert qf.translate({"a": {"$in": []}}).never and qf.translate({"$or": [{"a": {"$any": []}}, {"b": {"$in": []}}]}).never
    assert qf.translate({"a": {"$nin": []}}).server is None  # matches everything: no filter at all
    assert qf.translate(None).server is None


def test_translation_never_sends_an_empty_should():
    def walk(node):
        if isinstance(node, models.Filter):
            for part in (node.must, node.should, node.must_not):
                if part is not None:
                    assert part != [], node
                    for child in part:
                        walk(child)

    for flt in [{"$or": [{"a": {"$in": []}}, {"b": 1}]}, {"$not": {"$or": [{"a": {"$any": []}}, {"b": {"$nin": []}}]}},
                {"$and": [{"a": {"$nin": []}}, {"$or": [{"c": {"$all": []}}, {"d": {"$in": []}}]}]}]:
        walk(qf.translate(flt).server)


def test_keys_with_dots_and_brackets_are_one_key():
    (cond,) = qf.translate({"a.b[0]": {"$gt": 1}}).server.must[1:]
    assert cond.key == 'metadata."a.b[0]"'


def test_tokens_follow_json_equality():
    assert qf.token("k", 1) == qf.token("k", 1.0) != qf.token("k", True)
    assert qf.token("k", [1, {"b": 2.0, "a": None}]) == qf.token("k", (1.0, {"a": None, "b": 2}))
    assert qf.token("k", "1") != qf.token("k", 1) and qf.token("k", 1) != qf.token("j", 1)
    assert qf.token("k", 2**53 + 1) != qf.token("k", float(2**53 + 1))
    assert filters.json_equal(2**53 + 1, float(2**53 + 1)) is False


# --- the factory ---------------------------------------------------------------------------------


def test_open_store_creates_then_reopens_a_qdrant_collection(tmp_path, rng):
    settings = StoreSettings(backend="qdrant", path=str(tmp_path / "q"), collection="idx", prefix_dim=64, shortlist=40)
    spec = EmbeddingSpec(provider="fake", model="m", dim=DIM)
    with pytest.raises(ConfigError, match="prefix_dim = 64 is wider than the vectors"):  # never clamped silently
        open_store(settings, full_dim=DIM, spec=spec)
    settings = dataclasses.replace(settings, prefix_dim=None)
    store = open_store(settings, full_dim=DIM, spec=spec)
    assert isinstance(store, QdrantStore) and store.prefix_dim == DIM  # unset: the default, or the full width
    store.add(["a"], unit_rows(rng, 1, DIM))
    assert open_store(store, full_dim=DIM, spec=spec) is store
    store.close()
    again = open_store(settings, full_dim=DIM, spec=spec)
    assert len(again) == 1 and again.layout.shortlist == 40
    with pytest.raises(ConfigError, match="wide"):
        open_store(again, full_dim=DIM + 1)
    with pytest.raises(SpecMismatchError):
        open_store(again, full_dim=DIM, spec=EmbeddingSpec(provider="fake", model="other", dim=DIM))
    again.close()
    memory = open_store(StoreSettings(backend="qdrant"), full_dim=8)
    assert memory.collection == "mrl" and len(memory) == 0
    memory.close()
    with pytest.raises(ConfigError, match="funnel_dim"):
        open_store(StoreSettings(backend="qdrant", funnel_dim=16), full_dim=DIM)


# --- migrate -------------------------------------------------------------------------------------


def test_migrate_local_to_qdrant_and_back_without_provider_calls(tmp_path):
    provider = FakeProvider(dim=128)
    texts = [f"document {i} about topic {i % 17} and {i % 5}" for i in range(600)]
    source = MRLStore.create(tmp_path / "local", full_dim=128, prefix_dim=32, spec=provider.spec)
    source.add([f"d{i}" for i in range(600)], provider.embed_documents(texts), texts=texts,
               metadatas=[{"topic": i % 17, "tags": ["x"] if i % 2 else []} for i in range(600)])
    queries = provider.embed_documents([f"topic {i} and {i % 5}" for i in range(30)])
    truth = [[h.id for h in source.search_exact(q, k=10)] for q in queries]
    calls = provider.calls

    qdrant = QdrantStore.create("docs", location=":memory:", full_dim=128, prefix_dim=32)  # on disk: see below
    report = migrate(source, qdrant, batch_size=128)
    assert (report.copied, report.source_count, report.destination_count) == (600, 600, 600)
    assert qdrant.spec == provider.spec  # adopted from the source
    found = [[h.id for h in qdrant.search(q, k=10, shortlist=100)] for q in queries]
    assert recall_at_k(found, truth, 10) >= 0.99
    assert qdrant.get(["d7"])[0].metadata == {"topic": 7, "tags": ["x"]} and qdrant.get(["d7"])[0].text == texts[7]
    flt = {"tags": {"$contains": "x"}, "topic": {"$lt": 5}}
    assert [h.id for h in qdrant.search_exact(queries[0], k=10, filter=flt)] == [h.id for h in source.search_exact(queries[0], k=10, filter=flt)]

    back = MRLStore.create(tmp_path / "back", full_dim=128, prefix_dim=16, exact_below=0)
    report = migrate(qdrant, back)
    assert (report.copied, report.destination_count) == (600, 600)
    found = [[h.id for h in back.search(q, k=10, shortlist=150)] for q in queries]
    assert recall_at_k(found, truth, 10) >= 0.99
    assert back.spec == provider.spec
    assert provider.calls == calls  # nothing re-embedded
    for store in (source, qdrant, back):
        store.close()


def test_migrate_refuses_another_vector_space(tmp_path, rng):
    spec = EmbeddingSpec(provider="fake", model="m", dim=8)
    source = MRLStore.create(tmp_path / "s", full_dim=8, prefix_dim=4, spec=spec)
    source.add(["a"], unit_rows(rng, 1, 8))
    with QdrantStore.create("w", location=":memory:", full_dim=16, prefix_dim=4) as wide:
        with pytest.raises(ConfigError, match="wide"):
            migrate(source, wide)
    other = EmbeddingSpec(provider="fake", model="other", dim=8)
    with QdrantStore.create("o", location=":memory:", full_dim=8, prefix_dim=4, spec=other) as target:
        with pytest.raises(SpecMismatchError):
            migrate(source, target)
        assert len(target) == 0
    source.close()


def test_store_uris_and_migrate_uris(tmp_path, rng, monkeypatch):
    assert parse_store_uri("some/dir") == StoreSettings(path="some/dir")
    assert parse_store_uri("qdrant+path://./data?collection=docs") == StoreSettings(backend="qdrant", path="./data", collection="docs")
    monkeypatch.setenv("QDRANT_API_KEY", "canary-env-key")
    remote = parse_store_uri("qdrants://qdrant.example/docs")
    assert (remote.url, remote.collection) == ("https://qdrant.example:6333", "docs")
    assert remote.api_key.get_secret_value() == "canary-env-key" and "canary" not in repr(remote)
    for bad in ("qdrant://host", "qdrant://user:key@host/docs", "qdrant+path://?collection=x", "qdrant+path://d?coll=x", ""):
        with pytest.raises(ConfigError):
            parse_store_uri(bad)

    source = MRLStore.create(tmp_path / "src", full_dim=16, prefix_dim=4)
    vectors = unit_rows(rng, 40, 16)
    source.add([str(i) for i in range(40)], vectors)
    source.close()
    report = migrate_uris(str(tmp_path / "src"), f"qdrant+path://{tmp_path / 'q'}?collection=docs", batch_size=16)
    assert (report.copied, report.destination_count) == (40, 40)
    report = migrate_uris(f"qdrant+path://{tmp_path / 'q'}?collection=docs", str(tmp_path / "again"), prefix_dim=8)
    assert report.destination_count == 40
    with MRLStore.open(tmp_path / "again") as again:
        assert again.prefix_dim == 8 and again.search(vectors[3], k=1)[0].id == "3"
    with pytest.raises(StoreNotFoundError):
        migrate_uris(f"qdrant+path://{tmp_path / 'q'}?collection=missing", str(tmp_path / "x"))


def test_unreachable_server_is_a_typed_error():
    before = set(threading.enumerate())
    with pytest.raises(StoreError) as caught:
        QdrantStore.open("docs", url="http://127.0.0.1:9", api_key=Secret("canary-key-456"), timeout=2)
    assert "canary" not in str(caught.value) and "127.0.0.1:9" in str(caught.value)
    for thread in set(threading.enumerate()) - before:  # qdrant-client's version probe: let it warn here
        thread.join(timeout=10)


@pytest.mark.parametrize("name", ["mrl_retrievers.store.qdrant.store", "mrl_retrievers.store.migrate"])
def test_docstring_examples_run(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_naive_qdrant_matching_would_be_wrong(store, rng):
    """Why the match fields exist: Qdrant's own MatchValue on a field matches any element of a list
    and keeps 1 and 1.0 apart; the reference semantics compare whole JSON values."""
    store.add(["scalar", "list", "float"], unit_rows(rng, 3, DIM),
              metadatas=[{"tag": "a", "n": 1}, {"tag": ["a", "b"], "n": [1]}, {"tag": "b", "n": 1.0}])
    naive = store.client.scroll("docs", scroll_filter=models.Filter(must=[
        models.FieldCondition(key='metadata."tag"', match=models.MatchValue(value="a"))]), with_payload=["id"])[0]
    assert {p.payload["id"] for p in naive} == {"scalar", "list"}
    naive_n = store.client.scroll("docs", scroll_filter=models.Filter(must=[
        models.FieldCondition(key='metadata."n"', match=models.MatchValue(value=1))]), with_payload=["id"])[0]
    assert {p.payload["id"] for p in naive_n} == {"scalar", "list"}
    assert store.ids({"tag": "a"}) == ["scalar"] and store.ids({"n": 1}) == ["scalar", "float"]


def test_missing_qdrant_client_names_the_extra():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['qdrant_client'] = None\n"
        "from mrl_retrievers.store import open_store\n"
        "from mrl_retrievers.config import StoreSettings\n"
        "from mrl_retrievers.errors import MissingDependencyError\n"
        "try:\n"
        "    open_store(StoreSettings(backend='qdrant'), full_dim=8)\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "mrl-retrievers[qdrant]" in out
