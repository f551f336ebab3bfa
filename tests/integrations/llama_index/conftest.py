"""Fixtures for the LlamaIndex integration tests: the fake provider, stores under tmp_path."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_index.core")

from llama_index.embeddings.mrl import MRLEmbedding
from llama_index.vector_stores.mrl import MRLVectorStore

EMBED_DIM = 32


@pytest.fixture
def embed() -> MRLEmbedding:
    return MRLEmbedding("fake", dim=EMBED_DIM)


@pytest.fixture
def make_vector_store(tmp_path):
    """Factory for MRLVectorStores under tmp_path (float32 vectors); closes them at the end."""
    opened: list[MRLVectorStore] = []

    def make(name: str = "store", **kwargs) -> MRLVectorStore:
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("prefix_dim", 8)
        vector_store = MRLVectorStore(tmp_path / name, **kwargs)
        opened.append(vector_store)
        return vector_store

    yield make
    for vector_store in opened:
        vector_store.close()
