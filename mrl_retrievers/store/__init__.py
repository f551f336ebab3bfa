"""Stores: the local coarse-to-fine ``MRLStore`` (and, with the ``qdrant`` extra, ``QdrantStore``)."""

from .local import MRLStore
from .maintenance import VerifyReport

__all__ = ["MRLStore", "VerifyReport"]
