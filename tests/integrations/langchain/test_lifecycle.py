"""When ``MRLVectorStore`` creates, opens and shares a store (issues 14, 17, 20).

* Constructing creates nothing; the first write creates the store with its vectors in hand, and a
  failed first write leaves nothing behind.
* A store another process writes is opened read-only (with a warning), or on purpose with
  ``read_only=True``: the README's "many workers, one writer" recipe, run across processes.
* ``import langchain_mrl`` without LangChain names the extra to install.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from langchain_mrl import MRLEmbeddings, MRLVectorStore
from mrl_retrievers import MRLStore
from mrl_retrievers.errors import InvalidInputError, MissingDependencyError, ProviderError, ReadOnlyStoreError
from tests.integrations.processes import ROOT, Worker

def emb() -> MRLEmbeddings:
    return MRLEmbeddings("fake", dim=16)


# --- nothing is created before the first vectors ---------------------------------------------------


def test_constructing_and_searching_create_nothing(tmp_path) -> None:
    path = tmp_path / "never"
    vs = MRLVectorStore(emb(), path)  # the width is known, but nothing is written yet
    assert vs.similarity_search("anything") == [] and vs.get_by_filter({"a": 1}) == [] and vs.delete(["x"])
    assert not path.exists() and vs.store is None


@pytest.mark.parametrize("existed", [False, True])
def test_a_failed_first_add_leaves_nothing_behind(tmp_path, existed) -> None:
    # Regression (issue 14): a failed first call left a store directory pinned to the width.
    path = tmp_path / "store"
    if existed:
        path.mkdir()
    vs = MRLVectorStore(emb(), path)
    with pytest.raises(InvalidInputError):
        vs.add_texts(["a", "b"], metadatas=[{"ok": 1}, {"bad": b"bytes"}])  # refused by the store itself
    assert (sorted(path.iterdir()) == []) if existed else not path.exists()
    assert vs.store is None
    assert vs.add_texts(["a"], ids=["1"]) == ["1"] and len(vs.store) == 1  # the next call creates it


def test_a_provider_failure_on_the_first_add_leaves_nothing_behind(tmp_path) -> None:
    def fail(texts, kind, call):
        raise ProviderError("fake outage", provider="fake", model="m", status=503)

    path = tmp_path / "store"
    vs = MRLVectorStore(MRLEmbeddings("fake", dim=16, fail=fail), path)
    with pytest.raises(ProviderError):
        vs.add_texts(["a"])
    assert not path.exists()


def test_from_texts_that_fail_leave_nothing_behind(tmp_path) -> None:
    path = tmp_path / "store"
    with pytest.raises(InvalidInputError):
        MRLVectorStore.from_texts(["a"], emb(), metadatas=[{"n": float("nan")}], store=path)
    assert not path.exists()


# --- read-only handles and the writer of another process ---------------------------------------------


def test_read_only_never_creates_and_refuses_writes_before_embedding(tmp_path) -> None:
    embeddings = emb()
    vs = MRLVectorStore(embeddings, tmp_path / "ro", read_only=True)
    assert vs.similarity_search("x") == []
    with pytest.raises(ReadOnlyStoreError, match="read-only"):
        vs.add_texts(["a"])
    assert embeddings.client.texts_embedded == 0 and not (tmp_path / "ro").exists()


def _writer(path, n: int = 3) -> Worker:
    worker = Worker()
    worker.exec(
        "from langchain_mrl import MRLEmbeddings, MRLVectorStore\n"
        f"vs = MRLVectorStore(MRLEmbeddings('fake', dim=16), {str(path)!r})\n"
        f"vs.add_texts([f'text {{i}}' for i in range({n})], ids=[f'w{{i}}' for i in range({n})])"
    )
    return worker


def test_a_store_another_process_writes_opens_read_only_with_a_warning(tmp_path, caplog) -> None:
    # Regression (issue 20): a second web worker got StoreLockedError.
    path = tmp_path / "shared"
    with _writer(path) as writer, caplog.at_level(logging.WARNING, logger="mrl_retrievers.store"):
        vs = MRLVectorStore(emb(), path)
        assert vs.store.read_only
        assert "opened read-only" in caplog.text and str(path) in caplog.text
        assert sorted(d.id for d in vs.similarity_search("text", k=10)) == ["w0", "w1", "w2"]
        with pytest.raises(ReadOnlyStoreError, match="another process"):
            vs.add_texts(["mine"])
        assert writer.eval("len(vs.store)") == 3  # the writer is untouched and still writes
        writer.exec("vs.add_texts(['more'], ids=['w3'])")
        assert "w3" in {d.id for d in vs.similarity_search("more", k=10)}  # the fallback follows the writer too
        vs.close()


def test_many_workers_one_writer_workers_first(tmp_path) -> None:
    """README recipe: workers open read-only (even before the store exists); one process writes."""
    path = tmp_path / "recipe"
    workers = [Worker(), Worker()]
    try:
        for w in workers:
            w.exec("from langchain_mrl import MRLEmbeddings, MRLVectorStore\n"
                   f"vs = MRLVectorStore(MRLEmbeddings('fake', dim=16), {str(path)!r}, read_only=True)")
            assert w.eval("vs.similarity_search('text', k=5)") == []
        with _writer(path, n=4) as writer:  # the workers hold no lock: the writer starts after them
            for w in workers:
                assert w.eval("sorted(d.id for d in vs.similarity_search('text', k=10))") == ["w0", "w1", "w2", "w3"]
                with pytest.raises(Exception, match="read-only"):
                    w.exec("vs.add_texts(['x'])")
            assert writer.eval("len(vs.store)") == 4
    finally:
        for w in workers:
            w.close()


def test_many_workers_see_the_writers_later_commits(tmp_path) -> None:
    path = tmp_path / "follow"
    with _writer(path, n=2) as writer, Worker() as worker:
        worker.exec("from langchain_mrl import MRLEmbeddings, MRLVectorStore\n"
                    f"vs = MRLVectorStore(MRLEmbeddings('fake', dim=16), {str(path)!r}, read_only=True)")
        assert worker.eval("len(vs.similarity_search('text', k=10))") == 2
        writer.exec("vs.add_texts(['later'], ids=['w9']); vs.delete(['w0'])")
        assert worker.eval("sorted(d.id for d in vs.similarity_search('text', k=10))") == ["w1", "w9"]


def test_two_framework_objects_on_one_path_in_one_process_close_independently(tmp_path) -> None:
    # Issue 20 item 3: closing one closed the other (StoreClosedError); a third reopen broke the first.
    path = tmp_path / "twice"
    first = MRLVectorStore(emb(), path)
    first.add_texts(["a", "b"], ids=["1", "2"])
    second = MRLVectorStore(emb(), path)
    second.close()
    assert len(first.similarity_search("a", k=5)) == 2
    third = MRLVectorStore(emb(), path)
    third.add_texts(["c"], ids=["3"])
    third.close()
    assert sorted(d.id for d in first.similarity_search("a", k=5)) == ["1", "2", "3"]
    first.close()


def test_import_without_langchain_names_the_extra() -> None:
    code = ("import sys; sys.modules['langchain_core'] = None\n"
            "try:\n    import langchain_mrl\nexcept Exception as exc:\n"
            "    print(type(exc).__name__, isinstance(exc, ImportError), exc.__cause__ is None, exc)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *(str(p) for p in sorted((ROOT / "integrations").iterdir()) if p.is_dir())])}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"{MissingDependencyError.__name__} True True")
    # The integration is its own distribution now: the message names it (it brings langchain-core),
    # not the core's extra, which installs langchain-core without langchain_mrl.
    assert "'langchain-core' is not installed (needed by langchain_mrl)" in run.stdout
    assert run.stdout.rstrip().endswith("Install it with: pip install langchain-mrl"), run.stdout
    assert "mrl-retrievers[" not in run.stdout


def test_an_open_store_handed_over_is_used_as_is(tmp_path) -> None:
    store = MRLStore.create(tmp_path / "given", full_dim=16, prefix_dim=8)
    vs = MRLVectorStore(emb(), store)
    vs.add_texts(["a"], ids=["1"])
    assert vs.store is store and len(store) == 1
    store.close()
