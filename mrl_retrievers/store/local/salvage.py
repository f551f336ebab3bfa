"""``rebuild``: repair a damaged store from what is intact, keeping every item that can be trusted.

Runs under the writer lock, step by step, each step only as destructive as its damage requires:

1. **manifest**: if ``manifest.json`` is damaged, reconstruct it from the copy docs.sqlite keeps
   (checksummed; without the derived index state), after checking the vector file's rows against
   their checksums at that width and dtype.
2. **docs.sqlite**: if SQLite finds damage, ``REINDEX`` (a damaged index is derived); if tables are
   damaged, copy every readable row into a fresh database and keep the damaged one beside it as
   ``docs.sqlite.damaged``.
3. **committed rows**: if ``meta.rows`` disagrees with the rows in use, set it from them.
4. **vector file**: if it is shorter than the committed rows, keep every whole row; items whose
   rows are gone are dropped (listed), the partial row at the end is cut off, and the store moves
   to a new row epoch (the next adds reuse the cut row numbers: read-only handles must reload).
5. **checksums**: items whose vector row or whose id/text/metadata fail their checksum are dropped
   (listed, so they can be re-added).
6. the coarse index is rebuilt from the vector file and checkpointed.

A store of a newer format is never touched (``UnsupportedFormatError``).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

import numpy as np

from ...errors import CorruptStoreError
from .docstore import DOCS_NAME, DocStore, _SCHEMA, damaged_record
from .fs import WriterLock, fsync_dir, io_errors
from .maintenance import VerifyReport
from .manifest import MANIFEST_NAME, Manifest, load_manifest, parse_manifest
from .vectors import VectorFile, row_checksums, vector_file_name

log = logging.getLogger("mrl_retrievers.store")


def repair(directory: Path, lock_name: str) -> VerifyReport:
    """Steps 1-5 (the caller then reopens the store and rebuilds its index)."""
    report = VerifyReport(str(directory))
    lock = WriterLock(directory / lock_name)
    with io_errors("taking the writer lock", directory):
        lock.acquire()
    try:
        with io_errors("repairing", directory):
            manifest = _manifest(directory, report)
            _sqlite(directory, report)
            docs = DocStore.connect(directory, read_only=False)
            try:
                _upgrade_copy(docs, manifest)
                _meta(directory, docs, manifest, report)
                _rows(directory, docs, manifest, report)
            finally:
                docs.close(checkpoint=True)
    finally:
        lock.release()
    return report


# --- 1. manifest ----------------------------------------------------------------------------------


def _manifest(directory: Path, report: VerifyReport) -> Manifest:
    try:
        return load_manifest(directory)
    except CorruptStoreError as exc:
        damage = str(exc)
    copy = _read_copy(directory)
    if copy is None:
        raise CorruptStoreError(
            f"{directory / MANIFEST_NAME} is damaged ({damage}) and this store keeps no intact copy of it "
            "(stores written before format 2 do not): restore manifest.json from a backup"
        )
    manifest = parse_manifest(copy, where=f"{directory / DOCS_NAME} (manifest copy)", hint="restore manifest.json from a backup",
                              directory=directory)
    manifest.save(directory)
    report.warnings.append(f"manifest.json was damaged ({damage}); reconstructed from the copy in docs.sqlite")
    return manifest


def _read_copy(directory: Path) -> str | None:
    try:
        conn = sqlite3.connect(f"file:{directory / DOCS_NAME}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'manifest'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


# --- 2. SQLite ------------------------------------------------------------------------------------


def _sqlite(directory: Path, report: VerifyReport) -> None:
    docs = DocStore.connect(directory, read_only=False)
    try:
        problems = docs.integrity_problems()
        if not problems:
            return
        try:
            docs.conn.execute("REINDEX")
        except sqlite3.Error:
            pass
        if not docs.integrity_problems():
            report.warnings.append(f"docs.sqlite: rebuilt its indexes ({problems[0]})")
            return
    finally:
        docs.close(checkpoint=True)
    lost = _copy_readable(directory)
    report.warnings.append(f"docs.sqlite: tables were damaged; copied every readable row to a fresh database "
                           f"({lost} unreadable rows), the damaged file is kept as docs.sqlite.damaged")


def _copy_readable(directory: Path) -> int:
    """Copy every readable row of docs, tombstones and meta into a new docs.sqlite. Returns how many
    rows could not be read."""
    source = sqlite3.connect(f"file:{directory / DOCS_NAME}?mode=ro", uri=True)
    fresh_path = directory / (DOCS_NAME + ".salvage-tmp")
    fresh_path.unlink(missing_ok=True)
    fresh = sqlite3.connect(str(fresh_path), isolation_level=None)
    lost = 0
    try:
        fresh.execute("BEGIN")
        for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
            fresh.execute(statement)
        for table, columns in (("meta", "key, value"), ("docs", "id, row, text, metadata, crc, rcrc"),
                               ("tombstones", "row"), ("tombstone_log", "seq, row")):
            rows, missing = _readable_rows(source, table, columns)
            lost += missing
            fresh.executemany(f"INSERT OR IGNORE INTO {table}({columns}) VALUES ({','.join('?' * len(columns.split(',')))})", rows)
        fresh.execute("COMMIT")
    finally:
        fresh.close()
        source.close()
    for suffix in ("", "-wal", "-shm"):
        old = directory / (DOCS_NAME + suffix)
        if old.exists():
            os.replace(old, directory / (DOCS_NAME + ".damaged" + suffix))
    os.replace(fresh_path, directory / DOCS_NAME)
    fsync_dir(directory)
    return lost


def _readable_rows(conn: sqlite3.Connection, table: str, columns: str) -> tuple[list[tuple], int]:
    """Rows of ``table`` read rowid range by range; a range that fails is halved until single rows."""
    try:
        top = conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
    except sqlite3.Error:
        top = 1 << 24
    found: list[tuple] = []
    lost = 0
    todo = [(0, top)]
    while todo:
        low, high = todo.pop()
        try:
            found.extend(conn.execute(f"SELECT {columns} FROM {table} WHERE rowid BETWEEN ? AND ?", (low, high)).fetchall())
        except sqlite3.Error:
            if low == high:
                lost += 1
            else:
                middle = (low + high) // 2
                todo += [(low, middle), (middle + 1, high)]
    return found, lost


# --- 3. meta -------------------------------------------------------------------------------------


def _meta(directory: Path, docs: DocStore, manifest: Manifest, report: VerifyReport) -> None:
    """Make meta's epoch, vector file, generation and committed-row count agree with the data."""
    meta = docs.meta()
    conn = docs.conn
    files = sorted(p.name for p in directory.glob(f"vectors.*.{'f16' if manifest.dtype == 'float16' else 'f32'}"))
    name = meta.get("vector_file")
    if name not in files:
        if len(files) != 1:
            raise CorruptStoreError(f"{directory}: docs.sqlite names vector file {name!r} and the directory holds {files}; "
                                    "cannot tell which holds the rows")
        name = files[0]
        report.warnings.append(f"docs.sqlite named vector file {meta.get('vector_file')!r}; using {name}")
    epoch = int(name.split(".")[1])
    if name != vector_file_name(epoch, manifest.dtype):
        raise CorruptStoreError(f"{directory}: vector file {name} does not belong to a {manifest.dtype} store")
    top = max(_scalar(conn, "SELECT max(row) FROM docs"), _scalar(conn, "SELECT max(row) FROM tombstones"))
    updates = {"epoch": str(epoch), "vector_file": name, "rows": str(top + 1)}
    try:
        int(meta.get("generation", ""))
    except ValueError:
        updates["generation"] = str(int(time.time() * 1000))  # forward of anything it could have been
    changed = {k: v for k, v in updates.items() if meta.get(k) != v}
    if changed:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", list(changed.items()))
        conn.execute("COMMIT")
        report.warnings.append("docs.sqlite metadata repaired: " + ", ".join(f"{k}: {meta.get(k)!r} -> {v!r}" for k, v in changed.items()))


