"""LlamaIndex retrievers over mrl-retrievers (namespace package: no __init__.py above this folder).

Example:
    >>> from llama_index.retrievers.mrl import MRLRetriever
"""

try:  # a clear error naming the distribution, not a bare ModuleNotFoundError
    import llama_index.core  # noqa: F401
except ImportError:
    from mrl_retrievers.errors import MissingDependencyError

    raise MissingDependencyError("llama-index-core", "llama-index", "needed by llama_index.retrievers.mrl",
                                 install="llama-index-retrievers-mrl") from None

from .base import MRLRetriever

__all__ = ["MRLRetriever"]
