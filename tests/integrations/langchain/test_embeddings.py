"""MRLEmbeddings: Python floats, the provider's vectors, real async, config, and a loopback provider
(the real OpenAI SDK against the OpenAI emulator) end to end through the vector store."""

from __future__ import annotations

import asyncio
from typing import Iterator

import numpy as np
import pytest

from langchain_mrl import MRLEmbeddings, MRLVectorStore
from mrl_retrievers import get_provider
from mrl_retrievers.errors import ConfigError
from mrl_retrievers.emulators import OpenAIServer

KEY = "test-key-0123456789"


def test_returns_python_floats_equal_to_the_provider_vectors() -> None:
    emb = MRLEmbeddings("fake", dim=24)
    provider = get_provider("fake", dim=24)
    docs = emb.embed_documents(["a cat", "a dog"])
    assert all(type(x) is float for row in docs for x in row)
    np.testing.assert_array_equal(np.asarray(docs, np.float32), provider.embed_documents(["a cat", "a dog"]))
    query = emb.embed_query("a cat")
    assert type(query) is list and len(query) == 24
    np.testing.assert_array_equal(np.asarray(query, np.float32), provider.embed_query("a cat"))
    assert emb.embed_documents([]) == []


async def test_async_is_real_and_identical() -> None:
    emb = MRLEmbeddings("fake", dim=24, delay=0.05)
    texts = [f"text {i}" for i in range(3)]
    # three awaited calls overlap: a thread-wrapped sync path on one worker would not
    started = asyncio.get_running_loop().time()
    results = await asyncio.gather(*(emb.aembed_documents([t]) for t in texts))
    assert asyncio.get_running_loop().time() - started < 0.12
    assert [r[0] for r in results] == emb.embed_documents(texts)
    assert await emb.aembed_query("q") == emb.embed_query("q")
    assert await emb.aembed_documents([]) == []


def test_spec_dim_model_provider_and_repr() -> None:
    emb = MRLEmbeddings("fake", model="fake-x", dim=8)
    assert (emb.provider, emb.model, emb.dim) == ("fake", "fake-x", 8)
    assert emb.spec == get_provider("fake", model="fake-x", dim=8).spec
    assert "fake-x" in repr(emb)


def test_deep_copies_share_the_provider() -> None:
    # Observed on main: copy.deepcopy(MRLEmbeddings) raised "cannot pickle '_thread.lock' object"
    # (the provider's lock). A provider stands for one API account (clients, pools, rate-limit
    # state): deep copies of what holds it share it, as a copied config shares a connection.
    import copy  # noqa: PLC0415

    emb = MRLEmbeddings("fake", dim=8)
    clone = copy.deepcopy(emb)
    assert clone is not emb and clone.client is emb.client
    assert clone.embed_query("a cat") == emb.embed_query("a cat")
    assert copy.deepcopy({"embedder": emb})["embedder"].client is emb.client


def test_from_config_and_ready_provider() -> None:
    emb = MRLEmbeddings.from_config({"embedder": {"provider": "fake", "dim": 16}})
    assert emb.dim == 16 and emb.provider == "fake"
    assert MRLEmbeddings.from_config({"provider": "fake", "dim": 16}, dim=8).dim == 8
    provider = get_provider("fake", dim=12)
    assert MRLEmbeddings(provider).client is provider
    with pytest.raises(ConfigError, match="dim"):
        MRLEmbeddings(provider, dim=8)
    with pytest.raises(ConfigError, match="unknown embedding provider"):
        MRLEmbeddings("no-such-provider")


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    with OpenAIServer(api_key=KEY) as server:
        yield server


async def test_openai_loopback_vectors_and_key_hygiene(openai_server: OpenAIServer) -> None:
    emb = MRLEmbeddings("openai", model="text-embedding-3-large", dim=256, api_key=KEY,
                        base_url=openai_server.base_url, max_retries=0)
    texts = ["alpha beta", "gamma"]
    docs = emb.embed_documents(texts)
    for text, row in zip(texts, docs):
        expected = openai_server.expected_vector(text, model="text-embedding-3-large", dim=256)
        np.testing.assert_allclose(row, expected, atol=1e-6)
    assert await emb.aembed_documents(texts) == docs
    assert openai_server.requests[0].body["dimensions"] == 256
    assert KEY not in repr(emb) and KEY not in str(emb.spec)
    await emb.aclose()
    emb.close()


def test_vectorstore_on_the_openai_loopback(tmp_path, openai_server: OpenAIServer) -> None:
    emb = MRLEmbeddings("openai", model="text-embedding-3-small", dim=64, api_key=KEY,
                        base_url=openai_server.base_url, max_retries=0)
    texts = ["the cat sat on the mat", "dogs chase balls", "a kitten on a rug"]
    vs = MRLVectorStore(emb, tmp_path / "oa", exact_below=0)
    vs.add_texts(texts, ids=["c", "d", "k"])
    assert vs.store.spec == emb.spec and vs.store.full_dim == 64
    query = "the cat sat on the mat"
    expected = openai_server.expected_vector(query, model="text-embedding-3-small", dim=64)
    top = vs.similarity_search_by_vector(expected.tolist(), k=1)
    assert top[0].id == "c"
    assert [d.id for d in vs.similarity_search(query, k=3)][0] == "c"  # the emulator's query == document vector
    vs.close()
    emb.close()
