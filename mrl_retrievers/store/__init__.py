"""Stores: the local coarse-to-fine ``MRLStore`` (and, with the ``qdrant`` extra, ``QdrantStore``)."""

from .factory import StoreLike, open_store
from .lazy import LazyStore
from .local import MRLStore
from .maintenance import VerifyReport
from .protocol import VectorStore
from .qdrant import QdrantStore  # qdrant-client itself is imported only when a QdrantStore is opened

__all__ = ["LazyStore", "MRLStore", "QdrantStore", "StoreLike", "VectorStore", "VerifyReport", "open_store"]
