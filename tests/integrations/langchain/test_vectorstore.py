"""MRLVectorStore beyond the standard suite: scores, relevance, thresholds, MMR, writes, unknown
embeddings, sync == async. (Filters, persistence and recall have their own modules.)"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from langchain_mrl import MRLEmbeddings, MRLVectorStore
from mrl_retrievers.errors import InvalidInputError, SpecMismatchError, StoreClosedError

from .conftest import DIM, TableEmbeddings

TEXTS = [
    "red apple pie with cinnamon",
    "green apple tart",
    "blue whale song in the ocean",
    "the ocean is deep and blue",
    "a recipe for cherry pie",
    "whales and dolphins are mammals",
    "an apple a day keeps the doctor away",
    "deep learning for protein folding",
]


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# --- scores and relevance ----------------------------------------------------------------------------


def test_scores_are_full_vector_cosines_descending(any_path_store: MRLVectorStore, fake_embeddings) -> None:
    ids = any_path_store.add_texts(TEXTS)
    got = any_path_store.similarity_search_with_score("apple pie", k=len(TEXTS))
    docs = np.asarray(fake_embeddings.embed_documents(TEXTS))
    query = np.asarray(fake_embeddings.embed_query("apple pie"))
    expected = dict(zip(ids, docs @ query))
    assert [d.id for d, _ in got] == sorted(ids, key=lambda i: -expected[i])
    for doc, score in got:
        assert isinstance(score, float)
        assert score == pytest.approx(expected[doc.id], abs=2e-3)  # float16 storage
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)


def test_relevance_is_the_cosine_clipped_to_unit_interval_and_keeps_the_ranking(vectorstore: MRLVectorStore) -> None:
    # Issue 20: relevance is the cosine, as Chroma (cosine space) and InMemoryVectorStore's scores are,
    # so thresholds carry over; it was (1 + cos) / 2 before.
    vectorstore.add_texts(TEXTS)
    with_score = vectorstore.similarity_search_with_score("ocean whale", k=5)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Relevance scores")  # LangChain warns when relevance leaves [0, 1]
        relevance = vectorstore.similarity_search_with_relevance_scores("ocean whale", k=5)
    assert [d.id for d, _ in relevance] == [d.id for d, _ in with_score]
    for (_, cos), (_, rel) in zip(with_score, relevance):
        assert rel == pytest.approx(max(0.0, cos))
        assert 0.0 <= rel <= 1.0
    fn = vectorstore._select_relevance_score_fn()
    assert (fn(-1.0), fn(-0.2), fn(0.0), fn(0.3), fn(1.0)) == (0.0, 0.0, 0.0, 0.3, 1.0)
    assert fn(1.0000001) == 1.0 and fn(-1.0000001) == 0.0  # rounding never leaves [0, 1]


async def test_relevance_async_matches_sync(vectorstore: MRLVectorStore) -> None:
    await vectorstore.aadd_texts(TEXTS)
    sync = vectorstore.similarity_search_with_relevance_scores("apple", k=4)
    asyn = await vectorstore.asimilarity_search_with_relevance_scores("apple", k=4)
    assert sync == asyn


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.6, 0.75, 1.0])
def test_score_threshold_keeps_exactly_the_relevant(vectorstore: MRLVectorStore, threshold: float) -> None:
    vectorstore.add_texts(TEXTS)
    everything = vectorstore.similarity_search_with_score("apple pie", k=len(TEXTS))
    expected = [d.id for d, cos in everything if cos >= threshold]  # a minimum cosine, as Chroma compares it
    kept = vectorstore.similarity_search_with_relevance_scores("apple pie", k=len(TEXTS), score_threshold=threshold)
    assert [d.id for d, _ in kept] == expected
    # the same threshold through the plain search and both retriever flavours
    assert [d.id for d in vectorstore.similarity_search("apple pie", k=len(TEXTS), score_threshold=threshold)] == expected
    for retriever in (
        vectorstore.as_retriever(search_kwargs={"k": len(TEXTS), "score_threshold": threshold}),
        vectorstore.as_retriever(search_type="similarity_score_threshold",
                                 search_kwargs={"k": len(TEXTS), "score_threshold": float(threshold)}),
    ):
        assert [d.id for d in retriever.invoke("apple pie")] == expected


@pytest.mark.parametrize("bad", [-1.5, 1.5, "0.5", True])
def test_score_threshold_out_of_range_is_rejected(vectorstore: MRLVectorStore, bad) -> None:
    vectorstore.add_texts(TEXTS)
    with pytest.raises(InvalidInputError, match="score_threshold"):
        vectorstore.similarity_search("apple", score_threshold=bad)


def test_unknown_search_argument_is_a_type_error_not_a_silent_no_op(vectorstore: MRLVectorStore) -> None:
    vectorstore.add_texts(TEXTS, metadatas=[{"i": i} for i in range(len(TEXTS))])
    with pytest.raises(TypeError, match="filters"):
        vectorstore.similarity_search("apple", filters={"i": 1})


# --- maximal marginal relevance -----------------------------------------------------------------------


def _mmr_fixture(tmp_path) -> tuple[MRLVectorStore, TableEmbeddings]:
    e = np.eye(8, dtype=np.float32)
    table = {
        "q": e[0],
        "a": unit(e[0] + 0.3 * e[1]),  # cos 0.958 to q
        "a-dup": unit(e[0] + 0.32 * e[1]),  # cos 0.952 to q, 0.9998 to a: redundant
        "b": unit(e[0] + 0.4 * e[2]),  # cos 0.928 to q, 0.889 to a: relevant and different
        "far": e[3],  # unrelated; with lambda_mult < 0.5 unrelatedness wins
    }
    emb = TableEmbeddings(table)
    vs = MRLVectorStore(emb, tmp_path / "mmr", dtype="float32")
    vs.add_texts(["a", "a-dup", "b", "far"], ids=["a", "a-dup", "b", "far"])
    return vs, emb


def test_mmr_trades_relevance_for_diversity(tmp_path) -> None:
    vs, _ = _mmr_fixture(tmp_path)
    assert [d.id for d in vs.similarity_search("q", k=2)] == ["a", "a-dup"]
    assert [d.id for d in vs.max_marginal_relevance_search("q", k=2, lambda_mult=1.0)] == ["a", "a-dup"]
    assert [d.id for d in vs.max_marginal_relevance_search("q", k=2, lambda_mult=0.5)] == ["a", "b"]
    assert [d.id for d in vs.max_marginal_relevance_search("q", k=2, lambda_mult=0.25)] == ["a", "far"]
    # fetch_k bounds the candidates: with only the two nearest, diversity has nothing to pick from
    assert [d.id for d in vs.max_marginal_relevance_search("q", k=2, fetch_k=2, lambda_mult=0.5)] == ["a", "a-dup"]
    assert [d.id for d in vs.max_marginal_relevance_search("q", k=10, fetch_k=10)] != []
    assert len(vs.max_marginal_relevance_search("q", k=10, fetch_k=10)) == 4  # k above the store is fine
    with pytest.raises(InvalidInputError, match="lambda_mult"):
        vs.max_marginal_relevance_search("q", lambda_mult=1.5)
    vs.close()


async def test_mmr_async_and_by_vector_match_sync(tmp_path) -> None:
    vs, emb = _mmr_fixture(tmp_path)
    sync = vs.max_marginal_relevance_search("q", k=3, lambda_mult=0.3)
    assert [d.id for d in await vs.amax_marginal_relevance_search("q", k=3, lambda_mult=0.3)] == [d.id for d in sync]
    vector = emb.embed_query("q")
    assert vs.max_marginal_relevance_search_by_vector(vector, k=3, lambda_mult=0.3) == sync
    assert await vs.amax_marginal_relevance_search_by_vector(vector, k=3, lambda_mult=0.3) == sync
    vs.close()


def test_mmr_with_filter_and_as_retriever(tmp_path) -> None:
    vs, _ = _mmr_fixture(tmp_path)
    docs = vs.max_marginal_relevance_search("q", k=2, lambda_mult=0.5, filter={"$or": [{"kind": {"$exists": False}}]})
    assert [d.id for d in docs] == ["a", "b"]  # a filter on every item changes nothing
    vs.add_texts(["b"], metadatas=[{"kind": "x"}], ids=["b"])
    assert [d.id for d in vs.max_marginal_relevance_search("q", k=2, filter={"kind": "x"})] == ["b"]
    retriever = vs.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 4, "lambda_mult": 0.5})
    assert [d.id for d in retriever.invoke("q")] == ["a", "b"]
    vs.close()


@pytest.mark.parametrize("lambda_mult", [0.0, 0.3, 0.5, 0.9, 1.0])
def test_mmr_matches_langchain_reference_on_full_vectors(tmp_path, rng, lambda_mult: float) -> None:
    """MMR diversity is measured on the full vectors (the store keeps a 4-wide prefix only for the
    coarse stage): the picks equal LangChain's reference MMR over the full table vectors."""
    n, dim, fetch_k = 60, DIM, 25
    vectors = unit(rng.standard_normal((n + 1, dim))).astype(np.float32)
    texts = [f"t{i}" for i in range(n)]
    table = dict(zip(texts + ["query"], vectors))
    vs = MRLVectorStore(TableEmbeddings(table), tmp_path / "ref", prefix_dim=4, dtype="float32")
    vs.add_texts(texts, ids=texts)
    query = vectors[-1]
    order = np.argsort(-(vectors[:n] @ query), kind="stable")[:fetch_k]
    expected = [texts[order[i]] for i in maximal_marginal_relevance(query, vectors[order].tolist(), lambda_mult, k=6)]
    got = vs.max_marginal_relevance_search("query", k=6, fetch_k=fetch_k, lambda_mult=lambda_mult)
    assert [d.id for d in got] == expected
    vs.close()


