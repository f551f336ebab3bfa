"""Creating and opening a store on disk: path checks, recovery, the open state and its release.

Open = verify the manifest -> take the writer lock -> read SQLite's committed state -> check the
vector file holds every committed row (cut off an uncommitted tail) -> load the coarse-index
checkpoint if it is byte-for-byte ours and of the current row epoch, else rebuild it -> re-add rows
above its watermark -> re-apply tombstones -> remove orphans. Nothing unchecked reaches hnswlib.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np

from ...errors import CorruptStoreError, InvalidInputError, ReadOnlyStoreError, StoreExistsError, StoreNotFoundError
from ...mrl import check_width
from ...types import EmbeddingSpec
from . import checkpoints, query_sample
from .coarse import CoarseIndex
from .docstore import DOCS_NAME, DocStore
from ..effort import check_target
from .fs import WriterLock, fsync_dir, io_errors, remove_orphan_temps
from .state import StoreState
from ..validation import check_create_args
from .manifest import FORMAT_VERSION, MANIFEST_NAME, REPAIR_HINT, Manifest, load_manifest
from .vectors import VectorFile, row_checksums, vector_file_name

log = logging.getLogger("mrl_retrievers.store")

LOCK_NAME = "lock"
_OUR_FILE = re.compile(r"^(manifest\.json|docs\.sqlite(-wal|-shm|-journal)?|lock|vectors\.\d{6}\.f(16|32)|prefix\.[0-9a-f.]+\.hnsw)(\.tmp-mrl)?$")


def release(state: StoreState) -> None:
    """Close files, fold the WAL, drop the lock, delete a temporary store. Safe to call twice."""
    if state.released:
        return
    state.released = True
    try:
        state.docs.close(checkpoint=not state.read_only)
        state.vectors.close()
    finally:
        if state.lock is not None:
            state.lock.release()
        if state.temporary:
            shutil.rmtree(state.directory, ignore_errors=True)


def new_manifest(**create_args) -> Manifest:
    """Validate create() arguments (the checks both backends share) into a manifest; nothing is written yet."""
    return Manifest(**check_create_args(**create_args))


def initialize(directory: Path, manifest: Manifest) -> None:
    """Write an empty store. The manifest goes last: its presence is what makes a store."""
    if directory.is_symlink():
        raise InvalidInputError(f"refusing to create a store through a symlink: {directory}")
    if directory.exists():
        if not directory.is_dir():
            raise StoreExistsError(f"{directory} exists and is not a directory")
        leftovers = [p.name for p in directory.iterdir()]
        if (directory / MANIFEST_NAME).exists():
            raise StoreExistsError(f"a store already exists at {directory}; open it with MRLStore.open()")
        if any(not _OUR_FILE.match(name) for name in leftovers):
            raise StoreExistsError(f"{directory} is not empty; choose an empty or new directory")
        for name in leftovers:  # remains of an interrupted create
            (directory / name).unlink()
    directory.mkdir(parents=True, exist_ok=True)
    name = vector_file_name(0, manifest.dtype)
    DocStore.create(directory, vector_file=name, manifest_copy=manifest.copy_text()).close(checkpoint=True)
    (directory / name).touch()
    fsync_dir(directory)
    manifest.save(directory)


def check_store_path(path: Path) -> Path:
    """The directory of an existing store, or a typed error saying what the path is instead."""
    if not path.exists():
        raise StoreNotFoundError(f"no store at {path} (path does not exist); create one with MRLStore.create()")
    if not path.is_dir():
        raise StoreNotFoundError(f"{path} is a file, not a store directory")
    manifest = path / MANIFEST_NAME
    if not manifest.exists():
        raise StoreNotFoundError(f"{path} is not an mrl-retrievers store (no {MANIFEST_NAME})")
    for name in (MANIFEST_NAME, DOCS_NAME):
        if (path / name).is_symlink():
            raise CorruptStoreError(f"{path / name} is a symlink; a store's files must be regular files")
    return path


def open_state(directory: Path, *, read_only: bool, temporary: bool) -> StoreState:
    """Open a store's files. A writer takes the lock *before* it reads anything, so the manifest and
    SQLite state it recovers from are the ones no other process can change under it."""
    lock = None
    if not read_only:
        lock = WriterLock(directory / LOCK_NAME)
        with io_errors("taking the writer lock", directory):
            lock.acquire()
    try:
        with io_errors("opening", directory):
            manifest = load_manifest(directory)
            return _recover(directory, manifest, read_only=read_only, temporary=temporary, lock=lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _connect(directory: Path, read_only: bool) -> DocStore:
    if not (directory / DOCS_NAME).is_file():
        raise CorruptStoreError(f"{directory / DOCS_NAME} is missing; the store's source of truth is gone")
    if not read_only:
        if not os.access(directory, os.W_OK) or not os.access(directory / DOCS_NAME, os.W_OK):
            raise ReadOnlyStoreError(
                f"store {directory} cannot be written here (read-only file system or no write permission); "
                "open it with read_only=True (the CLI's read commands do)"
            )
        return DocStore.connect(directory, read_only=False)
    try:
        return DocStore.connect(directory, read_only=True)
    except ReadOnlyStoreError:
        # Read-only media or no write permission: SQLite cannot create the WAL's shared-memory file.
        # If no WAL content is pending, the database file alone is the whole committed state.
        wal = directory / (DOCS_NAME + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise ReadOnlyStoreError(
                f"store {directory} is not writable here and its write-ahead log holds commits that SQLite "
                "cannot read without writing its shared-memory file; open it once where it is writable "
                "(or close its writer) so the log is folded back"
            ) from None
        return DocStore.connect(directory, read_only=True, immutable=True)


def _recover(directory: Path, manifest: Manifest, *, read_only: bool, temporary: bool, lock: WriterLock | None) -> StoreState:
    """Check that manifest, SQLite and the vector file agree, and only then (writers) repair:
    cut the uncommitted tail, remove orphans, upgrade the schema. A disagreement is damage:
    ``CorruptStoreError``, and no file is changed."""
    hint = REPAIR_HINT.format(path=directory)
    docs = _connect(directory, read_only)
    try:
        # One read transaction for the whole open (a no-op for writers, who hold the lock): a
        # read-only open beside a committing writer must see one state. Reading the row count and
        # then the highest row called a healthy store damaged ("meta says 652 rows, highest row
        # 662", seen in CI); building the index from SQLite after the snapshot counted the rows
        # committed meanwhile twice (once in the index, again in the first read's catch-up).
        with docs.snapshot() as committed:
            docs.check_rows(committed.rows)
            expected = vector_file_name(committed.epoch, manifest.dtype)
            if committed.vector_file != expected:
                raise CorruptStoreError(f"{directory / DOCS_NAME} names vector file {committed.vector_file!r}, expected "
                                        f"{expected!r} for a {manifest.dtype} store; {hint}")
            vector_path = directory / committed.vector_file
            if not vector_path.is_file() or vector_path.is_symlink():
                raise CorruptStoreError(f"{vector_path} is missing; {hint}")
            vectors = VectorFile(vector_path, dim=manifest.full_dim, dtype=manifest.dtype, writable=not read_only)
            try:
                _check_vector_file(vectors, docs, committed.rows, hint)
                if not read_only:
                    vectors.cut_to(committed.rows)  # the tail of a batch that crashed before its commit
                    _remove_orphans(directory, manifest, committed.vector_file)
                    _upgrade(directory, docs, manifest)
            except BaseException:
                vectors.close()
                raise
            state = StoreState(directory, read_only, temporary, manifest, docs, vectors, None, committed.epoch, committed.rows, lock)  # type: ignore[arg-type]
            state.token = committed.token
            state.tomb_seq = docs.tombstone_seq()
            state.ann = checkpoints.load_or_rebuild_ann(state)
            return state
    except BaseException:
        docs.close(checkpoint=False)
        raise


# Rows whose checksums are compared with the vector file before a writer trusts its layout.
_LAYOUT_SAMPLES = 8


def _check_vector_file(vectors: VectorFile, docs: DocStore, rows: int, hint: str) -> None:
    """The file holds every committed row, and its rows are the ones SQLite's checksums describe.

    A wrong row size (a damaged width or dtype) shifts every row: all sampled rows then fail their
    checksum, and the writer must not cut the file to that size. One damaged row among good ones is
    not a layout problem (searches and ``verify`` report it).
    """
    on_disk = vectors.rows_on_disk()
    if on_disk < rows:
        raise CorruptStoreError(
            f"{vectors.path.name} holds {on_disk} whole rows but {rows} are committed (truncated file); {hint}"
        )
    sample = docs.sample_crcs(rows, _LAYOUT_SAMPLES)
    if not sample:
        return
    stored = vectors.gather(np.array([r for r, _ in sample], dtype=np.int64))
    matches = sum(actual == crc for (_, crc), actual in zip(sample, row_checksums(stored)))
    if matches == 0:
        raise CorruptStoreError(
            f"{vectors.path.name}: none of {len(sample)} sampled rows matches its checksum at "
            f"{vectors.dim} x {vectors.dtype.name}; the manifest's width or dtype does not describe this file; {hint}"
        )


def _upgrade(directory: Path, docs: DocStore, manifest: Manifest) -> None:
    """Bring a format-1 store to format 2 (schema first, then the checksummed manifest) and keep
    SQLite's copy of the manifest current. Idempotent; a crash between the steps is harmless."""
    copy = manifest.copy_text()
    if not docs.migrate(copy):
        docs.save_manifest_copy(copy)
    if manifest.format_version < FORMAT_VERSION:
        manifest.save(directory)


def _remove_orphans(directory: Path, manifest: Manifest, vector_name: str) -> None:
    """Delete temp files and files no longer referenced (old vector files, old index checkpoints)."""
    removed = remove_orphan_temps(directory)
    keep = {vector_name, *manifest.ann.files}
    for entry in directory.iterdir():
        if re.match(r"^(vectors\.\d{6}\.f(16|32)|prefix\.[0-9a-f.]+\.hnsw)$", entry.name) and entry.name not in keep:
            entry.unlink()
            removed.append(entry.name)
    removed += query_sample.remove_unused(directory, manifest.calibration)  # a crash before its manifest
    if removed:
        log.info("removed orphan files from %s: %s", directory, ", ".join(removed))
        fsync_dir(directory)


__all__ = ["StoreState", "check_store_path", "initialize", "new_manifest", "open_state", "release"]
