"""Bad input is rejected before anything is written, with a typed error naming the problem, and the
store's files are byte-for-byte unchanged afterwards."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

from mrl_retrievers import MRLStore
from mrl_retrievers.errors import (
    CorruptStoreError,
    DimensionMismatchError,
    DuplicateIdError,
    FilterError,
    InvalidInputError,
    InvalidMetadataError,
    InvalidVectorError,
    StoreNotFoundError,
    UnsupportedFilterError,
    UnsupportedFormatError,
)
from tests.helpers import unit_rows

DIM = 16


@pytest.fixture
def store(tmp_path, rng):
    store = MRLStore.create(tmp_path / "s", full_dim=DIM, prefix_dim=4)
    store.add(["a", "b", "c"], unit_rows(rng, 3, DIM), texts=["x", "y", "z"], metadatas=[{"n": 1}, {"n": 2}, {"n": 3}])
    store.checkpoint()
    yield store
    store.close()


def snapshot(path):
    # docs.sqlite-shm is SQLite's shared-memory WAL index: readers update it, it holds no data.
    skip = {"lock", "docs.sqlite-shm"}
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir()) if p.is_file() and p.name not in skip}


def good(n=1):
    return unit_rows(np.random.default_rng(0), n, DIM)


BAD_ADDS = [
    ("wrong width", dict(ids=["d"], vectors=np.ones((1, DIM + 1))), DimensionMismatchError, "width 17"),
    ("nan", dict(ids=["d"], vectors=np.full((1, DIM), np.nan)), InvalidVectorError, "NaN"),
    ("inf", dict(ids=["d"], vectors=np.full((1, DIM), np.inf)), InvalidVectorError, "infinity"),
    ("all zero", dict(ids=["d"], vectors=np.zeros((1, DIM))), InvalidVectorError, "all zeros"),
    ("1-d", dict(ids=["d"], vectors=np.ones(DIM)), InvalidVectorError, "2-D"),
    ("strings", dict(ids=["d"], vectors=[["a"] * DIM]), InvalidVectorError, "numeric"),
    ("ragged", dict(ids=["d", "e"], vectors=[[1.0] * DIM, [1.0]]), InvalidVectorError, ""),
    ("count mismatch", dict(ids=["d", "e"], vectors=good(1)), InvalidInputError, "2 ids but 1 vectors"),
    ("duplicate ids", dict(ids=["d", "d"], vectors=good(2)), DuplicateIdError, "'d'"),
    ("non-string id", dict(ids=[7], vectors=good(1)), InvalidInputError, r"ids\[0\]"),
    ("empty id", dict(ids=[""], vectors=good(1)), InvalidInputError, r"ids\[0\]"),
    ("ids as a string", dict(ids="d", vectors=good(1)), InvalidInputError, "list of strings"),
    ("text not str", dict(ids=["d"], vectors=good(1), texts=[b"bytes"]), InvalidInputError, r"texts\[0\]"),
    ("lone surrogate", dict(ids=["d"], vectors=good(1), texts=["\ud800"]), InvalidInputError, "UTF-8"),
    ("metadata bytes", dict(ids=["d"], vectors=good(1), metadatas=[{"k": b"x"}]), InvalidMetadataError, "k"),
    ("metadata nan", dict(ids=["d"], vectors=good(1), metadatas=[{"k": math.nan}]), InvalidMetadataError, "k"),
    ("metadata set", dict(ids=["d"], vectors=good(1), metadatas=[{"k": {1, 2}}]), InvalidMetadataError, "k"),
    ("metadata int key", dict(ids=["d"], vectors=good(1), metadatas=[{1: "x"}]), InvalidMetadataError, ""),
    ("metadata nested int key", dict(ids=["d"], vectors=good(1), metadatas=[{"a": {2: "x"}}]), InvalidMetadataError, "a"),
    ("metadata not a dict", dict(ids=["d"], vectors=good(1), metadatas=[["x"]]), InvalidMetadataError, ""),
    ("metadata huge", dict(ids=["d"], vectors=good(1), metadatas=[{"k": "x" * (2 << 20)}]), InvalidMetadataError, ""),
    ("metadata count", dict(ids=["d"], vectors=good(1), metadatas=[{}, {}]), InvalidInputError, ""),
    # one bad row in an otherwise good batch: nothing of the batch is written
    ("bad row in batch", dict(ids=["d", "e", "f"], vectors=np.vstack([good(2), np.full((1, DIM), np.nan)])), InvalidVectorError, "row 2"),
]


@pytest.mark.parametrize("case", BAD_ADDS, ids=[c[0] for c in BAD_ADDS])
def test_bad_add_is_rejected_and_leaves_files_untouched(store, case):
    _, kwargs, error, fragment = case
    before = snapshot(store.path)
    with pytest.raises(error, match=fragment or None):
        store.add(**kwargs)
    assert snapshot(store.path) == before
    assert len(store) == 3 and store.get(["d", "e", "f"]) == []


def test_nested_json_metadata_is_valid(store):
    meta = {"a": {"b": [1, 2, {"c": None}]}, "s": "ünïcode", "t": True}
    store.add(["n"], good(1), metadatas=[meta])
    assert store.get(["n"])[0].metadata == meta


BAD_SEARCHES = [
    ("wrong width", dict(vector=np.ones(DIM - 1)), DimensionMismatchError),
    ("nan query", dict(vector=np.full(DIM, np.nan)), InvalidVectorError),
    ("zero query", dict(vector=np.zeros(DIM)), InvalidVectorError),
    ("k zero", dict(vector=good(1)[0], k=0), InvalidInputError),
    ("k negative", dict(vector=good(1)[0], k=-3), InvalidInputError),
    ("k float", dict(vector=good(1)[0], k=2.5), InvalidInputError),
    ("shortlist zero", dict(vector=good(1)[0], shortlist=0), InvalidInputError),
    ("unknown operator", dict(vector=good(1)[0], filter={"n": {"$regex": "x"}}), UnsupportedFilterError),
    ("unknown combinator", dict(vector=good(1)[0], filter={"$nor": [{"n": 1}]}), UnsupportedFilterError),
    ("gt on a list", dict(vector=good(1)[0], filter={"n": {"$gt": ["a"]}}), FilterError),  # strings order (issue 20)
    ("sql key", dict(vector=good(1)[0], filter={"a'); DROP TABLE docs;--": 1}), None),
    ("quote key", dict(vector=good(1)[0], filter={'a"b': 1}), FilterError),
]


@pytest.mark.parametrize("case", BAD_SEARCHES, ids=[c[0] for c in BAD_SEARCHES])
def test_bad_search_is_rejected(store, case):
    _, kwargs, error = case
    before = snapshot(store.path)
    if error is None:  # legal but hostile: matches nothing, harms nothing
        assert store.search(**kwargs) == []
    else:
        with pytest.raises(error):
            store.search(**kwargs)
    assert snapshot(store.path) == before
    assert len(store) == 3 and len(store.search(good(1)[0], k=10)) == 3


def test_open_a_newer_format_raises_unsupported_format(tmp_path):
    MRLStore.create(tmp_path / "s", full_dim=DIM, prefix_dim=4).close()
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    manifest["format_version"] = 99
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UnsupportedFormatError, match="version 99"):
        MRLStore.open(tmp_path / "s")


def test_open_garbage_manifest_raises_corrupt_with_repair_hint(tmp_path):
    MRLStore.create(tmp_path / "s", full_dim=DIM, prefix_dim=4).close()
    (tmp_path / "s" / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptStoreError, match="mrl-retrievers verify"):
        MRLStore.open(tmp_path / "s")


def test_open_a_path_that_is_not_a_store(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreNotFoundError):
        MRLStore.open(tmp_path / "plain")


def test_planted_pickle_is_never_loaded(tmp_path, rng):
    import pickle

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickle was loaded')",))

    store = MRLStore.create(tmp_path / "s", full_dim=DIM, prefix_dim=4)
    store.add(["a"], unit_rows(rng, 1, DIM))
    store.close()
    for name in ("index.pkl", "docstore.pkl", "prefix.hnsw", "index.faiss"):
        (tmp_path / "s" / name).write_bytes(pickle.dumps(Boom()))
    with MRLStore.open(tmp_path / "s") as reopened:
        assert len(reopened) == 1


def test_create_arguments_are_validated(tmp_path):
    for kwargs in (dict(full_dim=0, prefix_dim=1), dict(full_dim=8, prefix_dim=9), dict(full_dim=8, prefix_dim=4, dtype="int8"),
                   dict(full_dim=8, prefix_dim=4, funnel_dim=2), dict(full_dim=8, prefix_dim=4, shortlist=0)):
        with pytest.raises(InvalidInputError):
            MRLStore.create(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x" / "manifest.json").exists()
