"""The store protocol: what every backend (local ``MRLStore``, ``QdrantStore``) offers.

Integrations, ``MRLIndex`` and the CLI program against this, so a backend is a config change.
Semantics every backend keeps (the conformance suite in tests/store checks them):

- ids are non-empty strings; ``add`` upserts by id, validates the whole batch first, and is atomic;
- scores are cosine similarities of the full, normalized vectors, highest first, ties by insertion;
- ``search`` returns at most ``k`` hits, fewer when fewer match (never raises for k > len);
- filters use the one dict syntax of ``mrl_retrievers.filters`` with the same semantics, and raise
  ``UnsupportedFilterError``/``FilterError`` for what they cannot express;
- ``delete`` ignores unknown ids; ``get`` returns records in the order asked, skipping missing ids;
  ``ids(filter)`` lists live ids (matching the filter) without touching vectors;
- ``search_exact`` is the exact full-width oracle; ``reindex`` changes the coarse width without
  re-embedding;
- ``spec`` is recorded with the collection and ``check_spec`` refuses a different one.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

from ..types import EmbeddingSpec, Hit, Record


@runtime_checkable
class VectorStore(Protocol):
    full_dim: int
    prefix_dim: int

    @property
    def spec(self) -> EmbeddingSpec | None: ...

    def add(self, ids: Sequence[str], vectors: Any, texts: Sequence[str | None] | None = None,
            metadatas: Sequence[dict[str, Any] | None] | None = None) -> list[str]: ...

    def delete(self, ids: Sequence[str]) -> int: ...

    def get(self, ids: Sequence[str], include_vectors: bool = False) -> list[Record]: ...

    def __len__(self) -> int: ...

    def ids(self, filter: Any = None) -> list[str]: ...

    def search(self, vector: Any, k: int = 10, shortlist: int | None = None, filter: Any = None, *,
               ef: int | None = None, target_recall: float | None = None) -> list[Hit]: ...

    def search_batch(self, vectors: Any, k: int = 10, shortlist: int | None = None, filter: Any = None, *,
                     ef: int | None = None, target_recall: float | None = None) -> list[list[Hit]]: ...

    def search_exact(self, vector: Any, k: int = 10, filter: Any = None) -> list[Hit]: ...

    def reindex(self, prefix_dim: int | None = None) -> None: ...

    def check_spec(self, spec: EmbeddingSpec) -> None: ...

    def close(self) -> None: ...


__all__ = ["VectorStore"]