# --- writes, ids, get_by_ids, delete ----------------------------------------------------------------------


def test_add_texts_ids_default_to_uuid4_and_upsert(vectorstore: MRLVectorStore) -> None:
    ids = vectorstore.add_texts(["one", "two"])
    assert len(set(ids)) == 2 and all(len(i) == 36 and i.count("-") == 4 for i in ids)
    mixed = vectorstore.add_texts(["three", "four"], ids=["x", None])
    assert mixed[0] == "x" and len(mixed[1]) == 36
    vectorstore.add_texts(["three again"], metadatas=[{"v": 2}], ids=["x"])
    assert len(vectorstore.store) == 4
    assert vectorstore.get_by_ids(["x"]) == [Document(id="x", page_content="three again", metadata={"v": 2})]


def test_get_by_ids_in_the_order_asked_and_missing_skipped(vectorstore: MRLVectorStore) -> None:
    vectorstore.add_texts(["a", "b", "c"], metadatas=[{"n": 1}, {"n": 2}, {"n": 3}], ids=["1", "2", "3"])
    got = vectorstore.get_by_ids(["3", "nope", "1"])
    assert got == [Document(id="3", page_content="c", metadata={"n": 3}), Document(id="1", page_content="a", metadata={"n": 1})]
    assert vectorstore.get_by_ids([]) == []


