"""The Qdrant backend: the same protocol over a Qdrant collection (qdrant-client is imported lazily).

``store.QdrantStore`` is the facade; ``collection`` holds the collection's layout and connection,
``filters`` translates the filter language into Qdrant's.
"""

from .store import ID_NAMESPACE, QdrantStore, open_from_settings, point_id

__all__ = ["ID_NAMESPACE", "QdrantStore", "open_from_settings", "point_id"]
