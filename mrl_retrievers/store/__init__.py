"""Stores: the local coarse-to-fine ``MRLStore`` (and, with the ``qdrant`` extra, ``QdrantStore``)."""

from .factory import StoreLike, open_store
from .local import MRLStore
from .maintenance import VerifyReport
from .protocol import VectorStore

__all__ = ["MRLStore", "StoreLike", "VectorStore", "VerifyReport", "open_store"]