def test_delete(vectorstore: MRLVectorStore) -> None:
    vectorstore.add_texts(["a", "b", "c"], ids=["1", "2", "3"])
    assert vectorstore.delete(["1", "unknown"]) is True
    assert {d.id for d in vectorstore.similarity_search("a", k=10)} == {"2", "3"}
    assert vectorstore.delete([]) is True and len(vectorstore.store) == 2
    assert vectorstore.delete() is True  # no ids: every document, as the base class specifies (issue 17)
    assert len(vectorstore.store) == 0 and vectorstore.store.ids() == []
    with pytest.raises(TypeError):
        vectorstore.delete(["2"], where={"x": 1})


async def test_adelete_and_aget_by_ids(vectorstore: MRLVectorStore) -> None:
    await vectorstore.aadd_texts(["a", "b"], ids=["1", "2"])
    await vectorstore.adelete(["1"])
    assert [d.id for d in await vectorstore.aget_by_ids(["1", "2"])] == ["2"]


def test_callers_documents_and_metadata_are_not_mutated(vectorstore: MRLVectorStore) -> None:
    meta = {"tags": ["a"], "nested": {"k": 1}}
    doc = Document(page_content="apple", metadata=meta)
    ids = vectorstore.add_documents([doc])
    assert doc.id is None and doc.metadata == {"tags": ["a"], "nested": {"k": 1}}
    found = vectorstore.similarity_search("apple", k=1)[0]
    found.metadata["tags"].append("changed")
    assert vectorstore.get_by_ids(ids)[0].metadata == {"tags": ["a"], "nested": {"k": 1}}


