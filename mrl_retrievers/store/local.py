"""MRLStore: the local coarse-to-fine store (SQLite + row-addressed vector file + hnswlib).

Layout and guarantees: see docs/store-format.md. In short: docs.sqlite is the source of truth and its
commit is the durability point of every write; the vector file is append-only and checksummed per
row; the hnswlib file is derived, checkpointed atomically, and caught up from the vector file on
open.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import filters
from ..errors import (
    MRLError,
    InvalidInputError,
    ReadOnlyStoreError,
    SpecMismatchError,
    StoreClosedError,
    StoreLockedError,
)
from ..metadata import load_metadata, validate_metadatas
from ..mrl import as_matrix, as_vector, check_width, normalize, normalize_as, prefix
from ..types import EmbeddingSpec, Hit, Record
from . import opening
from .crashpoints import crash_point
from .fs import io_errors
from . import calibration, maintenance, tuning
from .effort import Calibration
from .maintenance import VerifyReport
from .manifest import DEFAULT_TARGET_RECALL, Manifest
from .rwlock import ReadWriteLock
from .search import Searcher, check_k
from .validation import check_ids, check_texts
from .vectors import row_checksums, to_float32

# A batch at least this large is inserted into hnswlib on all cores (under the write lock, as
# always): bulk loads build ~2x faster on 2 cores; small batches stay on one thread (less overhead).
PARALLEL_ADD_ROWS = 1024

log = logging.getLogger("mrl_retrievers.store")

_registry: "weakref.WeakValueDictionary[str, MRLStore]" = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()

# Checkpoint the coarse index when this many rows are not yet in its file (and on close). Rows
# above the checkpoint are re-added from the vector file on open, so this bounds open time.
CHECKPOINT_ROWS = 20_000


class MRLStore:
    """A coarse-to-fine vector store on local disk.

    Example:
        >>> import numpy as np
        >>> store = MRLStore.create(None, full_dim=8, prefix_dim=4)
        >>> store.add(["a", "b"], np.eye(8)[:2], texts=["first", "second"])
        ['a', 'b']
        >>> [h.id for h in store.search(np.eye(8)[0], k=1)]
        ['a']
        >>> store.close()
    """

    def __init__(self, state: opening.StoreState) -> None:  # use create() / open()
        self._s = state
        self._rw = ReadWriteLock()
        self._searcher = Searcher(state)
        self._closed = False
        # Release the lock and files when the object is garbage-collected (users rarely close()).
        self._finalizer = weakref.finalize(self, opening.release, state)

    # --- lifecycle --------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        full_dim: int,
        prefix_dim: int,
        dtype: str = "float16",
        spec: EmbeddingSpec | None = None,
        exact_below: int | None = None,
        shortlist: int | None = None,
        ef: int | None = None,
        funnel_dim: int | None = None,
        M: int | None = None,
        ef_construction: int | None = None,
        target_recall: float | None = None,
    ) -> "MRLStore":
        """Create a new, empty store at ``path`` (``None``: a temporary store deleted on close).

        ``target_recall``: the recall@10 searches aim for; the store calibrates its per-query effort
        for it as it grows (``store/calibration.py``). Default 0.99, unless ``shortlist`` or ``ef``
        is given: those fix the effort instead (the expert override). Durable when it returns.
        Raises ``StoreExistsError`` if ``path`` holds anything but the remains of an interrupted create.
        """
        temporary = path is None
        directory = Path(tempfile.mkdtemp(prefix="mrl-store-")) if temporary else Path(path)
        manifest = opening.new_manifest(
            full_dim=full_dim, prefix_dim=prefix_dim, dtype=dtype, spec=spec, exact_below=exact_below,
            shortlist=shortlist, ef=ef, funnel_dim=funnel_dim, M=M, ef_construction=ef_construction,
            target_recall=target_recall,
        )
        with _registry_lock:
            opening.initialize(directory, manifest)
            store = cls(opening.open_state(directory, read_only=False, temporary=temporary))
            _registry[str(directory.resolve())] = store
        return store

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, read_only: bool = False, spec: EmbeddingSpec | None = None) -> "MRLStore":
        """Open an existing store. One writer process at a time; any number of read-only handles.

        Opening the same store twice in a process returns the same handle. A read-only handle sees
        the data committed when it was opened (reopen to see later writes). ``spec``, if given,
        must match the store's (``SpecMismatchError`` otherwise).
        """
        directory = opening.check_store_path(Path(path))
        key = str(directory.resolve())
        with _registry_lock:
            existing = _registry.get(key)
            if existing is not None and not existing._closed:
                if existing.read_only and not read_only:
                    raise StoreLockedError(
                        f"store {directory} is already open read-only in this process; close that handle first"
                    )
                store = existing
            else:
                store = cls(opening.open_state(directory, read_only=read_only, temporary=False))
                _registry[key] = store
        if spec is not None:
            store.check_spec(spec)
        return store

    def close(self) -> None:
        """Checkpoint the coarse index (writers), fold SQLite's WAL, release the lock. Idempotent."""
        if self._closed:
            return
        with self._rw.write(), io_errors("writing", self.path):
            if not self._closed and not self.read_only and self._s.pending_rows():
                self._checkpoint()
            self._closed = True
        self._finalizer()

    def __enter__(self) -> "MRLStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("read-only" if self.read_only else "writable")
        return f"MRLStore({str(self.path)!r}, full_dim={self.full_dim}, prefix_dim={self.prefix_dim}, {state})"

    # --- properties --------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._s.directory

    @property
    def read_only(self) -> bool:
        return self._s.read_only

    @property
    def manifest(self) -> Manifest:
        return self._s.manifest

    @property
    def full_dim(self) -> int:
        return self._s.manifest.full_dim

    @property
    def prefix_dim(self) -> int:
        return self._s.manifest.prefix_dim

    @property
    def dtype(self) -> str:
        return self._s.manifest.dtype

    @property
    def spec(self) -> EmbeddingSpec | None:
        return self._s.manifest.spec

    def __len__(self) -> int:
        """Live items. Safe beside writers; O(1)."""
        self._check_open()
        return self._s.ann.live

    def check_spec(self, spec: EmbeddingSpec) -> None:
        """Raise ``SpecMismatchError`` unless ``spec`` is the one this store was built with.

        A store created without a spec adopts the first one offered (writers only).
        """
        current = self.spec
        if current is None:
            if not self.read_only:
                with self._rw.write(), io_errors("writing", self.path):
                    self._s.set_manifest(dataclasses.replace(self._s.manifest, spec=spec))
            return
        if current != spec:
            raise SpecMismatchError(
                f"store {self.path} holds vectors from {current.provider}/{current.model} (dim {current.dim}); "
                f"refusing {spec.provider}/{spec.model} (dim {spec.dim}) to avoid mixing vector spaces. "
                f"Differences: {'; '.join(current.differences(spec))}"
            )

    # --- writes --------------------------------------------------------------------------------------

    def add(
        self,
        ids: Sequence[str],
        vectors: Any,
        texts: Sequence[str | None] | None = None,
        metadatas: Sequence[dict[str, Any] | None] | None = None,
    ) -> list[str]:
        """Insert or overwrite (by id) a batch. One batch = one transaction.

        Everything is validated before anything is written; durable when it returns. Takes the
        write lock (searches wait). Costs one vector-file append, one SQLite commit and one
        hnswlib insert per row.
        """
        ids = check_ids(ids)
        vectors = as_matrix(vectors, self.full_dim)
        if len(vectors) != len(ids):
            raise InvalidInputError(f"got {len(ids)} ids but {len(vectors)} vectors")
        texts = check_texts(texts, len(ids))
        metas = validate_metadatas(metadatas, len(ids))
        stored = normalize_as(vectors, self._s.vectors.dtype)
        crcs = row_checksums(stored)
        if not ids:
            return []
        self._check_writable()
        with self._rw.write(), io_errors("writing", self.path):
            self._check_open()
            s = self._s
            start = s.rows
            s.vectors.append(start, stored)
            superseded = s.docs.publish(ids, start, texts, metas, crcs)
            s.rows = start + len(ids)
            s.vectors.ensure_mapped(s.rows)
            s.ann.add(prefix(to_float32(stored[:, : self.prefix_dim]), self.prefix_dim), np.arange(start, s.rows),
                      num_threads=-1 if len(ids) >= PARALLEL_ADD_ROWS else 1)
            s.ann.mark_deleted(superseded)
            self._searcher.invalidate()
            crash_point("add:ann-updated")
            if s.pending_rows() >= max(CHECKPOINT_ROWS, s.ann.live // 4):
                self._background_checkpoint()
        return list(ids)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete items by id; unknown ids are ignored. Returns how many were deleted.

        One transaction; durable when it returns; takes the write lock.
        """
        ids = check_ids(ids, allow_duplicates=True)
        self._check_writable()
        with self._rw.write(), io_errors("writing", self.path):
            self._check_open()
            rows = self._s.docs.delete(ids)
            self._s.ann.mark_deleted(rows)
            self._searcher.invalidate()
        return len(rows)

    def checkpoint(self) -> None:
        """Save the coarse index now (atomic; bounds the catch-up work of the next open)."""
        self._check_writable()
        with self._rw.write(), io_errors("writing", self.path):
            self._check_open()
            self._checkpoint()

    def _checkpoint(self) -> None:
        self._s.checkpoint()

    def _background_checkpoint(self) -> None:
        """A checkpoint ``add`` takes on its own: the batch is already durable, and the index is
        derived (re-added from the vector file on open), so a failure here is logged, not raised."""
        try:
            self._s.checkpoint()
        except (MRLError, OSError) as exc:
            log.warning("could not checkpoint the coarse index of %s (%s); it will be caught up on open", self.path, exc)

    # --- reads ----------------------------------------------------------------------------------------

    def get(self, ids: Sequence[str], include_vectors: bool = False) -> list[Record]:
        """Records for the ids that exist, in the order asked. Safe beside writers (read lock)."""
        ids = check_ids(ids, allow_duplicates=True)
        with self._rw.read():
            self._check_open()
            found = self._s.docs.by_ids(ids)
            vectors = {}
            if include_vectors and found:
                rows = np.array(sorted(row for row, *_ in found.values()), dtype=np.int64)
                stored = self._s.vectors.gather(rows)
                vectors = {int(r): v.astype(np.float32) for r, v in zip(rows, stored)}
        records = []
        for id_ in ids:
            if id_ in found:
                row, text, meta, _crc = found[id_]
                records.append(Record(id=id_, text=text, metadata=load_metadata(meta), vector=vectors.get(row)))
        return records

    def ids(self, filter: Any = None) -> list[str]:
        """Ids of every live item (matching ``filter``), in insertion order. Reads SQLite only."""
        flt = filters.parse_filter(filter)
        with self._rw.read():
            self._check_open()
            return self._s.docs.ids_matching(flt)

    def search(self, vector: Any, k: int = 10, shortlist: int | None = None, filter: Any = None, *, ef: int | None = None,
               target_recall: float | None = None) -> list[Hit]:
        """Top-``k`` items by full-width cosine: coarse shortlist on the prefix, exact rerank.

        The effort per query adapts to reach the store's ``target_recall`` (or this call's; 1.0 scans
        exactly); ``shortlist``/``ef`` fix it instead. Returns fewer hits when fewer items match. Safe
        beside other searches and beside writers (read lock); costs one hnswlib query per effort level
        climbed, a read of each candidate row and two SQLite queries.
        """
        query = normalize(as_vector(vector, self.full_dim))
        plan = self._searcher.plan(k, shortlist, ef, target_recall)
        flt = filters.parse_filter(filter)
        with self._rw.read():
            self._check_open()
            return self._searcher.one(query, plan, flt)

    def search_batch(self, vectors: Any, k: int = 10, shortlist: int | None = None, filter: Any = None, *, ef: int | None = None,
                     target_recall: float | None = None) -> list[list[Hit]]:
        """``search`` for each row of ``vectors``; the (first) coarse stage runs as one threaded batch."""
        queries = normalize(as_matrix(vectors, self.full_dim, what="query vectors"))
        plan = self._searcher.plan(k, shortlist, ef, target_recall)
        flt = filters.parse_filter(filter)
        with self._rw.read():
            self._check_open()
            return self._searcher.batch(queries, plan, flt)

    def search_exact(self, vector: Any, k: int = 10, filter: Any = None) -> list[Hit]:
        """The oracle: exact full-width scan of every live (and matching) item. Read lock."""
        query = normalize(as_vector(vector, self.full_dim))
        k = check_k(k)
        flt = filters.parse_filter(filter)
        with self._rw.read():
            self._check_open()
            return self._searcher.exact(query, None if flt is None else self._s.docs.rows_matching(flt), k)

    # --- maintenance ------------------------------------------------------------------------------

    def reindex(self, prefix_dim: int | None = None, *, funnel_dim: int | None = None) -> None:
        """Rebuild the coarse index at a new prefix width from the stored full vectors.

        No provider call: the full vectors are on disk. Atomic (the old index serves until the
        new one is in place); takes the write lock for the rebuild.
        """
        self._check_writable()
        width = check_width("prefix_dim", prefix_dim if prefix_dim is not None else self.prefix_dim, full_dim=self.full_dim)
        if funnel_dim is not None and not width < funnel_dim < self.full_dim:
            raise InvalidInputError(f"funnel_dim must lie between prefix_dim ({width}) and full_dim ({self.full_dim})")
        with self._rw.write(), io_errors("writing", self.path):
            self._check_open()
            self._s.reindex(width, funnel_dim)

    def tune(self, target_recall: float = 0.99, **options: Any) -> "tuning.TuneResult":
        """Measure prefix width x shortlist x ef on this store's own vectors and record the fastest
        setting that meets ``target_recall`` as the store's default (``store/tuning.py``).

        Writers only; rebuilds the coarse index once per width tried (minutes at 1M items).
        """
        return tuning.tune(self, target_recall, **options)

    def calibrate(self, target_recall: float | None = None, **options: Any) -> "Calibration":
        """Measure this store's per-query effort needs now and record them (``store/calibration.py``;
        checkpoints do this on their own as the store grows). ``target_recall`` also becomes the
        store's target. Options: ``probes``, ``seed``, ``queries`` (real query vectors), ``confidence_level``.

        Writers only; measures under the read lock (searches keep running), records under the write lock.
        """
        self._check_writable()
        target = calibration.check_target(target_recall) if target_recall is not None else (self.manifest.target_recall or DEFAULT_TARGET_RECALL)
        if options.get("queries") is not None:
            options["queries"] = as_matrix(options["queries"], self.full_dim, what="calibration queries")
        with self._rw.read(), io_errors("reading", self.path):
            self._check_open()
            result = calibration.calibrate(self._s, target_recall=target, **{"source": "calibrate", **options})
        with self._rw.write(), io_errors("writing", self.path):
            self._check_open()
            self._s.set_manifest(dataclasses.replace(self._s.manifest, target_recall=target, calibration=result))
        return result

    def compact(self) -> int:
        """Rewrite the vector file without deleted/overwritten rows; returns rows reclaimed.

        Crash-safe: the new file is published by one SQLite transaction. Takes the write lock.
        """
        self._check_writable()
        with self._rw.write(), io_errors("writing", self.path):
            self._check_open()
            reclaimed = self._s.compact()
            self._searcher.invalidate()
        return reclaimed

    def stats(self) -> dict[str, Any]:
        """Counts and sizes for ``info``: live items, rows, widths, dtype, bytes on disk."""
        with self._rw.read():
            self._check_open()
            return self._s.stats()

    @classmethod
    def verify(cls, path: str | os.PathLike[str]) -> VerifyReport:
        """Check a store without changing it: manifest, SQLite integrity, vector file size, every
        row checksum, and the coarse-index checkpoint (derived: a problem there is a warning)."""
        report = VerifyReport(str(path))
        try:
            state = opening.open_state(opening.check_store_path(Path(path)), read_only=True, temporary=False)
        except MRLError as exc:
            report.problems.append(str(exc))
            return report
        try:
            found = maintenance.verify_state(state)
        finally:
            opening.release(state)
        if state.ann_note:
            found.warnings.insert(0, f"coarse index rebuilt in memory: {state.ann_note}")
        return found

    @classmethod
    def rebuild(cls, path: str | os.PathLike[str]) -> VerifyReport:
        """Repair a store from its source of truth: drop items whose vector rows fail their
        checksum (they are listed; re-add them), rebuild the coarse index, checkpoint it."""
        report = cls.verify(path)
        with cls.open(path) as store:
            if report.damaged_ids:
                store.delete(report.damaged_ids)
            store.reindex(store.prefix_dim)
        return report

    # --- guards --------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"store {self.path} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only:
            raise ReadOnlyStoreError(f"store {self.path} was opened read-only")


__all__ = ["MRLStore"]
