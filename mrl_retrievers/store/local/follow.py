"""Read-only handles follow the writer: every read answers from exactly one committed state.

A read-only store (another process writes it, or nobody does) keeps its own coarse index in memory
and maps the vector file of the row epoch it reflects; ``StoreState.token`` names the committed
state those reflect. Each read opens a SQLite read transaction (``DocStore.snapshot``). If the
snapshot is newer than the token, the handle first catches up under its write lock: rows committed
since are added to its index, new tombstones are marked (read from ``tombstone_log``), the writer's
newer search settings are taken from the manifest (a calibration or ``tune`` announces itself with
a commit), and after a compaction (a new epoch) it maps the new vector file and loads the writer's
checkpoint of that epoch or rebuilds the index from the file. Then the whole read — coarse search, rerank, checksum
checks, ids, texts and metadata — runs inside that one snapshot, so the rows it ranks, the ids it
returns and the scores it reports all belong to one state. A compaction cannot pull a vector file
away from a reader: the writer unlinks the old file, and the reader's open descriptor and map keep
it readable until the reader moves on.

Most reads find nothing committed since the last one (``PRAGMA data_version`` on the thread's
connection says so without a transaction: ``DocStore.unchanged``), and a warm search needs no SQLite
at all. Such a read runs without a snapshot and opens one only at its first SQLite read
(``DocStore.pinned``); if a writer committed in between, that read raises ``StaleRead`` and the read
starts again the full way. A commit landing during a read that needs no SQLite is one that read
does not see, as if it had landed just after: the answer is still one committed state's.

Writers need none of this: their process makes every change, under the store's write lock.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Callable, TypeVar

import numpy as np

from ...errors import CorruptStoreError, MRLError, StoreIOError
from .docstore import CommittedState, StaleRead
from .manifest import load_manifest
from .vectors import VectorFile

if TYPE_CHECKING:  # pragma: no cover
    from .handles import SharedStore
    from .state import StoreState

log = logging.getLogger("mrl_retrievers.store")

T = TypeVar("T")

# Attempts to pin a snapshot that this handle's index reflects. A retry happens only when another
# thread of this process caught the index up past our snapshot, or a compaction removed the file
# our snapshot names, between two statements: each needs a new commit by the writer in that window.
MAX_ATTEMPTS = 100


class _Retry(Exception):
    """The snapshot is older than what the handle now reflects (or names a file already gone)."""


def read(shared: "SharedStore", fn: Callable[[], T]) -> T:
    """Run ``fn`` under the store's read lock, inside one committed state the handle reflects."""
    state = shared.state
    if not state.read_only:
        shared.rw.acquire_read()
        try:
            return fn()
        finally:
            shared.rw.release_read()
    docs = state.docs
    if docs.unchanged() == state.token:  # nothing committed since this thread last looked: no transaction
        shared.rw.acquire_read()
        try:
            with docs.pinned(state.token):  # under the lock: the state fn reads cannot move
                return fn()
        except StaleRead:
            pass  # a commit landed after the look and fn needed SQLite: pin a snapshot first, below
        finally:
            shared.rw.release_read()
    for _ in range(MAX_ATTEMPTS):
        with docs.snapshot() as snap:
            if snap.token != state.token:
                shared.rw.acquire_write()
                try:
                    if snap.token != state.token:
                        if not _newer(snap, state):
                            raise _Retry
                        catch_up(state, snap)
                        shared.searcher.invalidate()
                except _Retry:
                    shared.rw.release_write()
                    continue
                except BaseException:
                    shared.rw.release_write()
                    raise
                shared.rw.downgrade()
            else:
                shared.rw.acquire_read()
            try:
                if snap.token == state.token:
                    return fn()
            finally:
                shared.rw.release_read()
    raise StoreIOError(f"store {state.directory} changed {MAX_ATTEMPTS} times while a read tried to pin one state; try again")