def _scalar(conn: sqlite3.Connection, sql: str) -> int:
    value = conn.execute(sql).fetchone()[0]
    return -1 if value is None else int(value)


# --- 4 and 5. vector rows and checksums --------------------------------------------------------------


def _rows(directory: Path, docs: DocStore, manifest: Manifest, report: VerifyReport) -> None:
    committed = docs.state()
    vectors = VectorFile(directory / committed.vector_file, dim=manifest.full_dim, dtype=manifest.dtype, writable=True)
    try:
        whole = vectors.rows_on_disk()
        sample = docs.sample_crcs(min(whole, committed.rows), 16)  # rows below the end of the file only
        if sample and not any(a == c for (_, c), a in zip(sample, row_checksums(vectors.gather(np.array([r for r, _ in sample]))))):
            raise CorruptStoreError(f"{vectors.path.name}: no sampled row matches its checksum at {manifest.full_dim} x "
                                    f"{manifest.dtype}; the manifest does not describe this file (restore manifest.json)")
        dropped: list[str] = []
        if whole < committed.rows:
            gone = [id_ for (id_,) in docs.conn.execute("SELECT id FROM docs WHERE row >= ? ORDER BY row", (whole,))]
            dropped += gone
            _drop(docs, "row >= ?", (whole,), tombstones_too=True, rows=whole)
            report.problems.append(f"{vectors.path.name} held {whole} whole rows of {committed.rows}; "
                                   f"{len(gone)} items lost their vectors")
        vectors.cut_to(whole if whole < committed.rows else committed.rows)
        bad = _failing(docs, vectors)
        if bad:
            dropped += bad
            docs.delete(bad)
            report.problems.append(f"{len(bad)} items failed their checksums")
        report.damaged_ids = sorted(set(dropped))
    finally:
        vectors.close()
    if whole < committed.rows:
        _new_epoch(directory, docs, manifest.dtype)


