"""Stores: the local coarse-to-fine ``MRLStore`` (and, with the ``qdrant`` extra, ``QdrantStore``)."""

from .factory import StoreLike, create_store, open_existing, open_store, store_exists
from .lazy import LazyStore
from .local import MRLStore
from .local.maintenance import VerifyReport
from .protocol import VectorStore
from .qdrant import QdrantStore  # qdrant-client itself is imported only when a QdrantStore is opened

__all__ = ["LazyStore", "MRLStore", "QdrantStore", "StoreLike", "VectorStore", "VerifyReport", "create_store", "open_existing",
           "open_store", "store_exists"]