def _newer(snap: CommittedState, state: "StoreState") -> bool:
    """Whether the snapshot is later than the state the handle reflects (tokens only move forward)."""
    epoch, rows, generation, tombstones = state.token
    if snap.epoch != epoch:
        return snap.epoch > epoch
    if snap.generation is not None and generation is not None:
        return snap.generation > generation
    if snap.generation is not None:  # a writer upgraded a schema-1 store since: newer
        return True
    if generation is not None:
        return False
    return snap.rows >= rows and (snap.tombstones or 0) >= (tombstones or 0)


def catch_up(state: "StoreState", snap: CommittedState) -> None:
    """Bring the handle's index and map to ``snap`` (caller holds the write lock, inside ``snap``)."""
    if snap.epoch != state.epoch or snap.rows < state.rows:
        _reload(state, snap)
    else:
        from .checkpoints import insert_prefixes

        state.vectors.ensure_mapped(snap.rows)
        if state.vectors.rows_on_disk() < snap.rows:
            raise CorruptStoreError(f"{state.vectors.path.name} holds fewer rows than the {snap.rows} committed")
        insert_prefixes(state.ann, state.vectors, np.arange(state.rows, snap.rows, dtype=np.int64), state.ann.dim)
        state.rows = snap.rows
        _apply_tombstones(state, snap)
        _adopt_search_settings(state)
    state.token = snap.token


def _adopt_search_settings(state: "StoreState") -> None:
    """Take the writer's newer search settings (calibration, target, shortlist/ef: recorded in the
    manifest, announced by a commit) while this handle's rows and index stay; a manifest of another
    width is the writer's reindex, which this handle follows with the index. Until the seventeenth
    session a read-only handle re-read the manifest only on a new row epoch, so a serving process
    beside an ingesting one never used the writer's calibrations."""
    try:
        newer = load_manifest(state.directory)
    except (MRLError, OSError) as exc:  # derived settings: keep searching with the ones held
        log.warning("read-only handle on %s kept its search settings (%s)", state.directory, exc)
        return
    held = state.manifest
    if (newer.prefix_dim, newer.funnel_dim) == (held.prefix_dim, held.funnel_dim) and newer.search_settings() != held.search_settings():
        state.manifest = held.with_search_settings_of(newer)


def _apply_tombstones(state: "StoreState", snap: CommittedState) -> None:
    if snap.generation is None:  # schema 1: no log; marking is idempotent
        rows = state.docs.tombstone_rows()
        state.ann.mark_deleted(rows)
        state.records.forget(rows)
        return
    rows, state.tomb_seq = state.docs.tombstones_after(state.tomb_seq)
    state.ann.mark_deleted(rows)
    state.records.forget(rows)


def _reload(state: "StoreState", snap: CommittedState) -> None:
    """A new row epoch (the writer compacted): map its vector file and load or build its index."""
    from .checkpoints import load_or_rebuild_ann

    manifest = load_manifest(state.directory)
    try:
        vectors = VectorFile(state.directory / snap.vector_file, dim=manifest.full_dim, dtype=manifest.dtype, writable=False)
    except FileNotFoundError:
        raise _Retry from None  # a later compaction replaced it: a newer snapshot names its file
    if vectors.rows_on_disk() < snap.rows:
        vectors.close()
        raise CorruptStoreError(f"{vectors.path.name} holds fewer rows than the {snap.rows} committed")
    moved = dataclasses.replace(state, manifest=manifest, vectors=vectors, epoch=snap.epoch, rows=snap.rows)
    try:
        ann = load_or_rebuild_ann(moved)
    except BaseException:
        vectors.close()
        raise
    old = state.vectors
    state.manifest, state.vectors, state.epoch, state.rows, state.ann = manifest, vectors, snap.epoch, snap.rows, ann
    state.checked.reset()
    state.records.reset()
    state.tomb_seq = state.docs.tombstone_seq()
    state.ann_note = moved.ann_note
    old.close()
    log.info("read-only handle on %s moved to row epoch %d", state.directory, snap.epoch)


__all__ = ["catch_up", "read"]
