"""The local backend: a store in one folder (manifest, SQLite, memory-mapped vectors, hnswlib).

``store.MRLStore`` is the facade; the other modules are its parts (see docs/architecture.md).
"""

from .store import MRLStore

__all__ = ["MRLStore"]
