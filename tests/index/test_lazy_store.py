"""Opening and creating are explicit: MRLIndex creates a store only with the first vectors in hand,
read-only opens never create, and a store remembers how to embed its queries (rotation included).

Regressions (issue 14, trap 1 and 4): ``MRLIndex(provider, path)`` created the store in its
constructor, so every failed first call left a directory pinned to the provider's width; the demo's
store could not be queried without a hand-written config naming its rotation file.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import mrl_retrievers.providers.local as local_module
from mrl_retrievers import MRLIndex, MRLStore, get_provider
from mrl_retrievers.errors import (
    ConfigError,
    ProviderError,
    SpecMismatchError,
    StoreIOError,
    StoreNotFoundError,
)
from mrl_retrievers.index import ROTATION_FILE
from mrl_retrievers.providers import from_spec
from mrl_retrievers.providers.local import LocalProvider
from tests.providers.test_local import PASSAGES, StubEncoder


def failing_provider():
    provider = get_provider("fake", dim=32)

    def fail(texts, kind, call_number):
        raise ProviderError("provider down", provider="fake", model=provider.model)

    provider.fail = fail
    return provider


def test_constructor_creates_nothing_and_a_failed_first_add_leaves_nothing(tmp_path):
    path = tmp_path / "store"
    with MRLIndex(failing_provider(), path) as index:
        assert not path.exists() and not index.created
        assert len(index) == 0 and index.query("anything") == [] and index.get(["x"]) == []
        with pytest.raises(ProviderError, match="provider down"):
            index.add_texts(["first text"])
        assert not path.exists()
    with MRLIndex.from_config({"embedder": {"provider": "fake", "dim": 32}, "store": {"path": str(path)}}) as index:
        assert not path.exists()
        index.add_texts(["first text"], ids=["a"])
        assert (path / "manifest.json").is_file() and len(index) == 1
    with MRLIndex(get_provider("fake", dim=32), path) as again:
        assert again.created and again.get(["a"])[0].text == "first text"


def test_a_failed_first_write_removes_the_store_it_created(tmp_path, monkeypatch):
    path = tmp_path / "store"

    def refuse(self, *args, **kwargs):
        raise StoreIOError("disk full (test)")

    monkeypatch.setattr(MRLStore, "add", refuse)
    with MRLIndex(get_provider("fake", dim=32), path) as index:
        with pytest.raises(StoreIOError):
            index.add_texts(["first text"])
        assert not path.exists() and not index.created


def test_a_failed_add_keeps_a_store_that_holds_data(tmp_path):
    provider = get_provider("fake", dim=32, batch_size=10)
    provider.fail = lambda texts, kind, n: (_ for _ in ()).throw(RuntimeError("down")) if n == 2 else None
    with MRLIndex(provider, tmp_path / "s") as index:
        with pytest.raises(Exception, match="down"):
            index.add_texts([f"t{i}" for i in range(30)], step=10)
        assert len(index) == 10 and (tmp_path / "s" / "manifest.json").exists()


def test_read_only_never_creates(tmp_path):
    path = tmp_path / "nothing"
    with pytest.raises(StoreNotFoundError):
        MRLIndex(get_provider("fake", dim=8), path, read_only=True)
    with pytest.raises(StoreNotFoundError):
        MRLIndex.from_config({"embedder": {"provider": "fake", "dim": 8}, "store": {"path": str(path)}}, read_only=True)
    with pytest.raises(StoreNotFoundError):
        MRLIndex.open(path)
    assert not path.exists()


def test_read_only_index_works_beside_a_writer_in_another_process(tmp_path):
    path = tmp_path / "s"
    reader = (
        "import sys\n"
        "from mrl_retrievers import MRLIndex\n"
        "with MRLIndex.open(sys.argv[1], read_only=True) as index:\n"
        "    assert index.store.read_only\n"
        "    print(index.query('cats purr', k=1)[0].id)\n"
    )
    with MRLIndex(get_provider("fake", dim=32), path) as writer:
        writer.add_texts(["cats purr", "dogs bark"], ids=["c", "d"])
        out = subprocess.run([sys.executable, "-c", reader, str(path)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and out.stdout.strip() == "c", out.stderr
        writer.add_texts(["fish swim"], ids=["f"])  # the writer is undisturbed


def test_a_foreign_folder_is_refused_at_once(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("mine")
    with pytest.raises(StoreNotFoundError, match="not an mrl-retrievers store"):
        MRLIndex(get_provider("fake", dim=8), tmp_path / "folder")


def test_prefix_dim_wider_than_the_vectors_is_an_error_not_a_clamp(tmp_path):
    with pytest.raises(ConfigError, match="prefix_dim = 64 is wider than"):
        MRLIndex.from_config({"embedder": {"provider": "fake", "dim": 32}, "store": {"path": str(tmp_path / "a"), "prefix_dim": 64}})
    with MRLIndex(get_provider("fake", dim=32), tmp_path / "b", prefix_dim=64) as index:
        with pytest.raises(Exception, match="prefix_dim"):
            index.add_texts(["x"])
        assert not (tmp_path / "b").exists()
    with MRLIndex(get_provider("fake", dim=16), tmp_path / "c") as index:  # unset: the full width of narrow vectors
        index.add_texts(["x"])
        assert index.store.prefix_dim == 16


# --- the store remembers how its queries are embedded -------------------------------------------


@pytest.fixture
def stub_model(monkeypatch):
    """``LocalProvider(model="stub-model")`` loads a stub encoder instead of a real model."""
    monkeypatch.setattr(local_module, "_load", lambda backend, location, device, kwargs: StubEncoder(48))


def test_a_store_written_with_a_rotation_is_queried_with_no_config(tmp_path, stub_model):
    provider = LocalProvider(model="stub-model")
    provider.fit_rotation(PASSAGES, tmp_path / "elsewhere.npy")
    path = tmp_path / "store"
    with MRLIndex(provider, path, prefix_dim=8) as index:
        index.add_texts(PASSAGES, ids=[str(i) for i in range(len(PASSAGES))])
        expected = [(h.id, round(h.score, 5)) for h in index.query(PASSAGES[3], k=3)]
    assert (path / ROTATION_FILE).is_file()
    (tmp_path / "elsewhere.npy").unlink()  # the store's own copy is what counts
    for opener in (lambda: MRLIndex.open(path, read_only=True),
                   lambda: MRLIndex.from_config({"store": {"path": str(path)}}, read_only=True),
                   lambda: MRLIndex.from_config({"embedder": {"provider": "local"}, "store": {"path": str(path)}})):
        with opener() as index:
            assert index.embedder.spec == index.store.spec
            assert [(h.id, round(h.score, 5)) for h in index.query(PASSAGES[3], k=3)] == expected


def test_a_config_naming_other_vectors_is_still_refused(tmp_path, stub_model):
    path = tmp_path / "store"
    with MRLIndex(get_provider("fake", dim=32), path) as index:
        index.add_texts(["x"])
    with pytest.raises(ConfigError, match="holds 32-wide vectors; these are 48-wide"):
        MRLIndex.from_config({"embedder": {"provider": "local", "model": "stub-model"}, "store": {"path": str(path)}})
    with pytest.raises(SpecMismatchError, match="'fake' != 'local'"):
        MRLIndex.from_config({"embedder": {"provider": "local", "model": "stub-model", "dim": 32},
                              "store": {"path": str(path)}})
    with pytest.raises(SpecMismatchError):
        MRLIndex.from_config({"embedder": {"provider": "fake", "dim": 32, "model": "other"}, "store": {"path": str(path)}})


def test_a_missing_rotation_file_is_named(tmp_path, stub_model):
    provider = LocalProvider(model="stub-model")
    provider.fit_rotation(PASSAGES)
    with MRLIndex(provider, tmp_path / "s", prefix_dim=8) as index:
        index.add_texts(PASSAGES[:4])
    (tmp_path / "s" / ROTATION_FILE).unlink()
    with pytest.raises(ConfigError, match="rotation"):
        MRLIndex.open(tmp_path / "s")
    with MRLIndex(provider, tmp_path / "s") as index:  # a writer holding the rotation puts it back
        assert (tmp_path / "s" / ROTATION_FILE).is_file()
    with MRLIndex.open(tmp_path / "s") as index:
        assert np.allclose(index.embed_query("cats"), provider.embed_query("cats"), atol=1e-6)


def test_from_spec_rebuilds_fake_options_and_refuses_framework_specs():
    provider = get_provider("fake", dim=24, seed=3, decay=0.5)
    again = from_spec(provider.spec)
    assert again.spec == provider.spec
    assert np.allclose(again.embed_query("x"), provider.embed_query("x"))
    from mrl_retrievers import EmbeddingSpec

    with pytest.raises(ConfigError, match="cannot be re-made"):
        from_spec(EmbeddingSpec(provider="langchain:OpenAIEmbeddings", model="x", dim=8))
