"""LlamaIndex retrievers over mrl-retrievers (namespace package: no __init__.py above this folder).

Example:
    >>> from llama_index.retrievers.mrl import MRLRetriever
"""

from .base import MRLRetriever

__all__ = ["MRLRetriever"]
