"""LangChain integration for mrl-retrievers: coarse-to-fine retrieval over Matryoshka embeddings.

Swap ``InMemoryVectorStore``, FAISS or Chroma for ``MRLVectorStore`` by changing one line::

    from langchain_mrl import MRLEmbeddings, MRLVectorStore

    store = MRLVectorStore(MRLEmbeddings("openai", model="text-embedding-3-large", dim=3072), "my-index/")
    store.add_texts(["..."], metadatas=[{"year": 2024}])
    retriever = store.as_retriever(search_kwargs={"k": 5, "filter": {"year": {"$gte": 2020}}})

Built on the public API of ``mrl_retrievers`` only.
"""

from .embeddings import MRLEmbeddings
from .retrievers import MRLRetriever
from .vectorstores import MRLVectorStore

__all__ = ["MRLEmbeddings", "MRLRetriever", "MRLVectorStore"]
