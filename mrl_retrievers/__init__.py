"""mrl-retrievers: coarse-to-fine retrieval over Matryoshka (MRL) embeddings."""

from __future__ import annotations

from .config import Secret, Settings, load_config
from .errors import (
    CorruptStoreError,
    MRLError,
    StoreLockedError,
    UnsupportedFilterError,
    UnsupportedFormatError,
)
from .media import Image
from .providers import Provider, get_provider
from .index import MRLIndex
from .store import MRLStore, QdrantStore, VectorStore, open_store
from .types import EmbeddingSpec, Hit, Record

__version__ = "0.1.0"

__all__ = [
    "CorruptStoreError",
    "EmbeddingSpec",
    "Hit",
    "Image",
    "MRLError",
    "MRLIndex",
    "MRLStore",
    "Record",
    "Secret",
    "Settings",
    "StoreLockedError",
    "UnsupportedFilterError",
    "UnsupportedFormatError",
    "__version__",
    "get_provider",
    "load_config",
    "open_store",
    "Provider",
    "QdrantStore",
    "VectorStore",
]
