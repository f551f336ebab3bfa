"""Every filter operator through the vector store, the retrievers and the async path, on the exact
and the coarse (HNSW) path; LangChain-style filters (structured-query IR, callables) translated or
refused."""

from __future__ import annotations

import pytest
from langchain_core.structured_query import Comparator, Comparison, Operation, Operator, StructuredQuery

from langchain_mrl import MRLRetriever, MRLVectorStore
from langchain_mrl._filters import MRLTranslator, to_mrl_filter
from mrl_retrievers.errors import FilterError, UnsupportedFilterError

DOCS = {
    "d0": ("getting started with the library", {"year": 2019, "lang": "en", "tags": ["faq", "intro"],
                                                 "title": "Getting Started", "draft": None}),
    "d1": ("advanced usage of the library", {"year": 2020, "lang": "de", "tags": ["guide"], "title": "Advanced Usage"}),
    "d2": ("frequently asked questions", {"year": 2021, "lang": "en", "tags": [], "title": "FAQ about filters",
                                          "rating": 4.5}),
    "d3": ("a guide to the street", {"year": 2022, "lang": "fr", "title": "Straße guide"}),
    "d4": ("miscellaneous notes", {"year": "unknown", "lang": "en", "tags": ["faq", "guide"], "title": "misc"}),
}

CASES = [
    ({"lang": "en"}, {"d0", "d2", "d4"}),
    ({"year": 2020.0}, {"d1"}),  # JSON equality: 2020 == 2020.0
    ({"lang": "en", "year": 2019}, {"d0"}),  # several keys: AND
    ({"lang": {"$eq": "en"}}, {"d0", "d2", "d4"}),
    ({"lang": {"$ne": "en"}}, {"d1", "d3"}),
    ({"rating": {"$ne": 4.5}}, {"d0", "d1", "d3", "d4"}),  # missing is "not equal"
    ({"year": {"$gt": 2020}}, {"d2", "d3"}),  # a string year never compares
    ({"year": {"$gte": 2020}}, {"d1", "d2", "d3"}),
    ({"year": {"$lt": 2020}}, {"d0"}),
    ({"year": {"$lte": 2020}}, {"d0", "d1"}),
    ({"year": {"$gt": 2019, "$lt": 2022}}, {"d1", "d2"}),
    ({"lang": {"$in": ["de", "fr"]}}, {"d1", "d3"}),
    ({"lang": {"$nin": ["de", "fr"]}}, {"d0", "d2", "d4"}),
    ({"tags": {"$contains": "faq"}}, {"d0", "d4"}),
    ({"title": {"$contains": "guide"}}, {"d3"}),  # substring of a string value
    ({"tags": {"$any": ["intro", "guide"]}}, {"d0", "d1", "d4"}),
    ({"tags": {"$all": ["faq", "guide"]}}, {"d4"}),
    ({"title": {"$text": "FAQ"}}, {"d2"}),
    ({"title": {"$text": "faq"}}, set()),
    ({"title": {"$itext": "faq"}}, {"d2"}),
    ({"title": {"$itext": "STRASSE"}}, {"d3"}),  # casefold
    ({"rating": {"$exists": True}}, {"d2"}),
    ({"tags": {"$exists": False}}, {"d3"}),
    ({"draft": {"$exists": True}}, {"d0"}),  # present even though null
    ({"tags": {"$empty": True}}, {"d2", "d3"}),
    ({"tags": {"$empty": False}}, {"d0", "d1", "d4"}),
    ({"$and": [{"lang": "en"}, {"year": {"$gte": 2020}}]}, {"d2"}),
    ({"$or": [{"lang": "de"}, {"tags": {"$contains": "faq"}}]}, {"d0", "d1", "d4"}),
    ({"$not": {"lang": "en"}}, {"d1", "d3"}),
    ({"$not": [{"lang": "en"}, {"lang": "de"}]}, {"d3"}),
    ({"$and": [{"$or": [{"lang": "en"}, {"lang": "fr"}]}, {"$not": {"tags": {"$contains": "faq"}}}]}, {"d2", "d3"}),
    ({}, set(DOCS)),
    (None, set(DOCS)),
]


@pytest.fixture
def filled(any_path_store: MRLVectorStore) -> MRLVectorStore:
    ids = list(DOCS)
    any_path_store.add_texts([DOCS[i][0] for i in ids], [DOCS[i][1] for i in ids], ids=ids)
    return any_path_store


@pytest.mark.parametrize(("flt", "expected"), CASES, ids=[str(c[0]) for c in CASES])
def test_every_operator_through_the_store(filled: MRLVectorStore, flt, expected) -> None:
    found = {d.id for d in filled.similarity_search("the library guide", k=10, filter=flt)}
    assert found == expected
    assert {d.id for d, _ in filled.similarity_search_with_relevance_scores("notes", k=10, filter=flt)} == expected
    assert {d.id for d in filled.max_marginal_relevance_search("notes", k=10, fetch_k=10, filter=flt)} == expected
    assert {d.id for d in filled.as_retriever(search_kwargs={"k": 10, "filter": flt}).invoke("faq")} == expected
    assert {d.id for d in MRLRetriever(vectorstore=filled, k=10, filter=flt).invoke("faq")} == expected


