"""LlamaIndex embeddings over mrl-retrievers (namespace package: no __init__.py above this folder).

Example:
    >>> from llama_index.embeddings.mrl import MRLEmbedding
    >>> MRLEmbedding("fake", dim=8).dim
    8
"""

try:  # a clear error naming the distribution, not a bare ModuleNotFoundError
    import llama_index.core  # noqa: F401
except ImportError:
    from mrl_retrievers.errors import MissingDependencyError

    raise MissingDependencyError("llama-index-core", "llama-index", "needed by llama_index.embeddings.mrl",
                                 install="llama-index-embeddings-mrl") from None

from .base import MRLEmbedding

__all__ = ["MRLEmbedding"]
