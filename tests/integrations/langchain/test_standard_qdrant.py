"""LangChain's ``VectorStoreIntegrationTests`` (langchain-tests), unmodified, over the Qdrant backend.

``MRLVectorStore`` is given a ``[store]`` block with ``backend = "qdrant"``: no code change in the
integration. The collection lives in qdrant-client's local mode (brute force; no server here): once
in memory, once in a folder under tmp_path (the on-disk local mode, reopened by path).
"""

from __future__ import annotations

from typing import Iterator

import pytest
from langchain_core.vectorstores import VectorStore
from langchain_mrl import MRLVectorStore
from langchain_tests.integration_tests import VectorStoreIntegrationTests

from mrl_retrievers.config import StoreSettings

pytest.importorskip("qdrant_client")

pytestmark = pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning")


class TestMRLVectorStoreQdrantMemory(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self) -> Iterator[VectorStore]:  # type: ignore[override]
        store = MRLVectorStore(self.get_embeddings(), StoreSettings(backend="qdrant", collection="lc"))
        try:
            yield store
        finally:
            store.close()


class TestMRLVectorStoreQdrantPath(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path) -> Iterator[VectorStore]:  # type: ignore[override]
        settings = StoreSettings(backend="qdrant", path=str(tmp_path / "qdrant"), collection="lc")
        store = MRLVectorStore(self.get_embeddings(), settings)
        try:
            yield store
        finally:
            store.close()



def test_the_suite_really_runs_on_qdrant(tmp_path):
    from mrl_retrievers.store.qdrant import QdrantStore

    settings = StoreSettings(backend="qdrant", path=str(tmp_path / "qdrant"), collection="lc")
    store = MRLVectorStore(TestMRLVectorStoreQdrantPath().get_embeddings(), settings)
    store.add_texts(["foo", "bar"], ids=["1", "2"])
    assert isinstance(store.store, QdrantStore) and store.store.collection == "lc"
    store.close()


def test_reopen_with_known_embedding_finds_the_documents(tmp_path):
    from langchain_mrl import MRLEmbeddings

    settings = StoreSettings(backend="qdrant", path=str(tmp_path / "qdrant"), collection="lc")
    store = MRLVectorStore(MRLEmbeddings("fake", dim=16), settings)
    store.add_texts(["foo", "bar"], ids=["1", "2"])
    store.close()
    reopened = MRLVectorStore(MRLEmbeddings("fake", dim=16), settings)
    assert [d.id for d in reopened.similarity_search("foo", k=1)] == ["1"]
    reopened.close()


def test_reopen_with_unknown_embedding_finds_the_documents(tmp_path):
    """Regression: open_existing only opened local stores, so a Qdrant collection was invisible
    to an embedding of unknown width until the first add."""
    settings = StoreSettings(backend="qdrant", path=str(tmp_path / "qdrant"), collection="lc")
    store = MRLVectorStore(TestMRLVectorStoreQdrantPath().get_embeddings(), settings)
    store.add_texts(["foo", "bar"], ids=["1", "2"])
    store.close()
    reopened = MRLVectorStore(TestMRLVectorStoreQdrantPath().get_embeddings(), settings)
    try:
        assert [d.id for d in reopened.similarity_search("foo", k=1)] == ["1"]
    finally:
        reopened.close()


def test_an_open_qdrant_store_is_accepted_with_an_unknown_embedding(tmp_path):
    """Regression: an open QdrantStore with an embedding of unknown width raised TypeError."""
    from mrl_retrievers import open_store

    backend = open_store(StoreSettings(backend="qdrant", path=str(tmp_path / "q"), collection="lc"), full_dim=6)
    store = MRLVectorStore(TestMRLVectorStoreQdrantPath().get_embeddings(), backend)
    store.add_texts(["foo", "bar"], ids=["1", "2"])
    assert [d.id for d in store.similarity_search("foo", k=1)] == ["1"]
    store.close()
