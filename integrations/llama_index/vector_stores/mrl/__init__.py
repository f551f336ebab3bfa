"""LlamaIndex vector stores over mrl-retrievers (namespace package: no __init__.py above this folder).

Example:
    >>> from llama_index.vector_stores.mrl import MRLVectorStore
    >>> MRLVectorStore(None).client is None   # the store is created at the first add
    True
"""

from .base import MRLVectorStore
from .filters import translate_filters
from .reference import reference_matcher

__all__ = ["MRLVectorStore", "reference_matcher", "translate_filters"]
