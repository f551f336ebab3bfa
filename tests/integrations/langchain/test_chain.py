"""An LCEL RAG chain (retriever | prompt | fake chat model | parser), sync and async, with filters."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from langchain_mrl import MRLEmbeddings, MRLRetriever, MRLVectorStore

DOCS = [
    Document(page_content="Matryoshka embeddings front-load meaning into the first dimensions.",
             metadata={"source": "mrl.md", "lang": "en"}),
    Document(page_content="A coarse HNSW search on the prefix returns a shortlist.",
             metadata={"source": "design.md", "lang": "en"}),
    Document(page_content="Die Kandidaten werden mit den vollen Vektoren neu bewertet.",
             metadata={"source": "design.md", "lang": "de"}),
    Document(page_content="Full vectors live in a memory-mapped file on disk.",
             metadata={"source": "store.md", "lang": "en"}),
]


class PromptRecorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.prompts: list[str] = []

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[Any]], **kwargs: Any) -> None:
        self.prompts.append("\n".join(m.content for m in messages[0]))


def format_docs(docs: list[Document]) -> str:
    return "\n".join(f"[{d.metadata['source']}] {d.page_content}" for d in docs)


def build_chain(retriever):
    prompt = ChatPromptTemplate.from_messages([
        ("system", "Answer using only this context:\n{context}"),
        ("human", "{question}"),
    ])
    llm = FakeListChatModel(responses=["Prefix search, then a full-vector rerank."])
    return {"context": retriever | RunnableLambda(format_docs), "question": RunnablePassthrough()} | prompt | llm | StrOutputParser()


@pytest.fixture
def store(tmp_path):
    vs = MRLVectorStore.from_documents(DOCS, MRLEmbeddings("fake", dim=32), store=tmp_path / "rag", exact_below=0)
    yield vs
    vs.close()


@pytest.mark.parametrize("make_retriever", [
    lambda vs: vs.as_retriever(search_kwargs={"k": 3, "filter": {"source": "design.md"}}),
    lambda vs: MRLRetriever(vectorstore=vs, k=3, filter={"source": {"$in": ["design.md"]}}),
], ids=["as_retriever", "MRLRetriever"])
async def test_rag_chain_sync_and_async_with_filter(store: MRLVectorStore, make_retriever) -> None:
    chain = build_chain(make_retriever(store))
    recorder = PromptRecorder()
    question = "How are the candidates rescored?"
    answer = chain.invoke(question, config={"callbacks": [recorder]})
    assert answer == "Prefix search, then a full-vector rerank."
    aanswer = await chain.ainvoke(question, config={"callbacks": [recorder]})
    assert aanswer == answer
    sync_prompt, async_prompt = recorder.prompts
    assert sync_prompt == async_prompt  # the same documents reached the model both ways
    assert "[design.md]" in sync_prompt and "[mrl.md]" not in sync_prompt and "[store.md]" not in sync_prompt
    assert question in sync_prompt


async def test_rag_chain_filter_by_language_and_batch(store: MRLVectorStore) -> None:
    retriever = MRLRetriever(vectorstore=store, k=4, filter={"lang": "en"})
    recorder = PromptRecorder()
    chain = build_chain(retriever)
    questions = ["What is MRL?", "Where do full vectors live?"]
    chain.batch(questions, config={"callbacks": [recorder]})
    await chain.abatch(questions, config={"callbacks": [recorder]})
    assert len(recorder.prompts) == 4
    assert all("Kandidaten" not in p and p.count("[") == 3 for p in recorder.prompts)
