"""LlamaIndex embeddings over mrl-retrievers (namespace package: no __init__.py above this folder).

Example:
    >>> from llama_index.embeddings.mrl import MRLEmbedding
    >>> MRLEmbedding("fake", dim=8).dim
    8
"""

from .base import MRLEmbedding

__all__ = ["MRLEmbedding"]
