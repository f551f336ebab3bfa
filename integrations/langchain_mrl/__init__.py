"""LangChain integration for mrl-retrievers (``MRLVectorStore``, ``MRLRetriever``, ``MRLEmbeddings``).

Built on the public API of ``mrl_retrievers`` only. The classes arrive with the LangChain issue.
"""

__all__: list[str] = []
