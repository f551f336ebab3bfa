"""Each pattern LlamaIndex users write, run on ``MRLVectorStore`` and on ``SimpleVectorStore`` in the
same test: the same nodes, in the same order, with the same scores and the same errors (issue 20).

Ours keeps float32 vectors and answers small stores exactly, so both rank by the same cosines.
MMR is compared with ``mmr_prefetch_k`` covering the store: SimpleVectorStore runs MMR over every
node, ours over a prefetched shortlist (``mmr_prefetch_factor`` per result by default).
"""

from __future__ import annotations

import numpy as np
import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.postprocessor import SimilarityPostprocessor
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores import SimpleVectorStore
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)
from llama_index.embeddings.mrl import MRLEmbedding
from llama_index.vector_stores.mrl import MRLVectorStore

from mrl_retrievers.errors import InvalidInputError

N = 120
LANGS = ["en", "de", "fr"]


def documents() -> list[Document]:
    return [
        Document(text=f"passage {i} about topic {i % 7}", doc_id=f"doc{i}",
                 metadata={"year": 2015 + i % 11, "date": f"{2020 + i % 6}-{1 + i % 12:02d}-{1 + i % 28:02d}",
                           "lang": LANGS[i % 3]})
        for i in range(N)
    ]  # fmt: skip


@pytest.fixture
def embed() -> MRLEmbedding:
    return MRLEmbedding("fake", dim=32)


@pytest.fixture
def indexes(tmp_path, embed):
    """(ours, reference): VectorStoreIndex over each store, built from the same documents."""
    ours = MRLVectorStore(tmp_path / "ours", dtype="float32", spec=embed.spec)
    built = []
    for store in (ours, SimpleVectorStore()):
        built.append(VectorStoreIndex.from_documents(
            documents(), storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed,
        ))  # fmt: skip
    yield built
    ours.close()


def summary(nodes_with_scores) -> list[tuple[str, str, dict]]:
    return [(n.node.ref_doc_id, n.node.get_content(), n.node.metadata) for n in nodes_with_scores]


def scores(nodes_with_scores) -> list[float]:
    return [float(n.score) for n in nodes_with_scores]


def same(got, want) -> None:
    assert summary(got) == summary(want)
    assert np.allclose(scores(got), scores(want), atol=1e-5)


@pytest.mark.parametrize("k", [1, 4, N + 5])
async def test_retriever_nodes_order_and_scores(indexes, k) -> None:
    ours, ref = (index.as_retriever(similarity_top_k=k) for index in indexes)
    same(ours.retrieve("topic 3"), ref.retrieve("topic 3"))
    same(await ours.aretrieve("topic 5"), await ref.aretrieve("topic 5"))


@pytest.mark.parametrize("filters", [
    MetadataFilters(filters=[MetadataFilter(key="date", value="2024-01-01", operator=FilterOperator.GTE)]),  # issue 20
    MetadataFilters(filters=[MetadataFilter(key="date", value="2022-06", operator=FilterOperator.GTE),
                             MetadataFilter(key="date", value="2023", operator=FilterOperator.LT)]),
    MetadataFilters(filters=[MetadataFilter(key="lang", value="de"), MetadataFilter(key="year", value=2017, operator="<")],
                    condition=FilterCondition.OR),
    MetadataFilters(filters=[MetadataFilter(key="lang", value=["fr", "en"], operator=FilterOperator.IN),
                             MetadataFilter(key="year", value=2020, operator=FilterOperator.GTE)]),
], ids=["date-range", "date-window", "or", "in-and-gte"])
def test_filtered_retrieval(indexes, filters) -> None:
    ours, ref = (index.as_retriever(similarity_top_k=8, filters=filters) for index in indexes)
    got = ours.retrieve("topic 6")
    assert got  # the filter selects something, so the comparison means something
    same(got, ref.retrieve("topic 6"))


@pytest.mark.parametrize("threshold", [0.1, 0.5, 1.0])
def test_mmr_nodes_and_scores(indexes, threshold) -> None:
    kwargs = {"similarity_top_k": 5, "vector_store_query_mode": "mmr"}
    ours = indexes[0].as_retriever(**kwargs, vector_store_kwargs={"mmr_threshold": threshold, "mmr_prefetch_k": N})
    ref = indexes[1].as_retriever(**kwargs, vector_store_kwargs={"mmr_threshold": threshold})
    same(ours.retrieve("topic 2"), ref.retrieve("topic 2"))  # scores: LlamaIndex's MMR scores, as the reference


def test_mmr_threshold_zero_starts_from_the_most_similar_node(indexes) -> None:
    # At mmr_threshold=0 every first pick scores 0: SimpleVectorStore takes the first node it
    # stored, ours the most similar one (candidates come ranked), and the picks after it follow.
    kwargs = {"similarity_top_k": 3, "vector_store_query_mode": "mmr", "vector_store_kwargs": {"mmr_threshold": 0.0}}
    first = indexes[0].as_retriever(**kwargs).retrieve("topic 2")[0]
    best = indexes[0].as_retriever(similarity_top_k=1).retrieve("topic 2")[0]
    assert first.node.node_id == best.node.node_id and first.score == 0.0
    assert indexes[1].as_retriever(**kwargs).retrieve("topic 2")[0].node.ref_doc_id == "doc0"


