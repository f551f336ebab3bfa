"""Work on a whole store: build/load the coarse index, checkpoint, reindex, compact, verify, rebuild.

The caller (MRLStore) holds the write lock for every mutating function here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CorruptStoreError
from ..mrl import prefix
from . import calibration
from .ann import AnnIndex
from .crashpoints import crash_point
from .fs import fsync_dir
from .manifest import AnnState, Manifest
from .vectors import VectorFile, to_float32, vector_file_name

if TYPE_CHECKING:  # pragma: no cover
    from .opening import StoreState

log = logging.getLogger("mrl_retrievers.store")

_BLOCK = 65536


# --- the coarse index -----------------------------------------------------------------------------


def build_ann(vectors: VectorFile, rows: np.ndarray, manifest: Manifest, prefix_dim: int) -> AnnIndex:
    """A fresh coarse index over the given rows of the vector file (threaded bulk insert)."""
    ann = AnnIndex.empty(prefix_dim, M=manifest.M, ef_construction=manifest.ef_construction, capacity=len(rows) + 1024)
    _insert_prefixes(ann, vectors, rows, prefix_dim)
    return ann


def _insert_prefixes(ann: AnnIndex, vectors: VectorFile, rows: np.ndarray, prefix_dim: int) -> None:
    """Add the renormalized prefixes of ``rows``, read from the file block by block (prefix columns only)."""
    for start in range(0, len(rows), _BLOCK):
        part = rows[start : start + _BLOCK]
        ann.add(prefix(to_float32(vectors.gather(part, columns=prefix_dim)), prefix_dim), part, num_threads=-1)


def load_or_rebuild_ann(state: "StoreState") -> AnnIndex:
    """Load the checkpoint if it is ours and current, catch it up, else rebuild from the vectors."""
    m, a = state.manifest, state.manifest.ann
    ann = None
    if a.file and a.epoch == state.epoch and a.prefix_dim == m.prefix_dim and a.watermark <= state.rows:
        try:
            ann = AnnIndex.load(state.directory / a.file, dim=m.prefix_dim, size=a.size, crc32=a.crc32)
        except CorruptStoreError as exc:
            state.ann_note = str(exc)
            log.warning("coarse index of %s is unusable (%s); rebuilding it from the vector file", state.directory, exc)
    if ann is not None:
        _insert_prefixes(ann, state.vectors, np.arange(a.watermark, state.rows, dtype=np.int64), m.prefix_dim)
        ann.mark_deleted(state.docs.tombstone_rows())
        ann.deleted = ann.count - state.docs.count()
        if ann.deleted >= 0:
            return ann
        state.ann_note = "checkpoint misses live rows"
        log.warning("coarse index of %s misses live rows; rebuilding it", state.directory)
    return build_ann(state.vectors, state.docs.live_rows(), m, m.prefix_dim)


def checkpoint(state: "StoreState", manifest: Manifest | None = None, ann: AnnIndex | None = None) -> None:
    """Save the coarse index under a new name, then point the manifest at it (atomic), then
    delete the previous file. A crash anywhere leaves the old checkpoint valid.

    ``manifest``/``ann`` (a reindex) replace the handle's own only once the manifest is written, so
    a failure leaves the handle exactly as it was.
    """
    manifest = manifest or state.manifest
    ann = ann or state.ann
    name = f"prefix.{state.epoch:06d}.{secrets.token_hex(4)}.hnsw"
    size, crc = ann.save(state.directory / name)
    old = state.manifest.ann.file
    ann_state = AnnState(file=name, epoch=state.epoch, watermark=state.rows, prefix_dim=manifest.prefix_dim, size=size, crc32=crc)
    state.set_manifest(dataclasses.replace(manifest, ann=ann_state))
    state.ann = ann
    if old and old != name:
        (state.directory / old).unlink(missing_ok=True)
    crash_point("checkpoint:done")
    calibration.after_checkpoint(state)  # re-measures the search effort when the store has grown


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
        "spec": m.spec.to_dict() if m.spec else None,
        "disk_bytes": sum(files.values()),
        "files": files,
        # hnswlib memory: N * (4 * dim + 8 * M + ~110) bytes (FACTS.md); the vector file is mapped, not resident.
        "estimated_ram_bytes": state.ann.count * (4 * m.prefix_dim + 8 * m.M + 110),
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
    """Check SQLite integrity, the vector file and every row checksum of an open store."""
    report = VerifyReport(str(state.directory))
    report.problems.extend(f"docs.sqlite: {p}" for p in state.docs.integrity_problems())
    if state.vectors.rows_on_disk() < state.rows:
        report.problems.append(f"{state.vectors.path.name}: {state.vectors.rows_on_disk()} rows on disk, {state.rows} committed")
        return report
    pairs = state.docs.all_rows_and_crcs()
    for start in range(0, len(pairs), _BLOCK):
        chunk = pairs[start : start + _BLOCK]
        rows = np.array([r for r, _ in chunk], dtype=np.int64)
        for (row, crc), data in zip(chunk, state.vectors.gather(rows)):
            if zlib.crc32(data.tobytes()) != crc:
                report.damaged_ids.append(row)
    if report.damaged_ids:
        found = state.docs.by_rows(report.damaged_ids)
        report.damaged_ids = sorted(found[r][0] for r in report.damaged_ids if r in found)
        report.problems.append(f"{len(report.damaged_ids)} vector rows fail their checksum (their items must be re-added)")
    if state.ann.live != state.docs.count():
        report.warnings.append(f"coarse index holds {state.ann.live} live items, docs.sqlite {state.docs.count()}")
    return report


__all__ = ["VerifyReport", "build_ann", "checkpoint", "compact", "load_or_rebuild_ann", "reindex", "stats", "verify_state"]
