"""Stores: the local coarse-to-fine ``MRLStore`` (and, with the ``qdrant`` extra, ``QdrantStore``)."""

from .factory import StoreLike, open_store
from .local import MRLStore
from .maintenance import VerifyReport

__all__ = ["MRLStore", "StoreLike", "VerifyReport", "open_store"]
