"""VectorStoreIndex over MRLVectorStore end to end, sync and async; persistence; ref-doc deletes."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.embeddings.mrl import MRLEmbedding
from llama_index.retrievers.mrl import MRLRetriever
from llama_index.core.vector_stores import SimpleVectorStore
from llama_index.vector_stores.mrl import MRLVectorStore

from mrl_retrievers import MRLStore, get_provider
from mrl_retrievers.config import StoreSettings
from mrl_retrievers.errors import ConfigError, InvalidInputError, SpecMismatchError, UnsupportedFilterError

DOCS = [
    Document(text="Red apples and green pears grow in the orchard. " * 6, doc_id="fruit", metadata={"topic": "food", "year": 2021}),
    Document(text="The engine of the blue car needs new spark plugs. " * 6, doc_id="cars", metadata={"topic": "cars", "year": 2023}),
    Document(text="Apple pie is baked with cinnamon and sugar. " * 6, doc_id="baking", metadata={"topic": "food", "year": 2024}),
]


def _index(vector_store: MRLVectorStore, embed: MRLEmbedding) -> VectorStoreIndex:
    index = VectorStoreIndex.from_vector_store(
        vector_store, embed_model=embed, transformations=[SentenceSplitter(chunk_size=40, chunk_overlap=0)]
    )
    for doc in DOCS:
        index.insert(doc)
    return index


def _summary(nodes_with_scores) -> list[tuple[str, str, float]]:
    return [(n.node.node_id, n.node.get_content(), round(float(n.score), 6)) for n in nodes_with_scores]


def test_index_insert_retrieve_query_engine(make_vector_store, embed):
    vector_store = make_vector_store(spec=embed.spec)
    index = _index(vector_store, embed)
    assert len(vector_store.client) > len(DOCS)  # the splitter made several chunks per document

    hits = index.as_retriever(similarity_top_k=3).retrieve("apple pie with cinnamon")
    assert len(hits) == 3
    assert hits[0].node.ref_doc_id == "baking"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].node.metadata == {"topic": "food", "year": 2024}

    response = index.as_query_engine(llm=MockLLM(), similarity_top_k=2).query("apple pie")
    assert len(response.source_nodes) == 2
    assert response.source_nodes[0].node.ref_doc_id == "baking"


async def test_index_async_end_to_end(make_vector_store, embed):
    vector_store = make_vector_store(spec=embed.spec)
    index = VectorStoreIndex.from_vector_store(
        vector_store, embed_model=embed, transformations=[SentenceSplitter(chunk_size=40, chunk_overlap=0)]
    )
    for doc in DOCS:
        await index.ainsert(doc)
    sync_hits = _summary(index.as_retriever(similarity_top_k=4).retrieve("spark plugs"))
    async_hits = _summary(await index.as_retriever(similarity_top_k=4).aretrieve("spark plugs"))
    assert sync_hits == async_hits
    assert async_hits[0][1].startswith("The engine")

    response = await index.as_query_engine(llm=MockLLM(), similarity_top_k=2).aquery("spark plugs")
    assert response.source_nodes[0].node.ref_doc_id == "cars"

    await index.adelete_ref_doc("cars")
    left = await index.as_retriever(similarity_top_k=50).aretrieve("spark plugs")
    assert left and all(n.node.ref_doc_id != "cars" for n in left)


def test_delete_ref_doc_removes_every_node_of_the_document(make_vector_store, embed):
    vector_store = make_vector_store(spec=embed.spec)
    index = _index(vector_store, embed)
    store = vector_store.client
    per_doc = {d.doc_id: len(vector_store.get_nodes(filters=_ref_doc(d.doc_id))) for d in DOCS}
    assert per_doc["fruit"] > 1
    before = len(store)

    index.delete_ref_doc("fruit")

    assert len(store) == before - per_doc["fruit"]
    assert vector_store.get_nodes(filters=_ref_doc("fruit")) == []
    everything = index.as_retriever(similarity_top_k=100).retrieve("red apples orchard")
    assert {n.node.ref_doc_id for n in everything} == {"cars", "baking"}
    assert len(everything) == before - per_doc["fruit"]
    # deleting an unknown document is a no-op
    vector_store.delete("no-such-doc")
    assert len(store) == before - per_doc["fruit"]


def _ref_doc(doc_id: str) -> MetadataFilters:
    return MetadataFilters(filters=[MetadataFilter(key="ref_doc_id", value=doc_id)])


def test_persistence_reopen_gives_the_same_nodes(tmp_path, embed):
    path = tmp_path / "persisted"
    vector_store = MRLVectorStore(path, spec=embed.spec, prefix_dim=8)
    _index(vector_store, embed)
    nodes = sorted(vector_store.get_nodes(), key=lambda n: n.node_id)
    query = VectorStoreQuery(query_embedding=embed.get_query_embedding("apple"), similarity_top_k=5)
    result = vector_store.query(query)
    vector_store.close()

    reopened = MRLVectorStore(path, spec=embed.spec)
    try:
        again = sorted(reopened.get_nodes(), key=lambda n: n.node_id)
        assert [n.model_dump() for n in again] == [n.model_dump() for n in nodes]
        result2 = reopened.query(query)
        assert result2.ids == result.ids
        assert result2.similarities == pytest.approx(result.similarities)
        index = VectorStoreIndex.from_vector_store(reopened, embed_model=embed)
        assert index.as_retriever(similarity_top_k=1).retrieve("apple pie cinnamon")[0].node.ref_doc_id == "baking"
    finally:
        reopened.close()


def test_a_store_of_another_embedding_is_refused(tmp_path, embed):
    path = tmp_path / "s"
    vector_store = MRLVectorStore(path, spec=embed.spec)
    _index(vector_store, embed)
    vector_store.close()
    other = MRLEmbedding("fake", dim=32, model="another-model")
    with pytest.raises(SpecMismatchError):
        MRLVectorStore(path, spec=other.spec)


def test_node_relationships_and_metadata_round_trip(make_vector_store):
    vector_store = make_vector_store(prefix_dim=2)  # 4-wide embeddings: a prefix wider than them is refused
    node = TextNode(
        id_="n1", text="hello world", metadata={"nested": {"a": [1, 2]}, "flag": True, "none": None},
        excluded_llm_metadata_keys=["flag"],
        relationships={
            NodeRelationship.SOURCE: RelatedNodeInfo(node_id="doc-1"),
            NodeRelationship.NEXT: RelatedNodeInfo(node_id="n2"),
        },
        embedding=[1.0, 0.0, 0.0, 0.0],
    )
    assert vector_store.add([node]) == ["n1"]
    (back,) = vector_store.get_nodes(node_ids=["n1"])
    expected = node.model_dump()
    expected["embedding"] = None
    assert back.model_dump() == expected
    assert back.ref_doc_id == "doc-1"
    (hit,) = vector_store.query(VectorStoreQuery(query_embedding=[1.0, 0, 0, 0], similarity_top_k=3)).nodes
    assert hit.model_dump() == expected
    assert node.embedding == [1.0, 0.0, 0.0, 0.0]  # the caller's node is not changed


def _nodes(n: int, dim: int = 8, seed: int = 7) -> list[TextNode]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim))
    return [
        TextNode(
            id_=f"n{i:02d}", text=f"text {i}", embedding=vectors[i].tolist(),
            metadata={"i": i, "parity": "even" if i % 2 == 0 else "odd"},
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"doc{i % 3}")},
        )
        for i in range(n)
    ]  # fmt: skip


def test_get_nodes_and_delete_nodes_by_ids_and_filters(make_vector_store):
    vector_store = make_vector_store()
    vector_store.add(_nodes(12))
    odd = MetadataFilters(filters=[MetadataFilter(key="parity", value="odd")])

    assert [n.node_id for n in vector_store.get_nodes(node_ids=["n03", "n01", "nope"])] == ["n03", "n01"]
    assert [n.node_id for n in vector_store.get_nodes(filters=odd)] == [f"n{i:02d}" for i in range(1, 12, 2)]
    assert [n.node_id for n in vector_store.get_nodes(node_ids=["n02", "n03"], filters=odd)] == ["n03"]
    assert vector_store.get_nodes(node_ids=[]) == []

    vector_store.delete_nodes(node_ids=["n00", "n01"], filters=odd)  # both: only n01
    assert len(vector_store.client) == 11
    vector_store.delete_nodes(filters=odd)
    assert sorted(n.node_id for n in vector_store.get_nodes()) == [f"n{i:02d}" for i in range(0, 12, 2)]
    vector_store.delete_nodes(node_ids=["n00"])
    assert len(vector_store.client) == 5
    vector_store.delete_nodes(node_ids=[])  # an empty list deletes nothing
    assert len(vector_store.client) == 5
    vector_store.clear()
    assert len(vector_store.client) == 0
    assert vector_store.get_nodes() == []


async def test_async_twins_return_what_the_sync_ones_do(make_vector_store):
    sync_store, async_store = make_vector_store("a"), make_vector_store("b")
    nodes = _nodes(20)
    assert sync_store.add(nodes) == await async_store.async_add(nodes)
    filters = MetadataFilters(
        filters=[MetadataFilter(key="i", value=4, operator=FilterOperator.GT), MetadataFilter(key="parity", value="odd")],
        condition="or",
    )
    rng = np.random.default_rng(3)
    for mode in (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR):
        for node_ids in (None, [], ["n01", "n05", "n06", "n07"]):
            query = VectorStoreQuery(
                query_embedding=rng.standard_normal(8).tolist(), similarity_top_k=5, filters=filters,
                node_ids=node_ids, doc_ids=["doc0", "doc1"], mode=mode, mmr_threshold=0.4,
            )
            a, b = sync_store.query(query), await async_store.aquery(query)
            assert a.ids == b.ids and a.similarities == b.similarities
            assert [n.model_dump() for n in a.nodes] == [n.model_dump() for n in b.nodes]
    assert [n.node_id for n in sync_store.get_nodes(filters=filters)] == [
        n.node_id for n in await async_store.aget_nodes(filters=filters)
    ]
    sync_store.delete("doc1")
    await async_store.adelete("doc1")
    sync_store.delete_nodes(node_ids=["n00"], filters=filters)
    await async_store.adelete_nodes(node_ids=["n00"], filters=filters)
    sync_store.delete_nodes(filters=filters)
    await async_store.adelete_nodes(filters=filters)
    assert sorted(n.node_id for n in sync_store.get_nodes()) == sorted(n.node_id for n in await async_store.aget_nodes())
    await async_store.aclear()
    assert await async_store.aget_nodes() == []


def test_query_honours_node_ids_doc_ids_and_an_empty_node_id_list(make_vector_store):
    vector_store = make_vector_store()
    vector_store.add(_nodes(15))
    q = np.ones(8).tolist()
    everything = vector_store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=15, node_ids=[]))
    assert len(everything.ids) == 15
    some = vector_store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=15, node_ids=["n01", "n02", "zz"]))
    assert sorted(some.ids) == ["n01", "n02"]
    assert some.ids == [i for i in everything.ids if i in {"n01", "n02"}]
    assert some.similarities == pytest.approx([s for i, s in zip(everything.ids, everything.similarities) if i in {"n01", "n02"}], abs=1e-6)
    docs = vector_store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=15, doc_ids=["doc2"]))
    assert docs.ids == [i for i in everything.ids if int(i[1:]) % 3 == 2]


def test_shortlist_and_ef_reach_the_store_through_vector_store_kwargs(make_vector_store, embed, monkeypatch):
    vector_store = make_vector_store(spec=embed.spec, exact_below=0)
    index = _index(vector_store, embed)
    seen = []
    original = MRLStore.search

    def spy(self, vector, k=10, shortlist=None, filter=None, *, ef=None):
        seen.append((k, shortlist, ef))
        return original(self, vector, k=k, shortlist=shortlist, filter=filter, ef=ef)

    monkeypatch.setattr(MRLStore, "search", spy)
    hits = index.as_retriever(similarity_top_k=2, vector_store_kwargs={"shortlist": 7, "ef": 30}).retrieve("apple")
    assert len(hits) == 2 and seen == [(2, 7, 30)]


def test_mmr_mode_diversifies(make_vector_store):
    vector_store = make_vector_store()
    base = np.zeros(8)
    base[0] = 1.0
    near = [base + 0.01 * np.eye(8)[j] for j in range(1, 4)]  # three near-duplicates of the query
    other = np.eye(8)[1] + 0.5 * base  # less similar, but different
    nodes = [TextNode(id_=f"dup{j}", text="d", embedding=v.tolist()) for j, v in enumerate(near)]
    nodes.append(TextNode(id_="other", text="o", embedding=other.tolist()))
    vector_store.add(nodes)
    plain = vector_store.query(VectorStoreQuery(query_embedding=base.tolist(), similarity_top_k=2))
    assert set(plain.ids) <= {"dup0", "dup1", "dup2"}
    mmr = vector_store.query(
        VectorStoreQuery(query_embedding=base.tolist(), similarity_top_k=2, mode="mmr"), mmr_threshold=0.3
    )
    assert mmr.ids[0] in {"dup0", "dup1", "dup2"} and mmr.ids[1] == "other"
    # similarities are what SimpleVectorStore reports in MMR mode: LlamaIndex's MMR scores (issue 20)
    simple = SimpleVectorStore()
    simple.add([TextNode(id_=n.node_id, text=n.text, embedding=n.embedding) for n in nodes])
    reference = simple.query(VectorStoreQuery(query_embedding=base.tolist(), similarity_top_k=2, mode="mmr"),
                             mmr_threshold=0.3)
    assert mmr.ids == reference.ids
    assert mmr.similarities == pytest.approx(reference.similarities, abs=1e-6)


def test_unsupported_modes_filters_and_inputs_raise(make_vector_store):
    vector_store = make_vector_store()
    vector_store.add(_nodes(3))
    q = np.ones(8).tolist()
    with pytest.raises(InvalidInputError):
        vector_store.query(VectorStoreQuery(query_embedding=q, mode=VectorStoreQueryMode.HYBRID))
    with pytest.raises(InvalidInputError):
        vector_store.query(VectorStoreQuery(query_embedding=None))
    with pytest.raises(InvalidInputError):
        vector_store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=0))
    bad = MetadataFilters(filters=[MetadataFilter(key="parity", value=["m"], operator=FilterOperator.GT)])
    for call in (
        lambda: vector_store.query(VectorStoreQuery(query_embedding=q, filters=bad)),
        lambda: vector_store.get_nodes(filters=bad),
        lambda: vector_store.delete_nodes(filters=bad),
        lambda: MRLVectorStore(None).query(VectorStoreQuery(query_embedding=q, filters=bad)),
    ):
        with pytest.raises(UnsupportedFilterError):
            call()
    assert len(vector_store.client) == 3  # nothing was deleted by the refused filter


def test_lazy_store_is_created_at_the_first_add(tmp_path):
    vector_store = MRLVectorStore(tmp_path / "lazy", prefix_dim=4, dtype="float32")
    assert vector_store.client is None
    assert vector_store.get_nodes() == [] and vector_store.query(VectorStoreQuery(query_embedding=[1.0, 0.0])).ids == []
    vector_store.delete("x")
    vector_store.clear()
    vector_store.add(_nodes(2, dim=6))
    store = vector_store.client
    assert store.full_dim == 6 and store.prefix_dim == 4 and store.dtype == "float32"
    assert vector_store.path == str(store.path)
    vector_store.close()


def test_vector_store_over_an_open_mrl_store(tmp_path):
    store = MRLStore.create(tmp_path / "raw", full_dim=4, prefix_dim=2)
    store.add(["plain"], np.eye(4)[:1], texts=["written without LlamaIndex"], metadatas=[{"lang": "en"}])
    vector_store = MRLVectorStore(store)
    (node,) = vector_store.query(VectorStoreQuery(query_embedding=[1.0, 0, 0, 0])).nodes
    assert (node.node_id, node.get_content(), node.metadata) == ("plain", "written without LlamaIndex", {"lang": "en"})
    with pytest.raises(ConfigError):
        MRLVectorStore(store, prefix_dim=2)  # create options for a store that exists
    store.close()


def test_vector_store_from_settings(tmp_path):
    settings = StoreSettings(path=str(tmp_path / "configured"), prefix_dim=4, dtype="float32")
    vector_store = MRLVectorStore(settings)
    vector_store.add(_nodes(3, dim=6))
    assert (vector_store.client.prefix_dim, vector_store.client.dtype) == (4, "float32")
    vector_store.close()
    reopened = MRLVectorStore(settings)  # opened at once: the store exists
    assert reopened.client is not None and len(reopened.client) == 3
    reopened.close()


def test_retriever_over_store_and_embedding(make_vector_store, embed):
    vector_store = make_vector_store(spec=embed.spec)
    _index(vector_store, embed)
    retriever = MRLRetriever(vector_store, embed, similarity_top_k=2, shortlist=50)
    hits = retriever.retrieve("apple pie with cinnamon")
    assert len(hits) == 2 and hits[0].node.ref_doc_id == "baking"
    cars_only = MRLRetriever(
        vector_store, embed.provider, similarity_top_k=10,
        filters=MetadataFilters(filters=[MetadataFilter(key="topic", value="cars")]),
    )  # fmt: skip
    assert {h.node.ref_doc_id for h in cars_only.retrieve("apple")} == {"cars"}
    assert MRLRetriever(vector_store, embed, doc_ids=["fruit"]).retrieve("apple")[0].node.ref_doc_id == "fruit"
    with pytest.raises(InvalidInputError):
        MRLRetriever(vector_store, embed, similarity_top_k=0)


async def test_retriever_async_equals_sync(make_vector_store, embed):
    vector_store = make_vector_store(spec=embed.spec)
    _index(vector_store, embed)
    for mode in ("default", "mmr"):
        retriever = MRLRetriever(vector_store, embed, similarity_top_k=3, mode=mode, mmr_threshold=0.5)
        assert _summary(retriever.retrieve("green pears")) == _summary(await retriever.aretrieve("green pears"))


async def test_embedding_matches_the_provider_sync_and_async():
    provider = get_provider("fake", dim=24)
    embed = MRLEmbedding(provider)
    texts = ["one apple", "two pears", "three cars"]
    expected = provider.embed_documents(texts)
    assert np.allclose(embed.get_text_embedding_batch(texts), expected)
    assert await embed.aget_text_embedding_batch(texts) == embed.get_text_embedding_batch(texts)
    assert embed.get_text_embedding("one apple") == await embed.aget_text_embedding("one apple")
    assert np.allclose(embed.get_query_embedding("q"), provider.embed_query("q"))
    assert embed.get_query_embedding("q") == await embed.aget_query_embedding("q")
    assert all(isinstance(x, float) for x in embed.get_query_embedding("q"))
    assert embed.spec == provider.spec and embed.dim == 24 and embed.model_name == provider.model


def test_embedding_from_registry_name_and_config():
    by_name = MRLEmbedding("fake", dim=16, seed=3)
    by_config = MRLEmbedding.from_config({"provider": "fake", "dim": 16, "options": {"seed": 3}})
    assert by_name.spec == by_config.spec
    assert by_name.get_query_embedding("x") == by_config.get_query_embedding("x")
    assert MRLEmbedding.from_config({"provider": "fake", "dim": 16}, dim=8).dim == 8
    with pytest.raises(ValueError):
        MRLEmbedding(get_provider("fake", dim=8), dim=16)  # a ready provider plus settings


async def test_the_retriever_hands_the_store_the_array_its_query_embedding_was_listed_from(make_vector_store, embed, monkeypatch):
    """LlamaIndex passes embeddings as lists of floats; our retriever gives the store the float32
    array the list came from (no conversion back), and the answer is the same as from the list."""
    vector_store = make_vector_store(spec=embed.spec)
    _index(vector_store, embed)
    seen = []
    query = MRLVectorStore.query
    monkeypatch.setattr(MRLVectorStore, "query", lambda self, q, **kw: seen.append((q.query_embedding, kw.get("mrl_query_array"))) or query(self, q, **kw))
    retriever = MRLRetriever(vector_store, embed, similarity_top_k=3)
    hits = retriever.retrieve("green pears")
    listed, array = seen[-1]
    assert array is not None and array.dtype == np.float32 and array.tolist() == listed
    assert _summary(hits) == _summary(await retriever.aretrieve("green pears"))
    assert seen[-1][1] is not None  # the async path too
    from_list = vector_store.query(VectorStoreQuery(query_embedding=listed, similarity_top_k=3))
    assert [n.node_id for n in from_list.nodes] == [h.node.node_id for h in hits]
    assert from_list.similarities == [h.score for h in hits]
    # Only that very list: an equal copy, or another thread's, is converted as usual.
    assert embed.query_array(list(listed)) is None
    other = []
    thread = threading.Thread(target=lambda: other.append(embed.query_array(listed)))
    thread.start(); thread.join()  # noqa: E702
    assert other == [None]