@pytest.mark.parametrize(("flt", "expected"), CASES[::3], ids=[str(c[0]) for c in CASES[::3]])
async def test_every_operator_async(filled: MRLVectorStore, flt, expected) -> None:
    assert {d.id for d in await filled.asimilarity_search("library", k=10, filter=flt)} == expected
    assert {d.id for d in await MRLRetriever(vectorstore=filled, k=10, filter=flt).ainvoke("x")} == expected


def test_filter_limits_then_ranks(filled: MRLVectorStore) -> None:
    """k applies after the filter: asking for 2 English documents gives 2, both English."""
    docs = filled.similarity_search("library", k=2, filter={"lang": "en"})
    assert len(docs) == 2 and all(d.metadata["lang"] == "en" for d in docs)


@pytest.mark.parametrize("flt", [
    {"lang": {"$regex": "e.*"}},  # an operator we do not have
    {"$nor": [{"lang": "en"}]},
    {"lang": {"$like": "%en%"}},
])
def test_unknown_operators_are_refused_never_ignored(filled: MRLVectorStore, flt) -> None:
    with pytest.raises(UnsupportedFilterError):
        filled.similarity_search("library", filter=flt)


@pytest.mark.parametrize("flt", [{"year": {"$gt": ["2020"]}}, {"tags": {"$any": "faq"}}, {"$and": []}, "lang = 'en'"])
def test_malformed_filters_raise_filter_error(filled: MRLVectorStore, flt) -> None:
    with pytest.raises(FilterError):
        filled.similarity_search("library", filter=flt)


def test_callable_filters_are_refused_with_advice(filled: MRLVectorStore) -> None:
    with pytest.raises(UnsupportedFilterError, match=r"pass a dict"):
        filled.similarity_search("library", filter=lambda doc: doc.metadata["lang"] == "en")


def test_sql_shaped_keys_are_data(filled: MRLVectorStore) -> None:
    for key in ["a'); DROP TABLE docs;--", 'quo"te']:
        try:
            assert filled.similarity_search("library", k=10, filter={key: 1}) == []
        except FilterError:
            pass  # a key SQLite's JSON paths cannot address is refused: also fine
    assert len(filled.similarity_search("library", k=10)) == len(DOCS)


# --- LangChain's structured-query IR --------------------------------------------------------------------


IR_CASES = [
    (Comparison(comparator=Comparator.EQ, attribute="lang", value="en"), {"lang": {"$eq": "en"}}),
    (Comparison(comparator=Comparator.NE, attribute="lang", value="en"), {"lang": {"$ne": "en"}}),
    (Comparison(comparator=Comparator.GT, attribute="year", value=2020), {"year": {"$gt": 2020}}),
    (Comparison(comparator=Comparator.GTE, attribute="year", value=2020), {"year": {"$gte": 2020}}),
    (Comparison(comparator=Comparator.LT, attribute="year", value=2020), {"year": {"$lt": 2020}}),
    (Comparison(comparator=Comparator.LTE, attribute="year", value=2020), {"year": {"$lte": 2020}}),
    (Comparison(comparator=Comparator.IN, attribute="lang", value=["de", "fr"]), {"lang": {"$in": ["de", "fr"]}}),
    (Comparison(comparator=Comparator.NIN, attribute="lang", value=["de"]), {"lang": {"$nin": ["de"]}}),
    (Comparison(comparator=Comparator.CONTAIN, attribute="tags", value="faq"), {"tags": {"$contains": "faq"}}),
    (Operation(operator=Operator.AND, arguments=[
        Comparison(comparator=Comparator.EQ, attribute="lang", value="en"),
        Comparison(comparator=Comparator.GTE, attribute="year", value=2020)]),
     {"$and": [{"lang": {"$eq": "en"}}, {"year": {"$gte": 2020}}]}),
    (Operation(operator=Operator.OR, arguments=[
        Comparison(comparator=Comparator.EQ, attribute="lang", value="de"),
        Comparison(comparator=Comparator.EQ, attribute="lang", value="fr")]),
     {"$or": [{"lang": {"$eq": "de"}}, {"lang": {"$eq": "fr"}}]}),
    (Operation(operator=Operator.NOT, arguments=[Comparison(comparator=Comparator.EQ, attribute="lang", value="en")]),
     {"$not": {"lang": {"$eq": "en"}}}),
]


@pytest.mark.parametrize(("ir", "expected"), IR_CASES, ids=[str(e) for _, e in IR_CASES])
def test_structured_query_ir_translates_to_the_same_results(filled: MRLVectorStore, ir, expected) -> None:
    assert to_mrl_filter(ir) == expected
    via_ir = {d.id for d in filled.similarity_search("library", k=10, filter=ir)}
    assert via_ir == {d.id for d in filled.similarity_search("library", k=10, filter=expected)}


def test_structured_query_and_like() -> None:
    query = StructuredQuery(query="apples", filter=Comparison(comparator=Comparator.EQ, attribute="a", value=1))
    assert query.accept(MRLTranslator()) == ("apples", {"filter": {"a": {"$eq": 1}}})
    assert StructuredQuery(query="x", filter=None).accept(MRLTranslator()) == ("x", {})
    with pytest.raises((UnsupportedFilterError, ValueError)):
        to_mrl_filter(Comparison(comparator=Comparator.LIKE, attribute="title", value="%faq%"))