def _new_epoch(directory: Path, docs: DocStore, dtype: str) -> None:
    """Rows were cut, so the next adds reuse their numbers: move to a new row epoch, as a compaction
    does. A read-only handle open across the rebuild then reloads (map, index, checked rows, kept
    records) instead of catching up incrementally: rows only grew since it last looked, and it kept
    the cut rows' index entries and records, answering with a dropped item for a new one's vector.

    The same file under a new name (a hard link: no copy), committed, then the old name removed; a
    crash in between leaves a name the next writer open removes as an orphan."""
    state = docs.state()
    epoch = state.epoch + 1
    old, new = directory / state.vector_file, directory / vector_file_name(epoch, dtype)
    new.unlink(missing_ok=True)
    os.link(old, new)
    fsync_dir(directory)
    conn = docs.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany("UPDATE meta SET value = ? WHERE key = ?", [(str(epoch), "epoch"), (new.name, "vector_file")])
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    old.unlink()
    fsync_dir(directory)


def _drop(docs: DocStore, where: str, params: tuple, *, tombstones_too: bool, rows: int) -> None:
    conn = docs.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(f"DELETE FROM docs WHERE {where}", params)
        if tombstones_too:
            conn.execute(f"DELETE FROM tombstones WHERE {where}", params)
            conn.execute(f"DELETE FROM tombstone_log WHERE {where}", params)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'rows'", (str(rows),))
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _failing(docs: DocStore, vectors: VectorFile) -> list[str]:
    """Ids whose vector row or record fails its checksum."""
    pairs = docs.all_rows_and_crcs()
    bad_rows = []
    for start in range(0, len(pairs), 65536):
        chunk = pairs[start : start + 65536]
        rows = np.array([r for r, _ in chunk], dtype=np.int64)
        bad_rows += [row for (row, crc), actual in zip(chunk, row_checksums(vectors.gather(rows))) if actual != crc]
    bad = {found[0] for found in docs.by_rows(bad_rows).values()} if bad_rows else set()
    for part in docs.iter_records():
        bad.update(id_ for id_, text, meta, rcrc in part if damaged_record(id_, text, meta, rcrc))
    return sorted(bad)


def _upgrade_copy(docs: DocStore, manifest: Manifest) -> None:
    copy = manifest.copy_text()
    if not docs.migrate(copy):
        docs.save_manifest_copy(copy)


__all__ = ["repair"]
