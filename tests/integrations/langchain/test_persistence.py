"""Persistence across reopen: the same path gives the same documents, in this process and in a fresh
one, with nothing pickled (no ``allow_dangerous_deserialization`` anywhere)."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_mrl import MRLEmbeddings, MRLVectorStore
from mrl_retrievers import MRLStore, load_config
from mrl_retrievers.config import StoreSettings

ROOT = Path(__file__).resolve().parents[3]
TEXTS = ["red apple pie", "green apple tart", "blue whale song", "deep blue ocean"]
META = [{"n": i, "kind": "fruit" if i < 2 else "sea"} for i in range(4)]
IDS = ["a", "b", "c", "d"]


def _snapshot(vs: MRLVectorStore) -> list:
    return [
        [(d.id, d.page_content, d.metadata, round(s, 5)) for d, s in vs.similarity_search_with_score(q, k=4, filter=f)]
        for q in ("apple", "ocean") for f in (None, {"kind": "sea"})
    ]


def test_reopen_after_close_gives_the_same_store(tmp_path) -> None:
    path = tmp_path / "store"
    vs = MRLVectorStore(MRLEmbeddings("fake", dim=16), path, prefix_dim=8)
    vs.add_texts(TEXTS, META, ids=IDS)
    before = _snapshot(vs)
    vs.close()
    again = MRLVectorStore(MRLEmbeddings("fake", dim=16), path)
    assert again.store is not vs.store and again.store.prefix_dim == 8
    assert _snapshot(again) == before
    again.delete(["a"])
    again.close()
    third = MRLVectorStore(MRLEmbeddings("fake", dim=16), str(path))
    assert [d.id for d in third.get_by_ids(IDS)] == ["b", "c", "d"]
    third.close()


def test_reopen_without_close_shares_the_handle(tmp_path) -> None:
    path = tmp_path / "store"
    first = MRLVectorStore(MRLEmbeddings("fake", dim=16), path)
    first.add_texts(TEXTS, META, ids=IDS)
    second = MRLVectorStore(MRLEmbeddings("fake", dim=16), path)
    assert second.store._shared is first.store._shared  # one open store per process, one handle each
    assert _snapshot(second) == _snapshot(first)
    first.close()


def test_reopen_with_an_unknown_embedding_reads_the_width_from_the_store(tmp_path) -> None:
    path = tmp_path / "store"
    vs = MRLVectorStore(DeterministicFakeEmbedding(size=6), path)
    vs.add_texts(TEXTS, META, ids=IDS)
    before = _snapshot(vs)
    vs.close()
    again = MRLVectorStore(DeterministicFakeEmbedding(size=6), path)
    assert again.store is not None and again.store.full_dim == 6  # opened before any vector is seen
    assert _snapshot(again) == before
    again.close()


@pytest.mark.parametrize("how", ["settings", "config"])
def test_store_from_settings(tmp_path, how: str) -> None:
    path = str(tmp_path / "configured")
    source = StoreSettings(path=path, prefix_dim=4) if how == "settings" else load_config(
        {"store": {"path": path, "prefix_dim": 4, "dtype": "float32"}})
    vs = MRLVectorStore(MRLEmbeddings("fake", dim=16), source)
    vs.add_texts(TEXTS, ids=IDS)
    assert vs.store.path == Path(path) and vs.store.prefix_dim == 4
    vs.close()
    assert len(MRLVectorStore(MRLEmbeddings("fake", dim=16), source).get_by_ids(IDS)) == 4


def test_an_open_mrlstore_can_be_passed(tmp_path) -> None:
    store = MRLStore.create(tmp_path / "s", full_dim=16, prefix_dim=8)
    vs = MRLVectorStore(MRLEmbeddings("fake", dim=16), store)
    vs.add_texts(TEXTS, ids=IDS)
    assert vs.store is store and len(store) == 4 and store.spec.provider == "fake"
    store.close()


_CHILD = """
import json, sys
from langchain_mrl import MRLEmbeddings, MRLVectorStore
vs = MRLVectorStore(MRLEmbeddings("fake", dim=16), sys.argv[1])
out = [[d.id, d.page_content, d.metadata, round(s, 5)] for d, s in vs.similarity_search_with_score("apple", k=4)]
print(json.dumps(out))
"""


def test_a_fresh_process_reads_what_was_written(tmp_path) -> None:
    path = tmp_path / "store"
    vs = MRLVectorStore(MRLEmbeddings("fake", dim=16), path)
    vs.add_texts(TEXTS, META, ids=IDS)
    expected = [[d.id, d.page_content, d.metadata, round(s, 5)] for d, s in vs.similarity_search_with_score("apple", k=4)]
    vs.close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *(str(p) for p in sorted((ROOT / "integrations").iterdir()) if p.is_dir())])}
    run = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == expected


def test_nothing_is_pickled(tmp_path) -> None:
    path = tmp_path / "store"
    vs = MRLVectorStore(MRLEmbeddings("fake", dim=16), path)
    vs.add_texts(TEXTS, META, ids=IDS)
    vs.close()
    for file in path.rglob("*"):
        if file.is_file():
            head = file.read_bytes()[:2]
            assert not (head[:1] == b"\x80" and head[1:2] in {bytes([p]) for p in range(2, 6)}), f"{file} looks pickled"
    assert "allow_dangerous_deserialization" not in inspect.signature(MRLVectorStore).parameters
