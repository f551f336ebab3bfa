"""Each pattern LangChain users write, run on ``MRLVectorStore`` and on the reference store in the same
test: the same documents, in the same order, with the same scores and the same errors (issue 20).

The reference is ``InMemoryVectorStore`` (exact cosine search). For relevance scores it has none
(``_select_relevance_score_fn`` raises ``NotImplementedError``), so relevance is compared with
``ChromaStyle``: the same store reporting Chroma's convention, a cosine *distance* turned into
relevance by LangChain's own ``_cosine_relevance_score_fn`` (1 - distance = the cosine). Ours keeps
float32 vectors and answers small stores exactly, so both rank by the same cosines.

Where the reference accepts something ambiguous (negative ``k``, ``lambda_mult`` outside [0, 1],
a callable filter), ours raises instead; those differences are pinned at the end.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.indexing import index
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_mrl import MRLEmbeddings, MRLVectorStore
from mrl_retrievers.errors import InvalidInputError, UnsupportedFilterError

N = 300
LANGS = ["en", "de", "fr"]


class ChromaStyle(InMemoryVectorStore):
    """InMemoryVectorStore answering as langchain-chroma does in cosine space: scores are cosine
    distances, relevance is ``_cosine_relevance_score_fn(distance)``."""

    def similarity_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        return [(doc, 1.0 - cos) for doc, cos in super().similarity_search_with_score(query, k, **kwargs)]

    def _select_relevance_score_fn(self):
        return self._cosine_relevance_score_fn


def corpus() -> tuple[list[str], list[dict], list[str]]:
    texts = [f"passage {i} about topic {i % 7}" for i in range(N)]
    metas = [{"year": 2015 + i % 11, "date": f"{2020 + i % 6}-{1 + i % 12:02d}-{1 + i % 28:02d}", "lang": LANGS[i % 3]}
             for i in range(N)]  # fmt: skip
    return texts, metas, [f"d{i}" for i in range(N)]


@pytest.fixture
def emb() -> MRLEmbeddings:
    return MRLEmbeddings("fake", dim=32)


@pytest.fixture
def pair(tmp_path, emb):
    """(ours, reference) holding the same corpus."""
    ours = MRLVectorStore(emb, tmp_path / "ours", dtype="float32")
    ref = ChromaStyle(emb)
    texts, metas, ids = corpus()
    ours.add_texts(texts, metas, ids=ids)
    ref.add_texts(texts, metas, ids=ids)
    yield ours, ref
    ours.close()


def same_docs(a: list[Document], b: list[Document]) -> None:
    assert [(d.id, d.page_content, d.metadata) for d in a] == [(d.id, d.page_content, d.metadata) for d in b]


def cosines(store: MRLVectorStore | ChromaStyle, query: str, k: int, **kwargs) -> list[tuple[str, float]]:
    scored = InMemoryVectorStore.similarity_search_with_score(store, query, k, **kwargs) if isinstance(
        store, ChromaStyle) else store.similarity_search_with_score(query, k, **kwargs)
    return [(d.id, s) for d, s in scored]


# --- similarity, scores, k ---------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, 1, 4, N + 5])
def test_similarity_search_documents_order_and_scores(pair, k) -> None:
    ours, ref = pair
    same_docs(ours.similarity_search("topic 3", k=k), ref.similarity_search("topic 3", k=k))
    got, want = cosines(ours, "topic 3", k), cosines(ref, "topic 3", k)
    assert [i for i, _ in got] == [i for i, _ in want]
    assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-5)  # raw scores: the cosine


def test_a_threshold_tuned_on_the_reference_selects_the_same_documents(pair) -> None:
    # Regression (issue 20): relevance was (1 + cos) / 2, so score_threshold=0.5 kept every document
    # with cos >= 0 (about half of them) where Chroma kept none.
    ours, ref = pair
    for query, threshold in [("what is the weather on mars", 0.5), ("topic 3", 0.5), ("topic 3", 0.25), ("passage 7", 0.1)]:
        kwargs = {"search_type": "similarity_score_threshold", "search_kwargs": {"k": N, "score_threshold": threshold}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the reference warns about its negative relevance scores
            expected = ref.as_retriever(**kwargs).invoke(query)
        same_docs(ours.as_retriever(**kwargs).invoke(query), expected)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        off_topic = ref.similarity_search_with_relevance_scores("what is the weather on mars", k=N, score_threshold=0.5)
    assert len(off_topic) < N // 20  # the threshold is selective on the reference, so the test can fail


def test_relevance_scores_equal_the_reference_where_it_is_in_range(pair) -> None:
    ours, ref = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = ref.similarity_search_with_relevance_scores("topic 5", k=N)
    got = ours.similarity_search_with_relevance_scores("topic 5", k=N)
    assert [d.id for d, _ in got] == [d.id for d, _ in want]
    # LangChain's contract is [0, 1]: ours clips the (rare) negative cosines the reference reports as is
    assert np.allclose([r for _, r in got], [min(1.0, max(0.0, r)) for _, r in want], atol=1e-5)


def test_mmr_knobs_under_search_type_similarity_are_ignored_like_the_reference(pair) -> None:
    ours, ref = pair
    kwargs = {"search_type": "similarity", "search_kwargs": {"k": 3, "fetch_k": 20, "lambda_mult": 0.3}}
    same_docs(ours.as_retriever(**kwargs).invoke("topic 1"), ref.as_retriever(**kwargs).invoke("topic 1"))


# --- MMR -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "fetch_k", "lambda_mult"), [(4, 20, 0.5), (5, 10, 0.0), (6, 6, 1.0), (5, 3, 0.5),
                                                           (0, 20, 0.5), (4, 0, 0.5)])
def test_mmr_documents_and_order(pair, k, fetch_k, lambda_mult) -> None:
    # (5, 3): fetch_k < k returns fetch_k documents, as the reference does (it returned k before)
    ours, ref = pair
    got = ours.max_marginal_relevance_search("topic 2", k=k, fetch_k=fetch_k, lambda_mult=lambda_mult)
    same_docs(got, ref.max_marginal_relevance_search("topic 2", k=k, fetch_k=fetch_k, lambda_mult=lambda_mult))
    retriever = {"search_type": "mmr", "search_kwargs": {"k": k, "fetch_k": fetch_k, "lambda_mult": lambda_mult}}
    same_docs(ours.as_retriever(**retriever).invoke("topic 2"), ref.as_retriever(**retriever).invoke("topic 2"))


async def test_async_paths_give_the_same_answers(pair) -> None:
    ours, ref = pair
    same_docs(await ours.asimilarity_search("topic 4", k=5), await ref.asimilarity_search("topic 4", k=5))
    same_docs(await ours.amax_marginal_relevance_search("topic 4", k=3, fetch_k=2),
              await ref.amax_marginal_relevance_search("topic 4", k=3, fetch_k=2))
    same_docs(await ours.aget_by_ids(["d3", "nope", "d1"]), await ref.aget_by_ids(["d3", "nope", "d1"]))


# --- filters: our dict beside the reference's callable ----------------------------------------------


@pytest.mark.parametrize(("flt", "predicate"), [
    ({"year": {"$gte": 2020}}, lambda d: d.metadata["year"] >= 2020),
    ({"date": {"$gte": "2024-01-01"}}, lambda d: d.metadata["date"] >= "2024-01-01"),  # string range (issue 20)
    ({"date": {"$gte": "2022-06", "$lt": "2023"}, "lang": "de"},
     lambda d: "2022-06" <= d.metadata["date"] < "2023" and d.metadata["lang"] == "de"),
    ({"$or": [{"lang": "fr"}, {"year": {"$lt": 2016}}]}, lambda d: d.metadata["lang"] == "fr" or d.metadata["year"] < 2016),
])
def test_filters_select_what_the_reference_predicate_selects(pair, flt, predicate) -> None:
    ours, ref = pair
    same_docs(ours.similarity_search("topic 6", k=10, filter=flt), ref.similarity_search("topic 6", k=10, filter=predicate))
    same_docs(ours.max_marginal_relevance_search("topic 6", k=4, fetch_k=12, filter=flt),
              ref.max_marginal_relevance_search("topic 6", k=4, fetch_k=12, filter=predicate))
    same_docs(ours.get_by_filter(flt), [d for d in ref.get_by_ids([f"d{i}" for i in range(N)]) if predicate(d)])


# --- writes: upsert, delete, get ----------------------------------------------------------------------


def test_upsert_delete_and_get_by_ids(pair) -> None:
    ours, ref = pair
    for store in pair:
        store.add_texts(["replaced text"], [{"year": 1999, "date": "1999-01-01", "lang": "xx"}], ids=["d5"])
        store.delete(["d6", "unknown"])
    same_docs(ours.get_by_ids(["d5", "d6", "d7"]), ref.get_by_ids(["d5", "d6", "d7"]))
    same_docs(ours.similarity_search("replaced text", k=3), ref.similarity_search("replaced text", k=3))
    assert len(ours.store) == len(ref.store) == N - 1


def test_delete_by_filter_matches_deleting_the_reference_predicates_ids(pair) -> None:
    ours, ref = pair
    ours.delete(filter={"lang": "de", "year": {"$gte": 2020}})
    ref.delete([d.id for d in ref.get_by_ids([f"d{i}" for i in range(N)])
                if d.metadata["lang"] == "de" and d.metadata["year"] >= 2020])
    same_docs(ours.similarity_search("topic 0", k=N), ref.similarity_search("topic 0", k=N))
    ours.delete(["d1", "d2", "d4"], filter={"lang": "de"})  # both: only the ids that match (d1, d4)
    ref.delete(["d1", "d4"])
    assert sorted(ours.store.ids()) == sorted(ref.store)


def test_the_indexing_api_with_sql_record_manager_step_by_step(tmp_path, emb) -> None:
    sql = pytest.importorskip("langchain_classic.indexes")
    ours = MRLVectorStore(emb, tmp_path / "indexed", dtype="float32")
    ref = InMemoryVectorStore(emb)
    managers = {}
    for name in ("ours", "ref"):
        managers[name] = sql.SQLRecordManager(f"mrl/{name}", db_url=f"sqlite:///{tmp_path / name}.sqlite")
        managers[name].create_schema()

    def docs(version: int, count: int = 7) -> list[Document]:
        out = [Document(page_content=f"chunk {i} of file {i % 3}", metadata={"source": f"f{i % 3}.txt"}) for i in range(count)]
        if version and count > 4:
            out[4] = Document(page_content=f"chunk 4 rewritten v{version}", metadata={"source": "f1.txt"})
        return out

    steps = [(docs(0), "incremental"), (docs(1), "incremental"), (docs(1, 2), "full"), (docs(2), "full"),
             (docs(2), "incremental"), (docs(3)[:5], "incremental")]  # fmt: skip
    for batch, cleanup in steps:
        results = [index(batch, managers[name], store, cleanup=cleanup, source_id_key="source", key_encoder="sha256")
                   for name, store in (("ours", ours), ("ref", ref))]
        assert results[0] == results[1], (cleanup, results)
        keys = managers["ours"].list_keys()
        # issue 20 item 6: len(store) must be the record manager's key count after every run
        assert len(ours.store) == len(ref.store) == len(keys) == len(managers["ref"].list_keys())
        assert sorted(ours.store.ids()) == sorted(keys)
        same_docs(ours.similarity_search("chunk", k=20), ref.similarity_search("chunk", k=20))
    ours.close()


# --- deliberate differences: the reference accepts what has no clear meaning ---------------------------


def test_inputs_without_a_clear_meaning_raise_where_the_reference_guesses(pair) -> None:
    ours, ref = pair
    assert len(ref.similarity_search("topic 1", k=-1)) == N - 1  # a negative slice
    with pytest.raises(InvalidInputError, match="k must be a non-negative integer"):
        ours.similarity_search("topic 1", k=-1)
    assert len(ref.max_marginal_relevance_search("topic 1", k=3, lambda_mult=2.0)) == 3
    with pytest.raises(InvalidInputError, match="lambda_mult"):
        ours.max_marginal_relevance_search("topic 1", k=3, lambda_mult=2.0)
    with pytest.raises(UnsupportedFilterError, match="callable"):
        ours.similarity_search("topic 1", filter=lambda d: True)


def test_the_same_error_type_for_mismatched_lists(pair) -> None:
    for store in pair:
        with pytest.raises(ValueError, match="metadatas"):
            store.add_texts(["a", "b"], metadatas=[{}])


def test_delete_without_ids_follows_the_base_class_contract(pair) -> None:
    # VectorStore.delete: "ids: List of ids to delete. If None, delete all." InMemoryVectorStore
    # deletes nothing there; ours does what the base class documents.
    ours, ref = pair
    ref.delete()
    assert len(ref.store) == N
    assert ours.delete() is True
    assert len(ours.store) == 0 and ours.similarity_search("topic 1") == []
