"""The on-disk embedding cache: vectors keyed by (EmbeddingSpec, "query"|"document", sha256(text)).

One SQLite file (WAL journal) holding float32 bytes. A batch is committed as soon as it is paid
for, so an interrupted ingestion re-run only embeds what was not yet committed. Everything in it can
be recomputed: a damaged cache can simply be deleted. No pickle: the spec is stored as JSON, vectors
as raw little-endian float32.

Use it through ``CachedProvider`` (``mrl_retrievers.providers.cached``) or
``get_provider(..., cache="path.sqlite")``.

Example:
    >>> import numpy as np
    >>> from mrl_retrievers.types import EmbeddingSpec
    >>> cache = EmbeddingCache()          # in memory
    >>> spec = EmbeddingSpec(provider="fake", model="m", dim=2)
    >>> cache.put_many(spec, "document", ["hi"], np.array([[0.6, 0.8]], dtype=np.float32))
    >>> cache.get_many(spec, "document", ["hi", "other"])[1] is None
    True
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ConfigError, InvalidInputError
from .types import EmbeddingSpec

KINDS = ("query", "document")
_FORMAT = "1"
# SQLite caps bound parameters per statement (32766 by default; 999 on old builds).
_LOOKUP_CHUNK = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS specs (id TEXT PRIMARY KEY, spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (
    spec_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    text_hash BLOB NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (spec_id, kind, text_hash)
) WITHOUT ROWID;
"""


def text_hash(text: str) -> bytes:
    """sha256 of the text's UTF-8 bytes (lone surrogates kept, so every str has a key)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def spec_id(spec: EmbeddingSpec) -> str:
    """A stable id of a spec: sha256 of its canonical JSON (first 32 hex digits)."""
    # identity: the modalities a spec records do not change its vectors (nor, so, its cache entries).
    canonical = json.dumps(spec.identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


class EmbeddingCache:
    """Embeddings already paid for, keyed by spec, side (query/document) and text hash.

    Thread-safe (one connection behind a lock); several processes may share a file (SQLite WAL,
    one writer at a time, ``timeout`` seconds of waiting for the write lock).

    Args:
        path: the SQLite file (created with its parent directory), or None for an in-memory cache.
        timeout: seconds to wait for another process's write lock.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout: float = 30.0) -> None:
        self.path = None if path is None else Path(path)
        self._lock = threading.Lock()
        self._known_specs: set[str] = set()
        self._conn = self._connect(timeout)

    def _connect(self, timeout: float) -> sqlite3.Connection:
        if self.path is not None:
            if self.path.is_dir():
                raise ConfigError(f"embedding cache path {self.path} is a directory; give a file path")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        target = ":memory:" if self.path is None else str(self.path)
        try:
            conn = sqlite3.connect(target, timeout=timeout, check_same_thread=False, isolation_level=None)
            # WAL: readers never block the writer; NORMAL: a commit survives a killed process
            # (only a power cut may lose the last batches, which are recomputable anyway).
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT value FROM meta WHERE key='format'").fetchone()
            if row is None:
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (_FORMAT,))
            elif row[0] != _FORMAT:
                raise ConfigError(f"embedding cache {self.path} has format {row[0]}, expected {_FORMAT}; "
                                  "delete it (it only holds recomputable vectors)")
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"cannot use embedding cache {self.path}: {exc}; delete the file "
                              "(it only holds recomputable vectors)") from None
        return conn

    def get_many(self, spec: EmbeddingSpec, kind: str, texts: Sequence[str]) -> list[np.ndarray | None]:
        """The cached vector of each text (None for a miss), in input order. Copies, never views."""
        _check_kind(kind)
        sid = spec_id(spec)
        keys = [text_hash(t) for t in texts]
        found: dict[bytes, bytes] = {}
        with self._lock:
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), _LOOKUP_CHUNK):
                chunk = unique[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT text_hash, vector FROM vectors WHERE spec_id=? AND kind=? AND text_hash IN ({marks})",
                    (sid, kind, *chunk),
                ).fetchall()
                found.update((bytes(h), bytes(v)) for h, v in rows)
        return [_decode(found.get(k), spec.dim) for k in keys]

    def put_many(self, spec: EmbeddingSpec, kind: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store one batch in one transaction (durable against a killed process when it returns)."""
        _check_kind(kind)
        arr = np.ascontiguousarray(vectors, dtype="<f4")
        if arr.ndim != 2 or arr.shape != (len(texts), spec.dim):
            raise InvalidInputError(
                f"cache put: expected vectors of shape ({len(texts)}, {spec.dim}), got {arr.shape}"
            )
        if not np.isfinite(arr).all():
            raise InvalidInputError("cache put: vectors contain NaN or infinity")
        sid = spec_id(spec)
        rows = [(sid, kind, text_hash(t), arr[i].tobytes()) for i, t in enumerate(texts)]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if sid not in self._known_specs:
                    self._conn.execute("INSERT OR IGNORE INTO specs VALUES (?, ?)",
                                       (sid, json.dumps(spec.to_dict(), sort_keys=True)))
                self._conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)", rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._known_specs.add(sid)

    def count(self, spec: EmbeddingSpec | None = None, kind: str | None = None) -> int:
        """Number of cached vectors (of one spec / side when given)."""
        where, params = _where(spec, kind)
        with self._lock:
            return int(self._conn.execute(f"SELECT COUNT(*) FROM vectors{where}", params).fetchone()[0])

    def clear(self, spec: EmbeddingSpec | None = None) -> int:
        """Delete cached vectors (of one spec when given); returns how many were deleted."""
        where, params = _where(spec, None)
        with self._lock:
            cur = self._conn.execute(f"DELETE FROM vectors{where}", params)
            return int(cur.rowcount)

    def specs(self) -> list[EmbeddingSpec]:
        """Every spec that has vectors in the cache."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT spec FROM specs WHERE id IN (SELECT DISTINCT spec_id FROM vectors)"
            ).fetchall()
        return [EmbeddingSpec.from_dict(json.loads(r[0])) for r in rows]

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return self.count()

    def __enter__(self) -> "EmbeddingCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.path) if self.path else ':memory:'!r})"


def _decode(blob: bytes | None, dim: int) -> np.ndarray | None:
    # A row of the wrong size (damage, or a hash collision of specs) counts as a miss: recompute.
    if blob is None or len(blob) != 4 * dim:
        return None
    vec = np.frombuffer(blob, dtype="<f4").astype(np.float32)
    return vec if np.isfinite(vec).all() else None


def _where(spec: EmbeddingSpec | None, kind: str | None) -> tuple[str, tuple[str, ...]]:
    clauses, params = [], []
    if spec is not None:
        clauses.append("spec_id=?")
        params.append(spec_id(spec))
    if kind is not None:
        _check_kind(kind)
        clauses.append("kind=?")
        params.append(kind)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InvalidInputError(f"kind must be one of {KINDS}, got {kind!r}")


__all__ = ["EmbeddingCache", "spec_id", "text_hash"]
