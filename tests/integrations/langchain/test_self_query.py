"""Self-query end to end: ``SelfQueryRetriever.from_llm`` with a fake LLM that writes comparisons,
``and``/``or`` and dates, through the exported ``MRLTranslator`` (issue 20). Each answer is compared
with ``InMemoryVectorStore`` searched with the equivalent Python predicate.

Without ``structured_query_translator=`` LangChain looks the store's class up in langchain-community's
list of built-in translators, which cannot know it: that is why the translator is exported."""

from __future__ import annotations

import json

import pytest
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_mrl import MRLEmbeddings, MRLTranslator, MRLVectorStore

self_query = pytest.importorskip("langchain_classic.retrievers.self_query.base")
schema = pytest.importorskip("langchain_classic.chains.query_constructor.schema")
pytest.importorskip("lark")  # the query constructor's output parser

FIELDS = [
    schema.AttributeInfo(name="year", description="year the passage was written", type="integer"),
    schema.AttributeInfo(name="date", description="publication date, ISO 8601", type="date"),
    schema.AttributeInfo(name="lang", description="language code: en, de or fr", type="string"),
]
LANGS = ["en", "de", "fr"]


def _llm_answer(query: str, flt: str, limit: int | None = None) -> str:
    body = {"query": query, "filter": flt} if limit is None else {"query": query, "filter": flt, "limit": limit}
    return "```json\n" + json.dumps(body) + "\n```"


CASES = [
    ('gte("year", 2020)', None, lambda m: m["year"] >= 2020),
    ('and(gte("date", "2024-01-01"), lt("date", "2025-01-01"))', None,  # quoted ISO dates parse as dates
     lambda m: "2024-01-01" <= m["date"] < "2025-01-01"),
    ('or(eq("lang", "de"), and(lt("year", 2017), ne("lang", "en")))', None,
     lambda m: m["lang"] == "de" or (m["year"] < 2017 and m["lang"] != "en")),
    ('and(in("lang", ["fr", "de"]), gt("date", "2023-06-30"))', 2,
     lambda m: m["lang"] in ("fr", "de") and m["date"] > "2023-06-30"),
    ("NO_FILTER", None, lambda m: True),
]


@pytest.fixture
def stores(tmp_path):
    emb = MRLEmbeddings("fake", dim=32)
    ours = MRLVectorStore(emb, tmp_path / "sq", dtype="float32")
    ref = InMemoryVectorStore(emb)
    texts = [f"passage {i} about topic {i % 7}" for i in range(120)]
    metas = [{"year": 2015 + i % 11, "date": f"{2020 + i % 6}-{1 + i % 12:02d}-{1 + i % 28:02d}", "lang": LANGS[i % 3]}
             for i in range(120)]  # fmt: skip
    for store in (ours, ref):
        store.add_texts(texts, metas, ids=[f"d{i}" for i in range(120)])
    yield ours, ref
    ours.close()


@pytest.mark.parametrize(("flt", "limit", "predicate"), CASES, ids=[c[0] for c in CASES])
async def test_self_query_end_to_end_matches_the_reference(stores, flt, limit, predicate) -> None:
    ours, ref = stores
    llm = FakeListLLM(responses=[_llm_answer("topic 3", flt, limit)] * 2)
    retriever = self_query.SelfQueryRetriever.from_llm(
        llm, ours, "short passages", FIELDS, structured_query_translator=MRLTranslator(), enable_limit=True,
    )
    got = retriever.invoke("passages about topic 3 (the fake LLM decides the filter)")
    want = ref.similarity_search("topic 3", k=limit or 4, filter=lambda d: predicate(d.metadata))
    assert [(d.id, d.metadata) for d in got] == [(d.id, d.metadata) for d in want]
    assert got and all(predicate(d.metadata) for d in got)
    assert [d.id for d in await retriever.ainvoke("the same question, async")] == [d.id for d in got]


def test_the_translator_turns_dates_into_iso_strings() -> None:
    parser = pytest.importorskip("langchain_classic.chains.query_constructor.parser")
    ir = parser.get_parser().parse('and(gte("date", "2024-01-01"), lt("when", "2024-01-01T10:00:00"))')
    assert ir.arguments[0].value == {"date": "2024-01-01", "type": "date"}  # what the translator receives
    assert ir.accept(MRLTranslator()) == {"$and": [{"date": {"$gte": "2024-01-01"}}, {"when": {"$lt": "2024-01-01T10:00:00"}}]}
