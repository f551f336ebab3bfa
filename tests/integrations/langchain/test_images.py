"""LangChain image round trip: ``MRLEmbeddings.embed_image``, ``MRLVectorStore.add_images`` and
retrieval of images with a text query (and with an image), offline with the fake provider and end
to end through a multimodal API's loopback emulator."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings

from langchain_mrl import MRLEmbeddings, MRLVectorStore
from mrl_retrievers.errors import ConfigError, UnsupportedModalityError
from tests.providers.images import png
from tests.providers.servers.fixtures import KEY, voyage_server  # noqa: F401 - the emulator fixture

CAPTIONS = {
    "rain": "bar chart of monthly rainfall in Lisbon",
    "browsers": "pie chart of browser market share",
    "temps": "line plot of temperature over one year",
}


@pytest.fixture
def chart_uris(tmp_path):
    uris = []
    for name, caption in CAPTIONS.items():
        path = tmp_path / f"{name}.png"
        path.write_bytes(png(caption=caption))
        uris.append(str(path))
    return uris


def test_embed_image_follows_the_langchain_convention(chart_uris):
    emb = MRLEmbeddings("fake", dim=32)
    vectors = emb.embed_image(chart_uris)
    assert len(vectors) == 3 and all(type(x) is float for x in vectors[0]) and len(vectors[0]) == 32
    np.testing.assert_allclose(vectors, emb.client.embed_images(chart_uris), atol=0)
    assert asyncio.run(emb.aembed_image(chart_uris)) == vectors
    assert emb.embed_image([]) == []


def test_add_images_then_find_them_with_a_text_query(tmp_path, chart_uris):
    store = MRLVectorStore(MRLEmbeddings("fake", dim=32), tmp_path / "store")
    ids = store.add_images(chart_uris, metadatas=[{"year": 2024}] * 3, ids=list(CAPTIONS))
    store.add_texts(["notes on rainfall measurement"], ids=["note"])
    assert ids == list(CAPTIONS)

    doc = store.similarity_search("monthly rainfall chart", k=1, filter={"mrl_modality": "image"})[0]
    assert doc.id == "rain" and doc.page_content == chart_uris[0]  # an image's content is its source
    assert doc.metadata == {"year": 2024, "mrl_modality": "image", "mrl_source": chart_uris[0],
                            "mrl_media_type": "image/png"}
    retriever = store.as_retriever(search_kwargs={"k": 1})
    assert retriever.invoke("browser market share")[0].id == "browsers"
    assert [d.id for d in store.similarity_search_by_image(chart_uris[2], k=1)] == ["temps"]
    scored = store.similarity_search_by_image_with_score(chart_uris[2], k=4, filter={"mrl_modality": "image"})
    assert [d.id for d, _ in scored][0] == "temps" and scored[0][1] == pytest.approx(1.0, abs=1e-3)  # float16 rows
    assert {d.id for d, _ in scored} == set(CAPTIONS)
    store.close()

    reopened = MRLVectorStore(MRLEmbeddings("fake", dim=32), tmp_path / "store")
    again = reopened.get_by_ids(["temps", "note"])
    assert [d.page_content for d in again] == [chart_uris[2], "notes on rainfall measurement"]
    assert again[0].metadata["mrl_source"] == chart_uris[2]
    reopened.close()


def test_async_add_images_equals_sync(chart_uris):
    sync_store = MRLVectorStore(MRLEmbeddings("fake", dim=16))
    async_store = MRLVectorStore(MRLEmbeddings("fake", dim=16))
    sync_store.add_images(chart_uris, ids=["a", "b", "c"])
    asyncio.run(async_store.aadd_images(chart_uris, ids=["a", "b", "c"]))
    a = [(d.id, s) for d, s in sync_store.similarity_search_with_score("rainfall", k=3)]
    b = [(d.id, s) for d, s in async_store.similarity_search_with_score("rainfall", k=3)]
    assert a == b


def test_a_text_only_embedding_refuses_images_and_creates_nothing(tmp_path, chart_uris):
    emb = MRLEmbeddings("openai", model="text-embedding-3-small", dim=64, api_key="k", base_url="http://127.0.0.1:9/v1")
    store = MRLVectorStore(emb, tmp_path / "store")
    with pytest.raises(UnsupportedModalityError, match="embeds text only"):
        store.add_images(chart_uris)
    assert store.store is None and not (tmp_path / "store").exists()


class ClipLike(Embeddings):
    """A foreign embedding class with LangChain's ``embed_image(uris)`` convention (OpenCLIPEmbeddings)."""

    def embed_documents(self, texts):
        return [[1.0, float(len(t)), 0.0] for t in texts]

    def embed_query(self, text):
        return [1.0, float(len(text)), 0.0]

    def embed_image(self, uris):
        return [[0.0, 2.0, float(i + 1)] for i, _ in enumerate(uris)]


def test_foreign_image_embeddings_work_and_others_are_told_what_to_use(chart_uris):
    store = MRLVectorStore(ClipLike())
    store.add_images(chart_uris[:2], ids=["x", "y"])
    assert store.get_by_ids(["y"])[0].metadata["mrl_media_type"] == "image/png"
    from tests.integrations.langchain.conftest import TableEmbeddings

    plain = MRLVectorStore(TableEmbeddings({}))
    with pytest.raises(ConfigError, match="no embed_image"):
        plain.add_images(chart_uris[:1])


def test_end_to_end_through_a_multimodal_api(chart_uris, voyage_server):
    pytest.importorskip("voyageai")
    emb = MRLEmbeddings("voyage", model="voyage-multimodal-3.5", dim=256, api_key=KEY, base_url=voyage_server.base_url)
    store = MRLVectorStore(emb)
    store.add_images(chart_uris, ids=list(CAPTIONS))
    (req,) = voyage_server.requests
    assert req.path == "/v1/multimodalembeddings" and req.body["input_type"] == "document"
    assert [i["content"][0]["type"] for i in req.body["inputs"]] == ["image_base64"] * 3
    (doc, score), = store.similarity_search_by_image_with_score(chart_uris[1], k=1)
    query = voyage_server.requests[-1].body
    assert query["input_type"] == "query" and query["inputs"][0]["content"][0]["type"] == "image_base64"
    expected = voyage_server.expected_vector(voyage_server.multimodal_identity(open(chart_uris[1], "rb").read()),
                                             model="voyage-multimodal-3.5", dim=256, input_type="query")
    stored = store.store.get([doc.id], include_vectors=True)[0].vector
    assert score == pytest.approx(float(stored @ expected), abs=2e-3)  # the API's query vector was used
    docs = store.similarity_search("rainfall", k=3)
    assert {d.id for d in docs} == set(CAPTIONS) and voyage_server.requests[-1].body["inputs"] == [
        {"content": [{"type": "text", "text": "rainfall"}]}]
