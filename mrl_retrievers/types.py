"""Plain value types shared by every layer: EmbeddingSpec, Hit, Record."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .checks import positive_int
from .errors import ConfigError


@dataclass(frozen=True)
class EmbeddingSpec:
    """What produced a vector space: two stores or queries may only meet if their specs are equal.

    Host, base URL and keys are deliberately *not* part of a spec: the same model behind a proxy
    produces the same vectors.

    Attributes:
        provider: registry name ("openai", "gemini", "voyage", "local", "fake", or a class name for
            vectors from a framework embedding we do not know).
        model: the model name or path.
        dim: the width of the vectors the provider returns.
        normalized: whether vectors are unit length (ours always are).
        rotation: an identifier (checksum) of a fitted orthogonal rotation applied before
            truncation, or None.
        query_prompt / document_prompt: the prompt scheme or task type used for each side.
        extra: anything else that changes the vectors (sorted key/value pairs).
        modalities: what the model embeds into this one space: ``("text",)``, or
            ``("image", "text")`` for a multimodal model. A record, not part of the identity: it
            follows from provider and model, so two specs that differ only here are equal. It is
            written (``to_dict``) only when it is not text alone, so text-only manifests are unchanged.

    Example:
        >>> spec = EmbeddingSpec(provider="fake", model="fake-1", dim=64)
        >>> EmbeddingSpec.from_dict(spec.to_dict()) == spec
        True
    """

    provider: str
    model: str
    dim: int
    normalized: bool = True
    rotation: str | None = None
    query_prompt: str | None = None
    document_prompt: str | None = None
    extra: tuple[tuple[str, str], ...] = ()
    modalities: tuple[str, ...] = field(default=("text",), compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.provider, str) or not self.provider:
            raise ConfigError(f"EmbeddingSpec.provider must be a non-empty string, got {self.provider!r}")
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"EmbeddingSpec.model must be a non-empty string, got {self.model!r}")
        object.__setattr__(self, "dim", positive_int("EmbeddingSpec.dim", self.dim, error=ConfigError))
        if isinstance(self.extra, Mapping):  # accept a dict for convenience, store a hashable form
            object.__setattr__(self, "extra", tuple(sorted((str(k), str(v)) for k, v in self.extra.items())))
        modalities = (self.modalities,) if isinstance(self.modalities, str) else self.modalities
        if not modalities or not all(m in ("text", "image") for m in modalities):
            raise ConfigError(f"EmbeddingSpec.modalities must name 'text' and/or 'image', got {self.modalities!r}")
        object.__setattr__(self, "modalities", tuple(sorted(set(modalities))))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["extra"] = {k: v for k, v in self.extra}
        if self.modalities == ("text",):
            del data["modalities"]  # text-only specs serialize exactly as before the field existed
        else:
            data["modalities"] = list(self.modalities)
        return data

    @property
    def identity(self) -> dict[str, Any]:
        """The fields that decide equality (what a cache key or a store check may depend on)."""
        data = self.to_dict()
        data.pop("modalities", None)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EmbeddingSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown EmbeddingSpec fields: {sorted(unknown)}")
        kwargs = dict(data)
        extra = kwargs.pop("extra", {}) or {}
        if "modalities" in kwargs:
            kwargs["modalities"] = tuple(kwargs["modalities"] or ())
        return cls(**kwargs, extra=tuple(sorted((str(k), str(v)) for k, v in dict(extra).items())))

    def differences(self, other: "EmbeddingSpec") -> list[str]:
        """Names and values of the fields that differ, for error messages."""
        return [
            f"{f.name}: {getattr(self, f.name)!r} != {getattr(other, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.compare and getattr(self, f.name) != getattr(other, f.name)
        ]


@dataclass(frozen=True)
class Hit:
    """One search result. ``score`` is the cosine similarity of the full vectors (higher is better)."""

    id: str
    score: float
    text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _of(cls, id: str, score: float, text: str | None, metadata: dict[str, Any]) -> "Hit":
        """A hit from values the store has already checked, built without the frozen dataclass's
        ``object.__setattr__`` per field (0.57 -> 0.26 us a hit; a search builds ``k`` of them while
        it holds the GIL). The same object ``Hit(...)`` builds."""
        hit = object.__new__(cls)
        hit.__dict__.update(id=id, score=score, text=text, metadata=metadata)
        return hit


@dataclass(frozen=True)
class Record:
    """One stored item as returned by ``get``. ``vector`` is a fresh copy (never a view of a file)."""

    id: str
    text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: np.ndarray | None = field(default=None, compare=False)


__all__ = ["EmbeddingSpec", "Hit", "Record"]
