"""Work on a whole store: reindex, compact, stats, verify (the coarse index's files: checkpoints.py).

The caller (MRLStore) holds the write lock for every mutating function here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import CorruptStoreError
from .checkpoints import VERIFY_INDEX_SAMPLE, build_ann, check_index_sample, checkpoint
from .crashpoints import crash_point
from . import ann, kernel, query_sample
from .fs import fsync_dir
from .docstore import damaged_record
from .vectors import VectorFile, row_checksums, vector_file_name

if TYPE_CHECKING:  # pragma: no cover
    from .state import StoreState

log = logging.getLogger("mrl_retrievers.store")

_BLOCK = 65536


def reindex(state: "StoreState", prefix_dim: int, funnel_dim: int | None) -> None:
    m = state.manifest
    if funnel_dim is None and m.funnel_dim is not None and m.funnel_dim > prefix_dim:
        funnel_dim = m.funnel_dim
    new_ann = build_ann(state.vectors, state.docs.live_rows(), m, prefix_dim)
    crash_point("reindex:built")
    checkpoint(state, dataclasses.replace(m, prefix_dim=prefix_dim, funnel_dim=funnel_dim), new_ann)


# --- compaction ---------------------------------------------------------------------------------------


def compact(state: "StoreState") -> int:
    """Copy live rows to a new vector file; one SQLite transaction switches to it."""
    live = state.docs.live_rows()
    reclaimed = state.rows - len(live)
    if reclaimed == 0:
        return 0
    epoch = state.epoch + 1
    name = vector_file_name(epoch, state.manifest.dtype)
    new_path = state.directory / name
    _write_rows(state.vectors, live, new_path)
    crash_point("compact:vectors-written")
    mapping = np.full(state.rows, -1, dtype=np.int64)
    mapping[live] = np.arange(len(live))
    state.docs.renumber(mapping, epoch=epoch, vector_file=name)  # the commit point
    state.records.reset()  # row numbers changed: at once, whatever fails below
    old = state.vectors
    state.vectors = VectorFile(new_path, dim=state.manifest.full_dim, dtype=state.manifest.dtype, writable=True)
    state.epoch, state.rows = epoch, len(live)
    state.checked.reset()  # row numbers changed
    old.close()
    old.path.unlink(missing_ok=True)
    state.ann = build_ann(state.vectors, np.arange(len(live), dtype=np.int64), state.manifest, state.manifest.prefix_dim)
    checkpoint(state)
    return reclaimed


def _write_rows(source: VectorFile, rows: np.ndarray, path: Path) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        for start in range(0, len(rows), _BLOCK):
            data = source.gather(rows[start : start + _BLOCK]).tobytes()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


# --- inspection ---------------------------------------------------------------------------------------


def stats(state: "StoreState") -> dict:
    m = state.manifest
    files = {p.name: p.stat().st_size for p in state.directory.iterdir() if p.is_file()}
    live = state.ann.live
    return {
        "path": str(state.directory),
        "count": live,
        "rows": state.rows,
        "tombstones": state.rows - live,
        "full_dim": m.full_dim,
        "prefix_dim": m.prefix_dim,
        "funnel_dim": m.funnel_dim,
        "dtype": m.dtype,
        "shortlist": m.shortlist,
        "ef": m.ef,
        "target_recall": m.target_recall,
        "calibration": m.calibration.to_dict() if m.calibration else None,
        "exact_below": m.exact_below,
        "segments": len(state.ann.segments),  # coarse-index segments (``store/coarse.py``)
        "scoring": kernel.describe(),  # of this process, not of the store
        "coarse_index": ann.describe(),  # the compiled graph or the hnswlib package (this process too)
        "spec": m.spec.to_dict() if m.spec else None,
        "disk_bytes": sum(files.values()),
        "files": files,
        # the coarse index's (float16 or float32 prefixes: ``AnnIndex.ram_bytes``); the vector file is mapped, not resident.
        "estimated_ram_bytes": state.ann.ram_bytes(),
        # hits' records this handle keeps in memory (``records.HitRecords``), of this process too
        "records_in_memory": len(state.records),
        "records_in_memory_bytes": state.records.bytes,
    }


@dataclass
class VerifyReport:
    """What ``verify`` found. ``damaged_rows`` are items whose vectors fail their checksum."""

    path: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    damaged_ids: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_state(state: "StoreState") -> VerifyReport:
    """Check an open store: SQLite's integrity and committed-row count, the vector file, every row's
    checksum, every record's checksum (id, text, metadata), and a sample of the coarse index against
    the vector file. Changes nothing."""
    report = VerifyReport(str(state.directory))
    docs = state.docs
    report.problems.extend(f"docs.sqlite: {p}" for p in docs.integrity_problems())
    if state.vectors.rows_on_disk() < state.rows:
        report.problems.append(f"{state.vectors.path.name}: {state.vectors.rows_on_disk()} rows on disk, {state.rows} committed")
        return report
    damaged_rows = []
    pairs = docs.all_rows_and_crcs()
    for start in range(0, len(pairs), _BLOCK):
        chunk = pairs[start : start + _BLOCK]
        rows = np.array([r for r, _ in chunk], dtype=np.int64)
        for (row, crc), actual in zip(chunk, row_checksums(state.vectors.gather(rows))):
            if actual != crc:
                damaged_rows.append(row)
    if damaged_rows:
        found = docs.by_rows(damaged_rows)
        report.damaged_ids = sorted(found[r][0] for r in damaged_rows if r in found)
        report.problems.append(f"{len(report.damaged_ids)} vector rows fail their checksum (their items must be re-added)")
    bad_records, unchecked = [], 0
    for part in docs.iter_records():
        for id_, text, meta, rcrc in part:
            unchecked += rcrc is None
            if damaged_record(id_, text, meta, rcrc):
                bad_records.append(id_)
    if bad_records:
        report.problems.append(f"{len(bad_records)} items fail their text/metadata checksum (their items must be re-added)")
        report.damaged_ids = sorted(set(report.damaged_ids) | set(bad_records))
    if unchecked:
        report.warnings.append(f"{unchecked} items were written before texts and metadata had checksums (not checked)")
    live = docs.count()
    if state.ann.live != live:
        report.warnings.append(f"coarse index holds {state.ann.live} live items, docs.sqlite {live}")
    try:
        check_index_sample(state.ann, state.vectors, docs.live_rows_sample(state.rows, VERIFY_INDEX_SAMPLE), state.manifest.prefix_dim)
    except CorruptStoreError as exc:
        report.warnings.append(f"{exc} (the coarse index is derived: a writer rebuilds it)")
    sample = query_sample.problem(state.directory, state.manifest.calibration, state.manifest.full_dim)
    if sample is not None:
        report.warnings.append(f"{sample}: the next recalibration measures on probes")
    return report


__all__ = ["VerifyReport", "compact", "reindex", "stats", "verify_state"]
