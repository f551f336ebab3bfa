"""LangChain integration for mrl-retrievers: coarse-to-fine retrieval over Matryoshka embeddings.

Swap ``InMemoryVectorStore``, FAISS or Chroma for ``MRLVectorStore`` by changing one line::

    from langchain_mrl import MRLEmbeddings, MRLVectorStore

    store = MRLVectorStore(MRLEmbeddings("openai", model="text-embedding-3-large", dim=3072), "my-index/")
    store.add_texts(["..."], metadatas=[{"year": 2024}])
    retriever = store.as_retriever(search_kwargs={"k": 5, "filter": {"year": {"$gte": 2020}}})

Self-query: LangChain's ``SelfQueryRetriever.from_llm`` cannot know this store, so hand it the
translator: ``SelfQueryRetriever.from_llm(llm, store, contents, fields,
structured_query_translator=MRLTranslator())``.

Built on the public API of ``mrl_retrievers`` only. Installed as its own distribution,
``pip install langchain-mrl`` (from the source tree: ``pip install -e . -e integrations/langchain-mrl``),
plus the provider's extra of the core, e.g. ``pip install 'mrl-retrievers[openai]'``.
"""

try:
    import langchain_core  # noqa: F401 - the one dependency this package adds
except ImportError:  # a clear error naming the distribution, not a bare ModuleNotFoundError
    from mrl_retrievers.errors import MissingDependencyError

    raise MissingDependencyError("langchain-core", "langchain", "needed by langchain_mrl",
                                 install="langchain-mrl") from None

from ._filters import MRLTranslator
from .embeddings import MRLEmbeddings
from .retrievers import MRLRetriever
from .vectorstores import MRLVectorStore

__all__ = ["MRLEmbeddings", "MRLRetriever", "MRLTranslator", "MRLVectorStore"]
