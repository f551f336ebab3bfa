"""When the LlamaIndex classes create, open, share and serialize a store (issues 14, 17, 20).

* ``MRLVectorStore(path=...)`` works; constructing creates nothing; a failed first add leaves
  nothing behind.
* Pickling and ``to_dict``/``from_dict`` reopen the store by its path (vectors are never pickled);
  an ``MRLEmbedding`` pickles as the recipe of its provider (never a key).
* A store another process writes is opened read-only (with a warning), or on purpose with
  ``read_only=True``: the "many workers, one writer" recipe across processes.
* The packages export only public names, and name the extra when LlamaIndex is missing.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores.types import VectorStoreQuery
from llama_index.embeddings.mrl import MRLEmbedding
from llama_index.vector_stores.mrl import MRLVectorStore

import llama_index.vector_stores.mrl as vector_stores_mrl
from mrl_retrievers import get_provider
from mrl_retrievers.errors import ConfigError, InvalidVectorError, ReadOnlyStoreError
from tests.integrations.processes import ROOT, Worker

DIM = 8


def nodes(n: int = 3, start: int = 0) -> list[TextNode]:
    rng = np.random.default_rng(start)
    return [TextNode(id_=f"n{i}", text=f"text {i}", embedding=rng.standard_normal(DIM).tolist(), metadata={"i": i})
            for i in range(start, start + n)]  # fmt: skip


def ids(store: MRLVectorStore, k: int = 10) -> list[str]:
    return store.query(VectorStoreQuery(query_embedding=[1.0] * DIM, similarity_top_k=k)).ids


# --- creation ---------------------------------------------------------------------------------------


def test_path_by_keyword_works(tmp_path) -> None:
    # Regression (issue 14): TypeError: MRLStore.create() got multiple values for argument 'path'.
    vector_store = MRLVectorStore(path=str(tmp_path / "my-index"), dtype="float32")
    vector_store.add(nodes())
    assert vector_store.path == str(tmp_path / "my-index") and sorted(ids(vector_store)) == ["n0", "n1", "n2"]
    vector_store.close()
    with pytest.raises(ConfigError, match="give one of them"):
        MRLVectorStore(tmp_path / "a", path=tmp_path / "b")


def test_constructing_creates_nothing_and_a_failed_first_add_leaves_nothing(tmp_path) -> None:
    path = tmp_path / "store"
    vector_store = MRLVectorStore(path, prefix_dim=4)
    assert not path.exists() and vector_store.client is None and vector_store.path == str(path)
    bad = nodes(2)
    bad[1].embedding = [float("nan")] * DIM
    with pytest.raises(InvalidVectorError):
        vector_store.add(bad)
    assert not path.exists() and vector_store.client is None
    vector_store.add(nodes(2))
    assert len(vector_store.client) == 2
    vector_store.close()


# --- pickling and to_dict / from_dict -----------------------------------------------------------------


def test_pickle_reopens_by_path_and_answers_the_same(tmp_path) -> None:
    # Regression (issue 20): an unpickled MRLVectorStore answered 0 results for a store of 3.
    vector_store = MRLVectorStore(tmp_path / "p", dtype="float32", shortlist=50)
    vector_store.add(nodes())
    data = pickle.dumps(vector_store)
    assert b"text 0" not in data and len(data) < 2000  # the path and options, never the contents
    vector_store.close()
    copy = pickle.loads(data)
    assert (copy.path, copy.shortlist) == (vector_store.path, 50)
    assert sorted(ids(copy)) == ["n0", "n1", "n2"]
    copy.close()


def test_a_temporary_store_refuses_to_pickle() -> None:
    with pytest.raises(TypeError, match="give it a path"):
        pickle.dumps(MRLVectorStore(None))


def test_to_dict_from_dict_round_trip(tmp_path) -> None:
    # Regression (issue 20): from_dict raised TypeError (... 'stores_text').
    vector_store = MRLVectorStore(tmp_path / "d", dtype="float32")
    vector_store.add(nodes())
    data = vector_store.to_dict()
    vector_store.close()
    again = MRLVectorStore.from_dict(data)
    assert again.to_dict() == data and sorted(ids(again)) == ["n0", "n1", "n2"]
    again.close()


def test_embedding_pickles_as_its_recipe() -> None:
    # Regression (issue 20): an unpickled MRLEmbedding failed with "no attribute '_provider'".
    embed = MRLEmbedding("fake", dim=16, seed=3, embed_batch_size=7)
    copy = pickle.loads(pickle.dumps(embed))
    assert copy.spec == embed.spec and copy.embed_batch_size == 7
    assert copy.get_query_embedding("hello") == embed.get_query_embedding("hello")


def test_embedding_with_a_key_or_a_ready_provider_refuses_to_pickle() -> None:
    keyed = MRLEmbedding("openai", model="text-embedding-3-small", dim=256, api_key="sk-canary-pickle")
    with pytest.raises(TypeError, match="environment variable") as info:
        pickle.dumps(keyed)
    assert "sk-canary-pickle" not in str(info.value)
    with pytest.raises(TypeError, match="by name"):
        pickle.dumps(MRLEmbedding(get_provider("fake", dim=8)))


def test_embedding_deep_copies_sharing_its_provider() -> None:
    # Observed on main: copy.deepcopy(MRLEmbedding) and model_copy(deep=True) raised "cannot pickle
    # '_thread._local' object" (before that, the provider's lock). A copy shares the provider (its
    # clients, connection pools and rate-limit state: one API account) and has its own query cache.
    import copy  # noqa: PLC0415

    embed = MRLEmbedding("fake", dim=16, seed=3, embed_batch_size=7)
    listed = embed.get_query_embedding("hello")
    for clone in (copy.deepcopy(embed), embed.model_copy(deep=True)):
        assert clone is not embed and clone.provider is embed.provider and clone.embed_batch_size == 7
        assert clone.query_array(listed) is None  # the original's last query is not the copy's
        again = clone.get_query_embedding("hello")
        assert again == listed and clone.query_array(again) is not None
        assert embed.query_array(listed) is not None  # the copy did not touch the original's cache
    ready = MRLEmbedding(get_provider("fake", dim=8))  # a ready Provider (not picklable) copies too
    assert copy.deepcopy(ready).provider is ready.provider


# --- read-only beside another process's writer -----------------------------------------------------------


def _writer(path, n: int = 3) -> Worker:
    worker = Worker()
    worker.exec(
        "import numpy as np\nfrom llama_index.core.schema import TextNode\n"
        "from llama_index.vector_stores.mrl import MRLVectorStore\n"
        f"vs = MRLVectorStore({str(path)!r}, dtype='float32')\n"
        "def add(names):\n"
        "    rng = np.random.default_rng(len(names))\n"
        f"    vs.add([TextNode(id_=n, text=n, embedding=rng.standard_normal({DIM}).tolist()) for n in names])\n"
        f"add([f'w{{i}}' for i in range({n})])"
    )
    return worker


def test_a_store_another_process_writes_opens_read_only_with_a_warning(tmp_path, caplog) -> None:
    path = tmp_path / "shared"
    with _writer(path) as writer, caplog.at_level(logging.WARNING, logger="mrl_retrievers.store"):
        vector_store = MRLVectorStore(path)
        assert vector_store.read_only and "opened read-only" in caplog.text
        assert sorted(ids(vector_store)) == ["w0", "w1", "w2"]
        for write in (lambda: vector_store.add(nodes()), lambda: vector_store.delete("x"), vector_store.clear):
            with pytest.raises(ReadOnlyStoreError):
                write()
        assert writer.eval("len(vs.client)") == 3
        writer.exec("add(['w8'])")
        assert "w8" in ids(vector_store)  # the fallback follows the writer too
        vector_store.close()


def test_many_workers_one_writer_workers_first(tmp_path) -> None:
    path = tmp_path / "recipe"
    with Worker() as reader:
        reader.exec("from llama_index.core.vector_stores.types import VectorStoreQuery\n"
                    "from llama_index.vector_stores.mrl import MRLVectorStore\n"
                    f"vs = MRLVectorStore({str(path)!r}, read_only=True)\n"
                    f"q = VectorStoreQuery(query_embedding=[1.0] * {DIM}, similarity_top_k=10)")
        assert reader.eval("vs.query(q).ids") == []
        with _writer(path, n=4) as writer:
            assert sorted(reader.eval("vs.query(q).ids")) == ["w0", "w1", "w2", "w3"]
            assert writer.eval("len(vs.client)") == 4


def test_many_workers_see_the_writers_later_commits(tmp_path) -> None:
    path = tmp_path / "follow"
    with _writer(path, n=2) as writer:
        vector_store = MRLVectorStore(path, read_only=True)
        assert sorted(ids(vector_store)) == ["w0", "w1"]
        writer.exec("add(['w7']); vs.delete_nodes(['w0'])")
        assert sorted(ids(vector_store)) == ["w1", "w7"]
        vector_store.close()


def test_two_objects_on_one_path_in_one_process_close_independently(tmp_path) -> None:
    first = MRLVectorStore(tmp_path / "twice", dtype="float32")
    first.add(nodes(2))
    second = MRLVectorStore.from_dict(first.to_dict())
    second.close()
    assert sorted(ids(first)) == ["n0", "n1"]
    first.close()


# --- packaging -----------------------------------------------------------------------------------------


def test_only_public_names_are_exported() -> None:
    assert vector_stores_mrl.__all__ == ["MRLVectorStore"]
    assert not hasattr(vector_stores_mrl, "translate_filters") and not hasattr(vector_stores_mrl, "reference_matcher")


@pytest.mark.parametrize("package", ["llama_index.vector_stores.mrl", "llama_index.embeddings.mrl",
                                     "llama_index.retrievers.mrl"])
def test_import_without_llama_index_names_the_extra(package) -> None:
    code = ("import sys; sys.modules['llama_index.core'] = None\n"
            f"try:\n    import {package}\nexcept Exception as exc:\n"
            "    print(type(exc).__name__, isinstance(exc, ImportError), exc.__cause__ is None, exc)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *(str(p) for p in sorted((ROOT / "integrations").iterdir()) if p.is_dir())])}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("MissingDependencyError True True"), run.stdout
    # Each integration is its own distribution now: the message names it (it brings llama-index-core).
    distribution = "llama-index-" + package.split(".")[1].replace("_", "-") + "-mrl"
    assert f"'llama-index-core' is not installed (needed by {package})" in run.stdout
    assert run.stdout.rstrip().endswith(f"Install it with: pip install {distribution}"), run.stdout
    assert "mrl-retrievers[" not in run.stdout