def test_add_documents_uses_document_ids(vectorstore: MRLVectorStore) -> None:
    ids = vectorstore.add_documents([Document(id="mine", page_content="x"), Document(page_content="y")])
    assert ids[0] == "mine" and len(ids[1]) == 36


def test_bad_input_is_typed(vectorstore: MRLVectorStore) -> None:
    with pytest.raises(InvalidInputError):
        vectorstore.add_texts(["a", "b"], metadatas=[{}])
    with pytest.raises(InvalidInputError):
        vectorstore.add_texts(["a", "b"], ids=["1"])
    with pytest.raises(InvalidInputError):
        vectorstore.add_texts(["a"], metadatas=[{"bad": b"bytes"}])
    with pytest.raises(TypeError):
        vectorstore.add_texts(["a"], unknown_option=1)
    assert vectorstore.add_texts([]) == []
    assert vectorstore.store is None  # refused first calls created nothing


def test_batch_size_splits_provider_calls_and_transactions(fake_embeddings: MRLEmbeddings) -> None:
    vs = MRLVectorStore(fake_embeddings)
    before = fake_embeddings.client.calls
    vs.add_texts([f"text {i}" for i in range(5)], batch_size=2)
    assert fake_embeddings.client.calls - before == 3
    assert len(vs.store) == 5
    with pytest.raises(InvalidInputError, match="batch_size"):
        vs.add_texts(["x"], batch_size=0)
    vs.close()


# --- constructors -----------------------------------------------------------------------------------------


def test_from_texts_and_from_documents(tmp_path, fake_embeddings: MRLEmbeddings) -> None:
    vs = MRLVectorStore.from_texts(["a cat", "a dog"], fake_embeddings, metadatas=[{"n": 1}, {"n": 2}], ids=["c", "d"],
                                   store=tmp_path / "t", prefix_dim=8)
    assert vs.get_by_ids(["c", "d"]) == [Document(id="c", page_content="a cat", metadata={"n": 1}),
                                         Document(id="d", page_content="a dog", metadata={"n": 2})]
    assert vs.store.prefix_dim == 8 and vs.store.path == tmp_path / "t"
    docs = [Document(id="x", page_content="a fish", metadata={"n": 3}), Document(page_content="a bird")]
    vs2 = MRLVectorStore.from_documents(docs, fake_embeddings, shortlist=50)
    assert vs2.get_by_ids(["x"]) == [Document(id="x", page_content="a fish", metadata={"n": 3})]
    assert len(vs2.store) == 2 and vs2.shortlist == 50
    vs.close(), vs2.close()


async def test_afrom_texts_and_afrom_documents(fake_embeddings: MRLEmbeddings) -> None:
    vs = await MRLVectorStore.afrom_texts(["a cat", "a dog"], fake_embeddings, ids=["c", "d"])
    assert [d.id for d in await vs.asimilarity_search("cat", k=1)] == ["c"]
    vs2 = await MRLVectorStore.afrom_documents([Document(id="x", page_content="a fish")], fake_embeddings)
    assert await vs2.aget_by_ids(["x"]) == [Document(id="x", page_content="a fish")]
    vs.close(), vs2.close()


def test_unknown_store_option_is_a_type_error(fake_embeddings: MRLEmbeddings) -> None:
    with pytest.raises(TypeError, match="prefix_dimm"):
        MRLVectorStore(fake_embeddings, prefix_dimm=64)


