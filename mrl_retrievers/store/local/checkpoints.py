"""The coarse index on disk: build it, load it segment by segment, checkpoint what changed.

Each segment (store/coarse.py) has its own checkpoint file, named in the manifest with the rows it
holds (``watermark``), its size and its CRC-32. Loading trusts a file only if it is byte-for-byte
the one written, for the current row epoch and prefix width, and if a sample of its rows matches
the vector file; rows above its watermark are re-added from the vector file and tombstones are
re-applied from SQLite. A segment without a usable file is rebuilt from the vector file alone.
A checkpoint writes only the segments whose rows grew since their file was written. The caller
holds the store's write lock for builds and checkpoints.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from typing import TYPE_CHECKING

import numpy as np

from ...errors import CorruptStoreError
from ...mrl import prefix
from .ann import AnnIndex
from .coarse import CoarseIndex
from .crashpoints import crash_point
from .manifest import AnnState, Manifest, SegmentState
from .kernel import to_float32
from .vectors import VectorFile

if TYPE_CHECKING:  # pragma: no cover
    from .state import StoreState

log = logging.getLogger("mrl_retrievers.store")

_BLOCK = 65536
# Rows of each loaded checkpoint compared with the vector file (open) and of verify's larger sample.
INDEX_SAMPLE = 16
VERIFY_INDEX_SAMPLE = 512


def empty_index(manifest: Manifest, prefix_dim: int, segment_rows: int | None = None) -> CoarseIndex:
    return CoarseIndex(prefix_dim, M=manifest.M, ef_construction=manifest.ef_construction,
                       segment_rows=manifest.segment_rows if segment_rows is None else segment_rows)


def build_ann(vectors: VectorFile, rows: np.ndarray, manifest: Manifest, prefix_dim: int) -> CoarseIndex:
    """A fresh coarse index over the given rows of the vector file (threaded bulk insert)."""
    index = empty_index(manifest, prefix_dim)
    numbers, counts = np.unique(index.segment_of(rows), return_counts=True)
    for number, count in zip(numbers.tolist(), counts.tolist()):
        index.reserve(number, count)  # one allocation per graph, not a doubling series
    insert_prefixes(index, vectors, rows, prefix_dim)
    return index


def insert_prefixes(index: CoarseIndex | AnnIndex, vectors: VectorFile, rows: np.ndarray, prefix_dim: int) -> None:
    """Add the renormalized prefixes of ``rows``, read from the file block by block (prefix columns only)."""
    for start in range(0, len(rows), _BLOCK):
        part = rows[start : start + _BLOCK]
        index.add(prefix(to_float32(vectors.gather(part, columns=prefix_dim)), prefix_dim), part, num_threads=-1)


def load_or_rebuild_ann(state: "StoreState") -> CoarseIndex:
    """Every segment from its checkpoint when that is ours and current (then caught up), else rebuilt."""
    m, a = state.manifest, state.manifest.ann
    usable = a.epoch == state.epoch and a.prefix_dim == m.prefix_dim and bool(a.segments)
    index = empty_index(m, m.prefix_dim, a.segment_rows if usable else None)
    if state.rows:
        last = int(index.segment_of(np.array([state.rows - 1]))[0])
        for number in range(last + 1):
            _load_segment(state, index, number, a.segments[number] if usable and number < len(a.segments) else None)
    index.mark_deleted(state.docs.tombstone_rows())
    live = state.docs.live_per_segment(index.segment_rows)
    index.set_live(live)
    short = [n for n, s in index.segments.items() if s.deleted < 0]
    for number in short:  # a checkpoint that misses live rows: rebuild that segment
        state.ann_note = "checkpoint misses live rows"
        log.warning("coarse index segment %d of %s misses live rows; rebuilding it", number, state.directory)
        del index.segments[number]
        _rebuild_segment(state, index, number)
    if short:
        index.set_live(live)
    return index


def _load_segment(state: "StoreState", index: CoarseIndex, number: int, saved: SegmentState | None) -> None:
    start, end = index.bounds(number)
    top = min(end, state.rows)
    if saved is not None and start < saved.watermark <= top:
        try:
            segment = AnnIndex.load(state.directory / saved.file, dim=index.dim, size=saved.size, crc32=saved.crc32)
            check_index_sample(segment, state.vectors, state.docs.live_rows_sample(saved.watermark, INDEX_SAMPLE, start=start),
                               index.dim)
        except CorruptStoreError as exc:
            state.ann_note = str(exc)
            log.warning("coarse index of %s is unusable (%s); rebuilding it from the vector file", state.directory, exc)
        else:
            index.segments[number] = segment
            insert_prefixes(index, state.vectors, np.arange(saved.watermark, top, dtype=np.int64), index.dim)
            return
    _rebuild_segment(state, index, number)


def _rebuild_segment(state: "StoreState", index: CoarseIndex, number: int) -> None:
    start, end = index.bounds(number)
    rows = state.docs.live_rows(start=start, end=min(end, state.rows))
    if len(rows):
        index.reserve(number, len(rows))
        insert_prefixes(index, state.vectors, rows, index.dim)


def check_index_sample(index: CoarseIndex | AnnIndex, vectors: VectorFile, rows: np.ndarray, prefix_dim: int) -> None:
    """The index holds, under each sampled row's label, that row's renormalized prefix.

    Size, CRC and header only prove a checkpoint is the file that was written; an index swapped in
    from another store (with its manifest entry) passes those and would silently rank the wrong rows.
    """
    if len(rows) == 0:
        return
    held = index.vectors_of(rows)
    if held is None:
        raise CorruptStoreError("coarse index lacks labels of live rows")
    expected = prefix(to_float32(vectors.gather(rows, columns=prefix_dim)), prefix_dim)
    if not np.allclose(held, expected, atol=1e-3):
        raise CorruptStoreError("coarse index holds other vectors than the vector file under the same rows")


def pending(state: "StoreState") -> tuple[int, int]:
    """(rows not in any checkpoint file, rows of the segments a checkpoint would write now)."""
    a, index = state.manifest.ann, state.ann
    if a.epoch != state.epoch or not a.segments or index is None or a.segment_rows != index.segment_rows:
        return state.rows, state.rows
    missing = dirty = 0
    for number in index.segments:
        start, end = index.bounds(number)
        top = min(end, state.rows)
        behind = top - max(start, a.watermark(number))
        if behind > 0:
            missing += behind
            dirty += top - start
    return missing, dirty


def pending_rows(state: "StoreState") -> int:
    """Rows not yet in any coarse-index checkpoint file."""
    return pending(state)[0]


def checkpoint_due(state: "StoreState", min_rows: int) -> bool:
    """Whether enough rows are unsaved to pay for a checkpoint: at least ``min_rows``, and at least a
    third of the rows it would write (bounds a long build's rewrites to ~3x its size)."""
    missing, dirty = pending(state)
    return missing >= max(min_rows, dirty // 3)


def checkpoint(state: "StoreState", manifest: Manifest | None = None, index: CoarseIndex | None = None) -> None:
    """Save the segments that changed under new names, then point the manifest at them (atomic),
    then delete the files they replace. A crash anywhere leaves the previous checkpoint valid.

    ``manifest``/``index`` (a reindex or compaction) replace the handle's own only once the manifest
    is written, so a failure leaves the handle exactly as it was; all their segments are written.
    """
    manifest = manifest or state.manifest
    fresh = index is not None
    index = index or state.ann
    old = state.manifest.ann
    keep_old = not fresh and old.epoch == state.epoch and old.segment_rows == index.segment_rows and old.prefix_dim == index.dim
    segments: list[SegmentState | None] = []
    for number in range(max(index.segments, default=-1) + 1):
        segment = index.segments.get(number)
        start, end = index.bounds(number)
        top = min(end, state.rows)
        saved = old.segments[number] if keep_old and number < len(old.segments) else None
        if segment is None:
            segments.append(None)
        elif saved is not None and saved.watermark >= top:
            segments.append(saved)  # unchanged since it was written: never rewritten
        else:
            name = f"prefix.{state.epoch:06d}.{number:04d}.{secrets.token_hex(4)}.hnsw"
            size, crc = segment.save(state.directory / name)
            segments.append(SegmentState(file=name, watermark=top, size=size, crc32=crc))
    ann_state = AnnState(epoch=state.epoch, prefix_dim=index.dim, segment_rows=index.segment_rows, segments=tuple(segments))
    state.set_manifest(dataclasses.replace(manifest, ann=ann_state))
    state.ann = index
    for name in old.files - ann_state.files:
        (state.directory / name).unlink(missing_ok=True)
    crash_point("checkpoint:done")


__all__ = ["INDEX_SAMPLE", "VERIFY_INDEX_SAMPLE", "build_ann", "check_index_sample", "checkpoint", "checkpoint_due", "empty_index",
           "insert_prefixes", "load_or_rebuild_ann", "pending", "pending_rows"]
