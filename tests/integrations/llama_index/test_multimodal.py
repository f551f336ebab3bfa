"""LlamaIndex multimodal: ``MRLEmbedding`` as a ``MultiModalEmbedding`` and ``MRLVectorStore`` as the
text and image stores of a ``MultiModalVectorStoreIndex`` with ``ImageNode``s: text-to-image and
image-to-image retrieval, sync and async, persistence, and parity with ``SimpleVectorStore`` (the
reference store) on the same index."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from llama_index.core import StorageContext
from llama_index.core.indices.multi_modal import MultiModalVectorStoreIndex
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.schema import ImageNode, TextNode
from llama_index.core.vector_stores import SimpleVectorStore
from llama_index.embeddings.mrl import MRLEmbedding
from llama_index.vector_stores.mrl import MRLVectorStore

from mrl_retrievers import MRLIndex, get_provider
from mrl_retrievers.errors import UnsupportedModalityError
from tests.providers.images import png

CHARTS = {
    "rain": "bar chart of monthly rainfall in Lisbon",
    "browsers": "pie chart of browser market share",
    "temps": "line plot of temperature over one year",
}
TEXTS = {"t-rain": "Lisbon gets most of its rainfall in winter.", "t-web": "Browsers render web pages."}


@pytest.fixture
def embed():
    return MRLEmbedding("fake", dim=48)


@pytest.fixture
def nodes(tmp_path):
    out = [TextNode(id_=k, text=v, metadata={"kind": "note"}) for k, v in TEXTS.items()]
    for name, caption in CHARTS.items():
        path = tmp_path / f"{name}.png"
        path.write_bytes(png(caption=caption))
        out.append(ImageNode(id_=name, image_path=str(path), metadata={"kind": "chart", "name": name}))
    return out


def build(stores, nodes, embed):
    text_store, image_store = stores
    storage = StorageContext.from_defaults(vector_store=text_store, image_store=image_store)
    return MultiModalVectorStoreIndex(nodes=nodes, storage_context=storage, embed_model=embed, image_embed_model=embed)


def test_mrl_embedding_is_a_multimodal_embedding(embed, nodes):
    assert isinstance(embed, MultiModalEmbedding)
    path = nodes[-1].image_path
    vector = embed.get_image_embedding(path)
    assert len(vector) == 48 and abs(np.linalg.norm(vector) - 1) < 1e-6
    with open(path, "rb") as fh:  # LlamaIndex hands over a BytesIO for inline images
        assert embed.get_image_embedding(io.BytesIO(fh.read())) == vector
    assert asyncio.run(embed.aget_image_embedding(path)) == vector
    assert embed.get_image_embedding_batch([path, path]) == [vector, vector]
    assert asyncio.run(embed.aget_image_embedding_batch([path])) == [vector]
    text_only = MRLEmbedding(get_provider("openai", model="text-embedding-3-small", dim=64, api_key="k",
                                          base_url="http://127.0.0.1:9/v1"))
    with pytest.raises(UnsupportedModalityError):
        text_only.get_image_embedding(path)


def test_multimodal_index_text_to_image_and_image_to_image(tmp_path, embed, nodes):
    stores = (MRLVectorStore(tmp_path / "text", spec=embed.spec), MRLVectorStore(tmp_path / "images", spec=embed.spec))
    index = build(stores, nodes, embed)
    assert len(stores[0].client) == 2 and len(stores[1].client) == 3  # images went to the image store
    retriever = index.as_retriever(similarity_top_k=1, image_similarity_top_k=1)

    (hit,) = retriever.text_to_image_retrieve("monthly rainfall")
    assert isinstance(hit.node, ImageNode) and hit.node.node_id == "rain"
    assert hit.node.image_path == nodes[2].image_path and hit.node.metadata == {"kind": "chart", "name": "rain"}
    assert hit.node.image_mimetype == "image/png"
    (same,) = retriever.image_to_image_retrieve(nodes[4].image_path)
    assert same.node.node_id == "temps" and same.score == pytest.approx(1.0, abs=1e-3)
    both = retriever.retrieve("browser market share")
    assert [n.node.node_id for n in both] == ["t-web", "browsers"]  # the text store, then the image store
    assert [n.node.node_id for n in asyncio.run(retriever.aretrieve("browser market share"))] == ["t-web", "browsers"]

    record = stores[1].client.get(["rain"])[0]  # the record says what it is, for any other reader
    assert (record.metadata["mrl_modality"], record.metadata["mrl_source"], record.metadata["mrl_media_type"]) == (
        "image", nodes[2].image_path, "image/png")
    for store in stores:
        store.close()

    reopened = MultiModalVectorStoreIndex.from_vector_store(
        vector_store=MRLVectorStore(tmp_path / "text"), image_vector_store=MRLVectorStore(tmp_path / "images"),
        embed_model=embed, image_embed_model=embed)
    again = reopened.as_retriever(image_similarity_top_k=2).text_to_image_retrieve("temperature plot")
    assert again[0].node.node_id == "temps" and again[0].node.image_path == nodes[4].image_path


def test_same_answers_as_the_reference_store(tmp_path, embed, nodes):
    ours = build((MRLVectorStore(spec=embed.spec, dtype="float32"), MRLVectorStore(spec=embed.spec, dtype="float32")),
                 nodes, embed).as_retriever(similarity_top_k=2, image_similarity_top_k=3)
    reference = build((SimpleVectorStore(), SimpleVectorStore()), nodes, embed).as_retriever(
        similarity_top_k=2, image_similarity_top_k=3)
    for query in ("monthly rainfall", "browser share", "a plot"):
        got = [(n.node.node_id, round(n.score, 5)) for n in ours.retrieve(query)]
        want = [(n.node.node_id, round(n.score, 5)) for n in reference.retrieve(query)]
        assert got == want
    for path in (nodes[2].image_path, nodes[3].image_path):
        got = [(n.node.node_id, round(n.score, 5)) for n in ours.image_to_image_retrieve(path)]
        want = [(n.node.node_id, round(n.score, 5)) for n in reference.image_to_image_retrieve(path)]
        assert got == want


def test_image_items_written_elsewhere_come_back_as_image_nodes(tmp_path, nodes):
    with MRLIndex(get_provider("fake", dim=32), tmp_path / "store") as index:
        index.add_images([nodes[2].image_path, "https://x.org/cat.jpg"], ids=["file", "url"], captions=["rain", None])
    store = MRLVectorStore(tmp_path / "store")
    by_id = {n.node_id: n for n in store.get_nodes(["file", "url"])}
    assert isinstance(by_id["file"], ImageNode) and by_id["file"].image_path == nodes[2].image_path
    assert by_id["file"].text == "rain" and by_id["file"].image_mimetype == "image/png"
    assert by_id["url"].image_url == "https://x.org/cat.jpg" and by_id["url"].image_path is None
    store.close()


def test_inline_image_nodes_record_their_media_type(embed):
    store = MRLVectorStore(spec=embed.spec)
    import base64

    node = ImageNode(id_="inline", image=base64.b64encode(png()).decode())
    node.embedding = embed.get_image_embedding(node.resolve_image())
    store.add([node])
    assert store.client.get(["inline"])[0].metadata["mrl_media_type"] == "image/png"
    assert "mrl_source" not in store.client.get(["inline"])[0].metadata
    (back,) = store.get_nodes(["inline"])
    assert isinstance(back, ImageNode) and back.image == node.image