# --- embeddings the package does not know -----------------------------------------------------------------


def test_unknown_embeddings_learn_the_width_renormalize_and_record_a_spec(tmp_path) -> None:
    rng = np.random.default_rng(7)
    table = {t: rng.standard_normal(12).astype(np.float32) for t in ["a", "b", "c", "q"]}
    emb = TableEmbeddings(table, scale=5.0)  # long vectors: they must be renormalized
    vs = MRLVectorStore(emb, tmp_path / "u")
    assert vs.store is None  # the width is not known before the first vector
    assert vs.similarity_search("q") == [] and emb.query_calls == 0  # an empty store costs no embedding
    vs.add_texts(["a", "b", "c"], ids=["a", "b", "c"])
    assert vs.store.full_dim == 12
    spec = vs.store.spec
    assert (spec.provider, spec.model, spec.dim) == ("langchain:TableEmbeddings", "TableEmbeddings", 12)
    scores = dict((d.id, s) for d, s in vs.similarity_search_with_score("q", k=3))
    q = unit(table["q"])
    for key, score in scores.items():
        assert score == pytest.approx(float(unit(table[key]) @ q), abs=2e-3) and -1 <= score <= 1
    vs.close()


def test_a_model_attribute_names_the_spec() -> None:
    class NamedEmbedding(DeterministicFakeEmbedding):
        model: str = "my-model-v2"

    vs = MRLVectorStore(NamedEmbedding(size=6))
    vs.add_texts(["x"])
    assert (vs.store.spec.provider, vs.store.spec.model) == ("langchain:NamedEmbedding", "my-model-v2")
    vs.close()


def test_another_embedding_cannot_be_mixed_into_a_store(tmp_path) -> None:
    path = tmp_path / "s"
    first = MRLVectorStore(DeterministicFakeEmbedding(size=6), path)
    first.add_texts(["x"])
    first.close()
    with pytest.raises(SpecMismatchError):
        MRLVectorStore(MRLEmbeddings("fake", dim=6), path)
    other = MRLVectorStore(TableEmbeddings({"y": np.ones(6, np.float32)}), path)
    with pytest.raises(SpecMismatchError):
        other.add_texts(["y"])
    other.close()


def test_a_closed_vectorstore_store_is_closed(fake_embeddings) -> None:
    vs = MRLVectorStore(fake_embeddings)
    vs.add_texts(["a"])
    vs.close()
    with pytest.raises(StoreClosedError):
        vs.similarity_search("a")


# --- sync == async ------------------------------------------------------------------------------------------


async def test_sync_and_async_give_identical_results(tmp_path) -> None:
    meta = [{"i": i, "even": i % 2 == 0} for i in range(len(TEXTS))]
    ids = [f"id{i}" for i in range(len(TEXTS))]
    sync_vs = MRLVectorStore(MRLEmbeddings("fake", dim=DIM), tmp_path / "sync", exact_below=0)
    async_vs = MRLVectorStore(MRLEmbeddings("fake", dim=DIM), tmp_path / "async", exact_below=0)
    sync_vs.add_texts(TEXTS, meta, ids=ids)
    await async_vs.aadd_texts(TEXTS, meta, ids=ids)
    for query in ["apple", "ocean whales", "deep protein"]:
        for kwargs in ({}, {"filter": {"even": True}}, {"shortlist": 3}, {"score_threshold": 0.55}):
            expected = sync_vs.similarity_search_with_score(query, k=5, **kwargs)
            assert await async_vs.asimilarity_search_with_score(query, k=5, **kwargs) == expected
            assert await sync_vs.asimilarity_search_with_score(query, k=5, **kwargs) == expected
            assert async_vs.similarity_search_with_score(query, k=5, **kwargs) == expected
        assert (await async_vs.amax_marginal_relevance_search(query, k=3)
                == sync_vs.max_marginal_relevance_search(query, k=3))
    assert sync_vs.store.get(ids, include_vectors=True)[0].vector.tolist() == \
        async_vs.store.get(ids, include_vectors=True)[0].vector.tolist()
    sync_vs.close(), async_vs.close()