def test_a_similarity_cutoff_tuned_on_the_reference_keeps_the_same_nodes(indexes) -> None:
    cut = scores(indexes[1].as_retriever(similarity_top_k=10).retrieve("topic 1"))[6]
    post = [SimilarityPostprocessor(similarity_cutoff=cut)]
    ours, ref = (index.as_retriever(similarity_top_k=N) for index in indexes)
    got = post[0].postprocess_nodes(ours.retrieve("topic 1"))
    assert len(got) == 7
    same(got, post[0].postprocess_nodes(ref.retrieve("topic 1")))


def test_delete_ref_doc_and_get_nodes(indexes) -> None:
    for index in indexes:
        index.delete_ref_doc("doc3", delete_from_docstore=True)
        index.insert(Document(text="a brand new passage", doc_id="new", metadata={"year": 2030, "date": "2030-01-01",
                                                                                 "lang": "en"}))
    ours, ref = (index.as_retriever(similarity_top_k=N) for index in indexes)
    same(ours.retrieve("brand new"), ref.retrieve("brand new"))
    flt = MetadataFilters(filters=[MetadataFilter(key="date", value="2025", operator=FilterOperator.GT)])
    want = {n.node.ref_doc_id for n in ref.retrieve("x") if n.node.metadata["date"] > "2025"}  # node ids differ
    assert {n.ref_doc_id for n in indexes[0].vector_store.get_nodes(filters=flt)} == want and "new" in want


def test_the_same_error_type_for_an_unknown_mode(indexes) -> None:
    for index in indexes:
        with pytest.raises(ValueError, match="mode"):
            index.vector_store.query(VectorStoreQuery(query_embedding=[1.0] * 32, mode="sparse"))


def test_similarity_top_k_zero_is_refused_where_the_reference_returns_everything(indexes) -> None:
    # SimpleVectorStore reads 0 as "no limit" (similarity_top_k or len(nodes)); that is not what k=0
    # says, so ours refuses it instead of guessing.
    query = VectorStoreQuery(query_embedding=[1.0] * 32, similarity_top_k=0)
    assert len(indexes[1].vector_store.query(query).ids) == N
    with pytest.raises(InvalidInputError, match="similarity_top_k"):
        indexes[0].vector_store.query(query)


def test_ingestion_pipeline_with_two_worker_processes(tmp_path, embed) -> None:
    # Regression (issue 20): an unpickled MRLEmbedding had no provider, so num_workers > 1 failed.
    docs = documents()[:24]
    results = []
    for store in (MRLVectorStore(tmp_path / "piped", dtype="float32"), SimpleVectorStore()):
        # Only the embedding: LlamaIndex's SentenceSplitter itself hangs a spawn pool here (its
        # tokenizer functions are dropped when pickled), with any vector store.
        pipeline = IngestionPipeline(transformations=[embed], vector_store=store)
        nodes = pipeline.run(documents=docs, num_workers=2)
        hits = store.query(VectorStoreQuery(query_embedding=embed.get_query_embedding("topic 4"), similarity_top_k=6))
        results.append((len(nodes), hits.ids, hits.similarities))  # the documents are the nodes: same ids
        if isinstance(store, MRLVectorStore):
            assert len(store.client) == len(nodes) == 24
            store.close()
    (n_ours, ids_ours, sims_ours), (n_ref, ids_ref, sims_ref) = results
    assert n_ours == n_ref and ids_ours == ids_ref and len(ids_ours) == 6
    assert np.allclose(sims_ours, sims_ref, atol=1e-5)


def test_nodes_added_directly_answer_like_the_reference() -> None:
    rng = np.random.default_rng(3)
    nodes = [TextNode(id_=f"n{i}", text=f"t{i}", embedding=rng.standard_normal(8).tolist(),
                      metadata={"when": f"2024-0{1 + i % 9}-01"}) for i in range(30)]  # fmt: skip
    ours, ref = MRLVectorStore(None, dtype="float32"), SimpleVectorStore()
    for store in (ours, ref):
        store.add(nodes)
    flt = MetadataFilters(filters=[MetadataFilter(key="when", value="2024-05-01", operator=FilterOperator.LT)])
    for query in (VectorStoreQuery(query_embedding=[1.0] * 8, similarity_top_k=7),
                  VectorStoreQuery(query_embedding=[1.0] * 8, similarity_top_k=7, filters=flt)):  # fmt: skip
        got, want = ours.query(query), ref.query(query)
        assert got.ids == want.ids and np.allclose(got.similarities, want.similarities, atol=1e-5)
    ours.close()
