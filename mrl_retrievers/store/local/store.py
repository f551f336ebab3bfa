"""MRLStore: the local coarse-to-fine store (SQLite + row-addressed vector file + hnswlib).

Layout and guarantees: see docs/store-format.md. In short: docs.sqlite is the source of truth and its
commit is the durability point of every write; the vector file is append-only and checksummed per
row; the hnswlib file is derived, checkpointed atomically, and caught up from the vector file on
open.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np

from ... import filters
from ...errors import (
    CorruptStoreError,
    MRLError,
    InvalidInputError,
    ReadOnlyStoreError,
    SpecMismatchError,
    StoreClosedError,
    StoreLockedError,
)
from ...metadata import load_metadata, validate_metadatas
from ...mrl import as_matrix, check_width, normalize_as, prefix
from ...types import EmbeddingSpec, Hit, Record
from . import bulk, follow, handles, kernel, opening, salvage
from .docstore import check_record
from .bulk import PreparedBatch
from .crashpoints import crash_point
from .diagnostics import Diagnostics
from .fs import io_errors
from . import calibration, checkpoints, maintenance, query_sample, tuning
from ..effort import Calibration, check_target
from .maintenance import VerifyReport
from .handles import SharedStore
from .state import StoreState
from ..defaults import DEFAULT_TARGET_RECALL
from .manifest import Manifest
from .rwlock import ReadWriteLock
from .search import Searcher
from ..validation import check_ids, check_k, check_texts
from .kernel import to_float32
from .vectors import row_checksums

# A batch at least this large is inserted into hnswlib on all cores (under the write lock, as
# always): bulk loads build ~2x faster on 2 cores; small batches stay on one thread (less overhead).
PARALLEL_ADD_ROWS = 1024

log = logging.getLogger("mrl_retrievers.store")

T = TypeVar("T")

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

    def __init__(self, shared: SharedStore, *, read_only: bool = False) -> None:  # use create() / open()
        self._shared = shared
        self._read_only = read_only or shared.read_only
        self._closed = False
        shared.attach()
        # A handle dropped without close() gives its reference back (users rarely close(); the
        # last reference releases the lock and files).
        self._finalizer = weakref.finalize(self, shared.detach)

    # The shared parts, under the names the store's own modules use.
    @property
    def _s(self) -> StoreState:
        return self._shared.state

    @property
    def _rw(self) -> ReadWriteLock:
        return self._shared.rw

    @property
    def _searcher(self) -> Searcher:
        return self._shared.searcher

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
        segment_rows: int | None = None,
        target_recall: float | None = None,
    ) -> "MRLStore":
        """Create a new, empty store at ``path`` (``None``: a temporary store deleted on close).

        ``target_recall``: the recall@10 searches aim for; the store calibrates its per-query effort
        for it as it grows (``store/calibration.py``). Default 0.99, unless ``shortlist`` or ``ef``
        is given: those fix the effort instead (the expert override). Durable when it returns.
        Raises ``StoreExistsError`` if ``path`` holds anything but the remains of an interrupted
        create. ``segment_rows`` (expert): rows per coarse-index segment (``store/coarse.py``;
        default 4,194,304).
        """
        temporary = path is None
        directory = Path(tempfile.mkdtemp(prefix="mrl-store-")) if temporary else Path(path)
        manifest = opening.new_manifest(
            full_dim=full_dim, prefix_dim=prefix_dim, dtype=dtype, spec=spec, exact_below=exact_below,
            shortlist=shortlist, ef=ef, funnel_dim=funnel_dim, M=M, ef_construction=ef_construction,
            segment_rows=segment_rows, target_recall=target_recall,
        )
        with handles.registry_lock:
            opening.initialize(directory, manifest)
            shared = SharedStore(opening.open_state(directory, read_only=False, temporary=temporary))
            handles.register(directory, shared)
            return cls(shared)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, read_only: bool = False, spec: EmbeddingSpec | None = None) -> "MRLStore":
        """Open an existing store. One writer process at a time; any number of read-only handles.

        Opening a store several times in a process gives handles that share one set of open files
        and one writer lock; each ``close()`` closes only its own handle. A read-only handle
        follows the writer: every search answers from the latest committed state. ``spec``, if
        given, must match the store's (``SpecMismatchError`` otherwise).
        """
        directory = opening.check_store_path(Path(path))
        with handles.registry_lock:
            shared = handles.find(directory, read_only)
            if shared is None:
                shared = SharedStore(opening.open_state(directory, read_only=read_only, temporary=False))
                handles.register(directory, shared)
            store = cls(shared, read_only=read_only)
        if spec is not None:
            store.check_spec(spec)
        return store

    def close(self) -> None:
        """Close this handle. The last open handle on a store checkpoints the coarse index
        (writers), folds SQLite's WAL and releases the lock. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        self._shared.detach(before_release=self._final_checkpoint)

    def _final_checkpoint(self) -> None:
        shared = self._shared
        with shared.rw.write(), io_errors("writing", self.path):
            if not shared.read_only and checkpoints.pending_rows(shared.state):
                checkpoints.checkpoint(shared.state)
        if not shared.read_only:
            self._calibrate_if_due(closing=True)

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
        return self._read_only

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

    @property
    def diagnostics(self) -> Diagnostics:
        """For benchmarks and profiling; not a stable API: the search's stages one at a time under
        the read lock, page-cache eviction of the vector file, an in-memory calibration override
        (``store/local/diagnostics.py``)."""
        return Diagnostics(self._shared, self._check_open)

    def __len__(self) -> int:
        """Live items (a read-only handle first catches up with the writer). Safe beside writers."""
        return self._read(lambda: self._s.ann.live)

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
        hnswlib insert per row. The add that grows the store past 1.5x the size its search effort
        was calibrated at (or past ``exact_below``, the first time) recalibrates it before
        returning, under the read lock: searches keep running (``store/calibration.py``).
        """
        batch = self._prepare(ids, vectors, texts, metadatas)
        if not batch.ids:
            return []
        self._publish(batch)
        return list(batch.ids)

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        """Writes inside the block calibrate once, at its end (if the store then needs it), instead of
        at each ``add`` that crosses a growth step: a 20,000-text ``MRLIndex.add_texts`` in 2,048-text
        steps otherwise calibrates at 4k, 6k, 10k and 16k rows, 1.5x the work of one calibration at
        20k (4.2 s against 2.8). Searches meanwhile scan exactly (no calibration yet, up to
        ``search.EXACT_UNCALIBRATED``) or use the last one, widened. A block that raises leaves the
        calibration to the next write or ``close``. ``MRLIndex.add_texts`` loads this way when it
        writes more than one step."""
        with calibration.paused(self._s) as calibrating:
            yield
        if calibrating:
            self._calibrate_if_due()

    def _prepare(self, ids: Any, vectors: Any, texts: Any, metadatas: Any) -> PreparedBatch:
        """Validate a batch and bring it to the file's form (no lock, nothing written)."""
        ids = check_ids(ids)
        vectors = as_matrix(vectors, self.full_dim)
        if len(vectors) != len(ids):
            raise InvalidInputError(f"got {len(ids)} ids but {len(vectors)} vectors")
        texts = check_texts(texts, len(ids))
        metas = validate_metadatas(metadatas, len(ids))
        stored = normalize_as(vectors, self._s.vectors.dtype)
        return PreparedBatch(ids, stored, texts, metas, row_checksums(stored))

    def _publish(self, batch: PreparedBatch, cursor: tuple[str, int] | None = None) -> None:
        """Write a prepared batch: vector rows, one SQLite commit, the coarse index (write lock)."""
        ids, stored, texts, metas, crcs = batch.ids, batch.stored, batch.texts, batch.metas, batch.crcs
        self._check_writable()
        with self._rw.write(), io_errors("writing", self.path):
            self._check_open()
            s = self._s
            start = s.rows
            s.vectors.append(start, stored)
            superseded = s.docs.publish(ids, start, texts, metas, crcs, cursor=cursor)
            s.records.forget(superseded)  # committed: whatever fails below, no old version is served
            s.rows = start + len(ids)
            s.vectors.ensure_mapped(s.rows)
            s.ann.add(prefix(to_float32(stored[:, : self.prefix_dim]), self.prefix_dim), np.arange(start, s.rows),
                      num_threads=-1 if len(ids) >= PARALLEL_ADD_ROWS else 1)
            s.ann.mark_deleted(superseded)
            self._searcher.invalidate()
            crash_point("add:ann-updated")
            if checkpoints.checkpoint_due(s, CHECKPOINT_ROWS):
                self._background_checkpoint()
        # Not only at checkpoints: a store that stays open between them (most collections under
        # 20,000 items never reach one before close) must not search uncalibrated.
        self._calibrate_if_due()

    def bulk_add(self, source: Any, *, ids: Any = None, texts: Sequence[str | None] | None = None, name: str | None = None,
                 total: int | None = None, batch_rows: int = bulk.DEFAULT_BATCH_ROWS, progress: Any = False) -> bulk.LoadReport:
        """Load many vectors in bounded memory: ``source`` is a ``.npy`` path, an (n, full_dim)
        array or memmap, a callable ``start_row -> iterator of blocks``, or an iterable of blocks
        (arrays, or ``(ids, vectors[, texts[, metadatas]])`` tuples). ``ids`` default to the source
        row numbers as strings. Each batch commits as one ``add``; with a ``name`` (automatic for a
        ``.npy`` path) a load run again continues after the last batch that committed. ``progress``:
        True for a progress bar with rate and ETA (on a TTY), or a callable ``(done, total)``.
        See ``store/bulk.py``. Writers only; takes the write lock per batch.

        Example:
            >>> import numpy as np
            >>> store = MRLStore.create(None, full_dim=8, prefix_dim=4)
            >>> store.bulk_add(np.eye(8), batch_rows=3).rows
            8
            >>> store.close()
        """
        return bulk.bulk_add(self, source, ids=ids, texts=texts, name=name, total=total, batch_rows=batch_rows,
                             progress=progress)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete items by id; unknown ids are ignored. Returns how many were deleted.

        One transaction; durable when it returns; takes the write lock.
        """
        ids = check_ids(ids, allow_duplicates=True)
        self._check_writable()
        with self._rw.write(), io_errors("writing", self.path):
            self._check_open()
            rows = self._s.docs.delete(ids)
            self._s.records.forget(rows)
            self._s.ann.mark_deleted(rows)
            self._searcher.invalidate()
        return len(rows)

    def checkpoint(self) -> None:
        """Save the coarse index now (atomic; bounds the catch-up work of the next open)."""
        self._check_writable()
        with self._rw.write(), io_errors("writing", self.path):
            self._check_open()
            self._checkpoint()
        self._calibrate_if_due()

    def _checkpoint(self) -> None:
        checkpoints.checkpoint(self._s)

    def _background_checkpoint(self) -> None:
        """A checkpoint ``add`` takes on its own: the batch is already durable, and the index is
        derived (re-added from the vector file on open), so a failure here is logged, not raised."""
        try:
            checkpoints.checkpoint(self._s)
        except (MRLError, OSError) as exc:
            log.warning("could not checkpoint the coarse index of %s (%s); it will be caught up on open", self.path, exc)

    def _calibrate_if_due(self, *, closing: bool = False) -> None:
        """After a write: re-measure the search effort if the store grew (or its width changed)
        since the last calibration, as ``calibrate`` does: measured under the read lock, so this
        process's searches keep running (a calibration takes ~10 s at 20k items, minutes at 1M;
        under the write lock it stalled every search that long). Derived data: a failure is logged,
        not raised. ``closing``: the last handle's close (already marked closed; released after)."""
        if not calibration.due(self._s):
            return
        try:
            self._measure_and_record(self._s.manifest.target_recall, (lambda: None) if closing else self._check_open,
                                     only_if_due=True, source="checkpoint")
        except (MRLError, OSError, LookupError) as exc:
            log.warning("could not calibrate the search effort of %s (%s); searches use the recorded defaults", self.path, exc)

    def _measure_and_record(self, target: float, check_open: Callable[[], None], *, only_if_due: bool = False,
                            **options: Any) -> "Calibration | None":
        """Calibrate under the read lock, record under the write lock (the target becomes the
        store's). ``only_if_due``: skip when another thread calibrated first, and record nothing if
        the target or the width changed while measuring."""
        s = self._s
        with self._rw.read(long=True), io_errors("reading", self.path):  # searches pass a writer waiting for it
            check_open()
            if only_if_due and not calibration.due(s):
                return None
            last = s.manifest.calibration
            if only_if_due and last is not None and last.queries_crc is not None:
                # Measured on the user's queries last time: measure on them again (the sample kept).
                sample = query_sample.load(s.directory, last, s.manifest.full_dim)
                if sample is not None:
                    options = {**options, "queries": sample, "probes": len(sample), "seed": last.seed}
            measured = calibration.calibrate(s, target_recall=target, **options)
        return self._record_calibration(measured, options.get("queries"), check_open, only_if_due=only_if_due)

    def _record_calibration(self, measured: "Calibration", queries: np.ndarray | None, check_open: Callable[[], None],
                            *, only_if_due: bool = False) -> "Calibration | None":
        """Record a measured calibration (its target becomes the store's) under the write lock, with
        the sample of ``queries`` it was measured on, if any. ``only_if_due``: record nothing if the
        target or the width changed since it was measured."""
        s = self._s
        with self._rw.write(), io_errors("writing", self.path):
            check_open()
            m = s.manifest
            if only_if_due and (m.target_recall != measured.target_recall or m.prefix_dim != measured.prefix_dim
                                or m.funnel_dim is not None):
                return None
            if queries is not None:  # kept before the manifest names it
                sample = calibration.sample_queries(queries, measured.probes, measured.seed)
                measured = dataclasses.replace(measured, queries_crc=query_sample.save(s.directory, sample))
            s.set_manifest(dataclasses.replace(m, target_recall=measured.target_recall, calibration=measured))
            query_sample.remove_unused(s.directory, measured)
        return measured

    # --- reads ----------------------------------------------------------------------------------------

    def _read(self, fn: Callable[[], T]) -> T:
        """Run a read under the read lock, in one committed state (read-only handles follow the
        writer: ``store/follow.py``)."""
        self._check_open()
        return follow.read(self._shared, fn)

    def get(self, ids: Sequence[str], include_vectors: bool = False) -> list[Record]:
        """Records for the ids that exist, in the order asked, checksums checked. Safe beside writers."""
        ids = check_ids(ids, allow_duplicates=True)

        def read() -> tuple[dict, dict]:
            s = self._s
            found = s.docs.by_ids(ids)
            vectors = {}
            if include_vectors and found:
                rows = np.array(sorted(row for row, *_ in found.values()), dtype=np.int64)
                stored = s.vectors.gather(rows)
                s.checked.verify(s.docs, rows, stored)
                vectors = {int(r): v for r, v in zip(rows.tolist(), to_float32(stored))}
            return found, vectors

        found, vectors = self._read(read)
        records = []
        for id_ in ids:
            if id_ in found:
                row, text, meta, _crc, rcrc = found[id_]
                check_record(self.path, id_, text, meta, rcrc)
                records.append(Record(id=id_, text=text, metadata=load_metadata(meta), vector=vectors.get(row)))
        return records

    def ids(self, filter: Any = None) -> list[str]:
        """Ids of every live item (matching ``filter``), in insertion order. Reads SQLite only."""
        flt = filters.parse_filter(filter)
        return self._read(lambda: self._s.docs.ids_matching(flt))

    def search(self, vector: Any, k: int = 10, shortlist: int | None = None, filter: Any = None, *, ef: int | None = None,
               target_recall: float | None = None) -> list[Hit]:
        """Top-``k`` items by full-width cosine: coarse shortlist on the prefix, exact rerank.

        The effort per query adapts to reach the store's ``target_recall`` (or this call's; 1.0 scans
        exactly); ``shortlist``/``ef`` fix it instead. Returns fewer hits when fewer items match. Safe
        beside other searches and beside writers (read lock); costs one hnswlib query per effort level
        climbed, a read of each candidate row and, for hits this handle has not returned before,
        one SQLite query (their records stay in memory afterwards: ``records.HitRecords``).
        """
        query = kernel.unit_query(vector, self.full_dim)
        flt = filters.parse_filter(filter) if filter is not None else None
        searcher = self._searcher
        searcher.plan(k, shortlist, ef, target_recall)  # bad arguments fail before any lock is taken (cached)
        return self._read(lambda: searcher.one(query, searcher.plan(k, shortlist, ef, target_recall), flt))

    def search_batch(self, vectors: Any, k: int = 10, shortlist: int | None = None, filter: Any = None, *, ef: int | None = None,
                     target_recall: float | None = None) -> list[list[Hit]]:
        """``search`` for each row of ``vectors``; the (first) coarse stage runs as one threaded batch."""
        queries = kernel.unit_queries(vectors, self.full_dim)
        flt = filters.parse_filter(filter)
        self._searcher.plan(k, shortlist, ef, target_recall)
        return self._read(lambda: self._searcher.batch(queries, self._searcher.plan(k, shortlist, ef, target_recall), flt))

    def search_exact(self, vector: Any, k: int = 10, filter: Any = None) -> list[Hit]:
        """The oracle: exact full-width scan of every live (and matching) item. Read lock."""
        query = kernel.unit_query(vector, self.full_dim)
        k = check_k(k)
        flt = filters.parse_filter(filter)
        return self._read(lambda: self._searcher.exact(query, None if flt is None else self._s.docs.rows_matching(flt), k))

    def search_exact_batch(self, vectors: Any, k: int = 10, filter: Any = None) -> list[list[Hit]]:
        """``search_exact`` for each row of ``vectors`` in one pass over the vector file: the
        oracle for large stores (one block of rows read once for all queries). Read lock."""
        queries = kernel.unit_queries(vectors, self.full_dim)
        k = check_k(k)
        flt = filters.parse_filter(filter)
        return self._read(lambda: self._searcher.exact_batch(queries, None if flt is None else self._s.docs.rows_matching(flt), k))

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
            maintenance.reindex(self._s, width, funnel_dim)
        self._calibrate_if_due()  # a new width needs its own calibration

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
        target = check_target(target_recall) if target_recall is not None else (self.manifest.target_recall or DEFAULT_TARGET_RECALL)
        if options.get("queries") is not None:
            options["queries"] = as_matrix(options["queries"], self.full_dim, what="calibration queries")
        result = self._measure_and_record(target, self._check_open, **{"source": "calibrate", **options})
        assert result is not None  # only the checkpoint's call may skip
        return result

    def compact(self) -> int:
        """Rewrite the vector file without deleted/overwritten rows; returns rows reclaimed.

        Crash-safe: the new file is published by one SQLite transaction. Takes the write lock.
        """
        self._check_writable()
        with self._rw.write(), io_errors("writing", self.path):
            self._check_open()
            reclaimed = maintenance.compact(self._s)
            self._searcher.invalidate()
        self._calibrate_if_due()
        return reclaimed

    def stats(self) -> dict[str, Any]:
        """Counts and sizes for ``info``: live items, rows, widths, dtype, bytes on disk."""
        return self._read(lambda: maintenance.stats(self._s))

    @classmethod
    def verify(cls, path: str | os.PathLike[str]) -> VerifyReport:
        """Check a store without changing it: manifest, SQLite integrity and committed-row count,
        vector file size, every row checksum, every text/metadata checksum, and a sample of the
        coarse-index checkpoint against the vectors (derived: a problem there is a warning).

        Damage is reported, not raised. What is not damage is raised: ``StoreNotFoundError`` (no
        store there), ``UnsupportedFormatError`` (a newer format: upgrade, never rebuild),
        ``ReadOnlyStoreError`` / ``StoreIOError`` (the files cannot be read here).
        """
        report = VerifyReport(str(path))
        directory = opening.check_store_path(Path(path))
        try:
            state = opening.open_state(directory, read_only=True, temporary=False)
        except CorruptStoreError as exc:
            report.problems.append(str(exc))
            return report
        try:
            found = maintenance.verify_state(state)
        except CorruptStoreError as exc:
            found = VerifyReport(str(path), problems=[str(exc)])
        finally:
            opening.release(state)
        if state.ann_note:
            found.warnings.insert(0, f"coarse index rebuilt in memory: {state.ann_note}")
        return found

    @classmethod
    def rebuild(cls, path: str | os.PathLike[str]) -> VerifyReport:
        """Repair a store from what is intact (``store/salvage.py``): reconstruct a damaged manifest
        from SQLite's copy, rebuild damaged SQLite indexes (or copy every readable row), keep every
        whole row of a short vector file, drop the items whose vector or text/metadata fail their
        checksums (listed in the report: re-add them), then rebuild the coarse index. Never touches
        a store of a newer format (``UnsupportedFormatError``)."""
        directory = opening.check_store_path(Path(path))
        with handles.registry_lock:
            if handles.find(directory, False) is not None:
                raise StoreLockedError(f"store {directory} is open for writing in this process; close it before rebuild")
            report = salvage.repair(directory, opening.LOCK_NAME)
        with cls.open(path) as store:
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
