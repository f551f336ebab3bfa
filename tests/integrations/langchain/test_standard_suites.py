"""LangChain's standard conformance suites (``langchain-tests``), run unmodified.

* ``VectorStoreIntegrationTests`` on the exact path (small stores are scanned exactly) and on the
  forced coarse path (``exact_below=0``: hnswlib shortlist + rerank even for two documents), with
  the suite's own 6-dimensional ``DeterministicFakeEmbedding`` (an ``Embeddings`` we do not know:
  width learnt from the first vector, prefix width clamped to it).
* ``RetrieversIntegrationTests`` for ``MRLRetriever``.
* ``EmbeddingsUnitTests`` / ``EmbeddingsIntegrationTests`` for ``MRLEmbeddings`` on the fake provider
  and on the real OpenAI SDK pointed at the loopback OpenAI emulator.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import (
    EmbeddingsIntegrationTests,
    RetrieversIntegrationTests,
    VectorStoreIntegrationTests,
)
from langchain_tests.unit_tests import EmbeddingsUnitTests

from langchain_mrl import MRLEmbeddings, MRLRetriever, MRLVectorStore
from mrl_retrievers.emulators import OpenAIServer

KEY = "test-key-0123456789"
OPENAI_PARAMS = {"provider": "openai", "model": "text-embedding-3-large", "dim": 256, "api_key": KEY, "max_retries": 0}


class TestMRLVectorStoreExact(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path) -> Iterator[VectorStore]:  # type: ignore[override]
        store = MRLVectorStore(self.get_embeddings(), tmp_path / "store")
        try:
            yield store
        finally:
            store.close()


class TestMRLVectorStoreHNSW(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path) -> Iterator[VectorStore]:  # type: ignore[override]
        store = MRLVectorStore(self.get_embeddings(), tmp_path / "store", exact_below=0)
        try:
            yield store
        finally:
            store.close()


class TestMRLRetriever(RetrieversIntegrationTests):
    _store: MRLVectorStore | None = None

    @classmethod
    def teardown_class(cls) -> None:
        if cls._store is not None:
            cls._store.close()

    @property
    def retriever_constructor(self) -> type[MRLRetriever]:
        return MRLRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        cls = type(self)
        if cls._store is None:
            cls._store = MRLVectorStore.from_texts(
                [f"document number {i} about topic {i % 3}" for i in range(10)], MRLEmbeddings("fake", dim=16)
            )
        return {"vectorstore": cls._store}

    @property
    def retriever_query_example(self) -> str:
        return "a document about topic 1"


class TestMRLEmbeddingsFakeUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[MRLEmbeddings]:
        return MRLEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"provider": "fake", "dim": 64}


class TestMRLEmbeddingsFakeIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[MRLEmbeddings]:
        return MRLEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"provider": "fake", "dim": 64}


class TestMRLEmbeddingsOpenAIUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[MRLEmbeddings]:
        return MRLEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {**OPENAI_PARAMS, "base_url": "http://127.0.0.1:9/v1"}  # built only, never called

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        params = {k: v for k, v in OPENAI_PARAMS.items() if k != "api_key"}  # the key comes from the env
        return {"OPENAI_API_KEY": KEY}, params, {"provider": "openai", "model": "text-embedding-3-large", "dim": 256}


class TestMRLEmbeddingsOpenAIIntegration(EmbeddingsIntegrationTests):
    """The real OpenAI SDK against the loopback emulator of the OpenAI API (127.0.0.1 only)."""

    base_url = ""

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _openai_server(cls) -> Iterator[OpenAIServer]:
        with OpenAIServer(api_key=KEY) as server:
            cls.base_url = server.base_url
            yield server
            assert server.requests, "the suite never reached the loopback server"

    @property
    def embeddings_class(self) -> type[MRLEmbeddings]:
        return MRLEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {**OPENAI_PARAMS, "base_url": type(self).base_url}
