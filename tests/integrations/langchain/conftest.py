"""Fixtures for the LangChain integration tests: the fake provider (offline, deterministic, counts its
calls), stores under tmp_path, and a LangChain ``Embeddings`` the package does not know."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings

from langchain_mrl import MRLEmbeddings, MRLVectorStore

DIM = 32


class TableEmbeddings(Embeddings):
    """An "unknown" LangChain embedding: maps known texts to precomputed vectors (not normalized, to
    check that the store renormalizes), and counts calls. Unknown texts raise."""

    def __init__(self, table: dict[str, np.ndarray], scale: float = 3.0) -> None:
        self.table = table
        self.scale = scale
        self.document_calls = 0
        self.query_calls = 0
        self.texts_embedded = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.document_calls += 1
        self.texts_embedded += len(texts)
        return [(self.table[t] * self.scale).tolist() for t in texts]

    def embed_query(self, text: str) -> list[float]:
        self.query_calls += 1
        return (self.table[text] * self.scale).tolist()


@pytest.fixture
def fake_embeddings() -> MRLEmbeddings:
    return MRLEmbeddings("fake", dim=DIM)


@pytest.fixture
def vectorstore(fake_embeddings: MRLEmbeddings) -> Iterator[MRLVectorStore]:
    """An empty temporary store on the fake provider (exact path: it is small)."""
    vs = MRLVectorStore(fake_embeddings)
    yield vs
    vs.close()


@pytest.fixture(params=["exact", "hnsw"])
def any_path_store(request: pytest.FixtureRequest, fake_embeddings: MRLEmbeddings) -> Iterator[MRLVectorStore]:
    """An empty store on the exact path and on the forced coarse (HNSW) path."""
    kwargs = {"exact_below": 0} if request.param == "hnsw" else {}
    vs = MRLVectorStore(fake_embeddings, **kwargs)
    yield vs
    vs.close()
