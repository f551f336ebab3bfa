"""LlamaIndex vector stores over mrl-retrievers (namespace package: no __init__.py above this folder).

Example:
    >>> from llama_index.vector_stores.mrl import MRLVectorStore
    >>> MRLVectorStore(None).client is None   # the store is created at the first add
    True
"""

try:  # a clear error naming the distribution, not a bare ModuleNotFoundError
    import llama_index.core  # noqa: F401
except ImportError:
    from mrl_retrievers.errors import MissingDependencyError

    raise MissingDependencyError("llama-index-core", "llama-index", "needed by llama_index.vector_stores.mrl",
                                 install="llama-index-vector-stores-mrl") from None

from .base import MRLVectorStore

__all__ = ["MRLVectorStore"]
