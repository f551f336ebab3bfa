"""``LazyStore``, the one "open once the width is known" helper both integrations use (issues 14, 17)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from mrl_retrievers import EmbeddingSpec, MRLStore
from mrl_retrievers.config import StoreSettings
from mrl_retrievers.errors import (
    ConfigError,
    InvalidMetadataError,
    ReadOnlyStoreError,
    SpecMismatchError,
    StoreExistsError,
)
from mrl_retrievers.store import LazyStore

SPEC = EmbeddingSpec(provider="fake", model="m", dim=4)


def add(ids, metadatas=None):
    return lambda store: store.add(ids, np.eye(4)[: len(ids)], metadatas=metadatas)


def test_nothing_exists_until_the_first_write(tmp_path) -> None:
    lazy = LazyStore(tmp_path / "s", prefix_dim=2)
    assert lazy.existing() is None and lazy.checked(4, SPEC) is None and not (tmp_path / "s").exists()
    assert lazy.write(4, SPEC, add(["a"])) == ["a"]
    assert lazy.store.prefix_dim == 2 and lazy.store.spec == SPEC and lazy.path == tmp_path / "s"
    lazy.close()
    again = LazyStore(str(tmp_path / "s"))
    assert len(again.existing()) == 1
    with pytest.raises(SpecMismatchError):
        again.checked(4, EmbeddingSpec(provider="fake", model="other", dim=4))
    again.close()


@pytest.mark.parametrize("existed", [False, True])
def test_a_failed_creating_write_removes_the_new_store(tmp_path, existed) -> None:
    path = tmp_path / "s"
    if existed:
        path.mkdir()
    lazy = LazyStore(path)
    with pytest.raises(InvalidMetadataError):
        lazy.write(4, None, add(["a"], metadatas=[{"x": {1, 2}}]))
    assert (list(path.iterdir()) == []) if existed else not path.exists()
    assert lazy.store is None
    lazy.write(4, None, add(["a"]))
    assert len(lazy.store) == 1
    lazy.close()


def test_a_failed_write_to_an_existing_store_deletes_nothing(tmp_path) -> None:
    lazy = LazyStore(tmp_path / "s")
    lazy.write(4, None, add(["a"]))
    with pytest.raises(InvalidMetadataError):
        lazy.write(4, None, add(["b"], metadatas=[{"x": b"bytes"}]))
    assert lazy.store.ids() == ["a"] and (tmp_path / "s" / "manifest.json").exists()
    lazy.close()


def test_a_directory_that_is_not_ours_is_refused_and_left_alone(tmp_path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "notes.txt").write_text("mine")
    lazy = LazyStore(tmp_path / "s")
    with pytest.raises(StoreExistsError):
        lazy.write(4, None, add(["a"]))
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["notes.txt"]


def test_concurrent_first_writes_create_one_store(tmp_path) -> None:
    lazy = LazyStore(tmp_path / "s")
    errors = []

    def writer(i: int) -> None:
        try:
            lazy.write(4, None, add([f"id{i}"]))
        except Exception as exc:  # noqa: BLE001 - collected and asserted empty
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sorted(lazy.store.ids()) == [f"id{i}" for i in range(8)]
    lazy.close()


def test_read_only_never_creates_and_refuses_writes(tmp_path) -> None:
    lazy = LazyStore(tmp_path / "s", read_only=True)
    assert lazy.existing() is None
    with pytest.raises(ReadOnlyStoreError, match="read-only"):
        lazy.write(4, None, add(["a"]))
    assert not (tmp_path / "s").exists()
    store = MRLStore.create(tmp_path / "s", full_dim=4, prefix_dim=2)
    store.add(["a"], np.eye(4)[:1])
    store.close()
    found = lazy.existing()  # created meanwhile (by another process, say): found on the next call
    assert found.read_only and found.ids() == ["a"]
    lazy.close()


def test_sources_it_accepts_and_refuses(tmp_path) -> None:
    temporary = LazyStore(None)
    assert temporary.existing() is None and temporary.path is None
    temporary.write(4, None, add(["a"]))
    where = temporary.store.path
    temporary.close()
    assert not where.exists()  # a temporary store goes away on close
    assert LazyStore(StoreSettings(path=str(tmp_path / "cfg"))).path == tmp_path / "cfg"
    with pytest.raises(ConfigError, match="read_only"):
        LazyStore(None, read_only=True)
    with pytest.raises(ConfigError, match="a store must be"):
        LazyStore(42)
    store = MRLStore.create(tmp_path / "open", full_dim=4, prefix_dim=2)
    with pytest.raises(ConfigError, match="apply when a store is created"):
        LazyStore(store, prefix_dim=2)
    assert LazyStore(store).existing() is store
    store.close()
