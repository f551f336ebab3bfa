"""docs.sqlite, the source of truth: id <-> row, text, metadata, row checksums, tombstones.

A row of the vector file is *live* when exactly one id points at it, and a *tombstone* once that id
was deleted or overwritten. ``meta.rows`` says how many rows of the current vector file are
committed; it moves in the same transaction that publishes them (data and watermark together).
Every statement binds its values as parameters; lists travel as one JSON array parameter.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .. import filters
from ..errors import CorruptStoreError, FilterError, StoreIOError
from .crashpoints import crash_point

DOCS_NAME = "docs.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE docs (
    id       TEXT PRIMARY KEY,
    row      INTEGER NOT NULL UNIQUE,
    text     TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    crc      INTEGER NOT NULL
);
CREATE TABLE tombstones (row INTEGER PRIMARY KEY);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_ROWS_OF = "SELECT value FROM json_each(?)"  # a whole list as one bound parameter
_MAX_PLACEHOLDERS = 999  # SQLite's historical limit of bound values per statement


def _row_list(rows: Sequence[int]) -> tuple[str, list]:
    """``IN (...)`` contents and parameters for a list of row numbers: one placeholder each for a
    search's few hundred rows (no JSON dump and parse per search), one JSON array above that."""
    rows = [int(r) for r in rows]
    if len(rows) <= _MAX_PLACEHOLDERS:
        return ",".join("?" * len(rows)), rows
    return _ROWS_OF, [json.dumps(rows)]
_VECTOR_FILE = re.compile(r"^vectors\.(\d{6})\.f(16|32)$")


_CORRUPT = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}


def typed_sqlite_error(exc: sqlite3.Error, path: Path, doing: str) -> Exception:
    """Our error for a SQLite failure: damage is CorruptStoreError, anything else (disk full, I/O,
    locked, read-only) is StoreIOError. Both say what was being done and that nothing was written."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if any(name.startswith(code) for code in _CORRUPT):
        return CorruptStoreError(f"{path}: {exc} while {doing}; run `mrl-retrievers verify {path.parent}`")
    return StoreIOError(f"{path}: {exc} while {doing} ({name or 'sqlite error'}); nothing was written")


class DocStore:
    """Thin, typed access to docs.sqlite. The caller serializes writers (store write lock)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    # --- lifecycle ------------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, *, vector_file: str) -> "DocStore":
        store = cls.connect(directory, read_only=False)
        store.conn.execute("BEGIN")
        for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
            store.conn.execute(statement)
        store.conn.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?)",
            [("schema_version", str(SCHEMA_VERSION)), ("epoch", "0"), ("rows", "0"), ("vector_file", vector_file)],
        )
        store.conn.execute("COMMIT")
        return store

    @classmethod
    def connect(cls, directory: Path, *, read_only: bool) -> "DocStore":
        path = directory / DOCS_NAME
        try:
            if read_only:
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
            else:
                conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                # FULL: a commit is durable when it returns; "acknowledged = committed".
                conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=5000")
        except sqlite3.Error as exc:
            raise typed_sqlite_error(exc, path, "opening") from None
        filters.register_sql_functions(conn)
        return cls(conn, path)

    def close(self, *, checkpoint: bool) -> None:
        try:
            if checkpoint:
                # Fold the WAL back into the database so the directory is self-contained.
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self.conn.close()

    # --- state ------------------------------------------------------------------------------------

    def state(self) -> tuple[int, int, str]:
        """(epoch, committed rows, vector file name), validated."""
        try:
            meta = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
            epoch, rows, name = int(meta["epoch"]), int(meta["rows"]), meta["vector_file"]
        except (sqlite3.DatabaseError, KeyError, ValueError) as exc:
            raise CorruptStoreError(f"{self.path}: unreadable store metadata ({exc})") from None
        match = _VECTOR_FILE.match(name)
        if epoch < 0 or rows < 0 or match is None or int(match.group(1)) != epoch:
            # The name is opened for writing and truncated on recovery: never trust an odd one.
            raise CorruptStoreError(f"{self.path}: bad store metadata epoch={epoch} rows={rows} file={name!r}")
        return epoch, rows, name

    def count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM docs").fetchone()[0]

    def live_rows(self) -> np.ndarray:
        rows = self.conn.execute("SELECT row FROM docs ORDER BY row").fetchall()
        return np.fromiter((r for (r,) in rows), dtype=np.int64, count=len(rows))

    def tombstone_rows(self) -> list[int]:
        return [r for (r,) in self.conn.execute("SELECT row FROM tombstones")]

    # --- writes -------------------------------------------------------------------------------------

    def publish(
        self,
        ids: Sequence[str],
        start_row: int,
        texts: Sequence[str | None],
        metadatas: Sequence[str],
        crcs: Sequence[int],
    ) -> list[int]:
        """Publish a batch in one transaction (the commit point). Returns the rows it superseded."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            old = [r for (r,) in conn.execute(f"SELECT row FROM docs WHERE id IN ({_ROWS_OF})", (json.dumps(list(ids)),))]
            conn.executemany("INSERT INTO tombstones(row) VALUES (?)", ((r,) for r in old))
            conn.execute(f"DELETE FROM docs WHERE id IN ({_ROWS_OF})", (json.dumps(list(ids)),))
            conn.executemany(
                "INSERT INTO docs(id, row, text, metadata, crc) VALUES (?, ?, ?, ?, ?)",
                ((i, start_row + n, t, m, c) for n, (i, t, m, c) in enumerate(zip(ids, texts, metadatas, crcs))),
            )
            crash_point("add:mid-transaction")
            conn.execute("UPDATE meta SET value = ? WHERE key = 'rows'", (str(start_row + len(ids)),))
            conn.execute("COMMIT")
        except BaseException as exc:
            self._abort(exc)
            raise
        crash_point("add:committed")
        return old

    def _abort(self, exc: BaseException) -> None:
        """Roll back the open transaction (SQLite may have rolled back already on disk full / I/O
        errors: a second ROLLBACK would then replace the real error) and type a SQLite failure."""
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        if isinstance(exc, sqlite3.Error):
            raise typed_sqlite_error(exc, self.path, "writing") from exc

    def delete(self, ids: Iterable[str]) -> list[int]:
        """Tombstone the rows of ``ids`` in one transaction; unknown ids are ignored."""
        conn = self.conn
        payload = json.dumps(list(ids))
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = [r for (r,) in conn.execute(f"SELECT row FROM docs WHERE id IN ({_ROWS_OF})", (payload,))]
            conn.executemany("INSERT INTO tombstones(row) VALUES (?)", ((r,) for r in rows))
            conn.execute(f"DELETE FROM docs WHERE id IN ({_ROWS_OF})", (payload,))
            crash_point("delete:mid-transaction")
            conn.execute("COMMIT")
        except BaseException as exc:
            self._abort(exc)
            raise
        crash_point("delete:committed")
        return rows

    def renumber(self, mapping: np.ndarray, *, epoch: int, vector_file: str) -> None:
        """After compaction: live row r becomes mapping[r]; tombstones vanish; one transaction."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Negative temporaries keep the UNIQUE(row) constraint satisfied while rows move.
            conn.execute("UPDATE docs SET row = -1 - row")
            conn.executemany(
                "UPDATE docs SET row = ? WHERE row = ?",
                ((int(new), -1 - int(old)) for old, new in enumerate(mapping.tolist()) if new >= 0),
            )
            conn.execute("DELETE FROM tombstones")
            live = conn.execute("SELECT count(*) FROM docs").fetchone()[0]
            conn.executemany(
                "UPDATE meta SET value = ? WHERE key = ?",
                [(str(epoch), "epoch"), (str(live), "rows"), (vector_file, "vector_file")],
            )
            conn.execute("COMMIT")
        except BaseException as exc:
            self._abort(exc)
            raise
        crash_point("compact:committed")

    # --- reads --------------------------------------------------------------------------------------

    def rows_matching(self, flt) -> np.ndarray:
        """Live rows whose metadata satisfies the (parsed) filter, ascending."""
        sql, params = filters.to_sql(flt, column="metadata")
        try:
            rows = self.conn.execute(f"SELECT row FROM docs WHERE {sql} ORDER BY row", params).fetchall()
        except sqlite3.OperationalError as exc:  # e.g. too many bound values in one $in
            raise FilterError(f"filter too large for SQLite ({exc}); split it or use fewer values") from None
        return np.fromiter((r for (r,) in rows), dtype=np.int64, count=len(rows))

    def ids_matching(self, flt) -> list[str]:
        """Ids of live items whose metadata satisfies the (parsed) filter, by row (insertion order)."""
        sql, params = filters.to_sql(flt, column="metadata") if flt is not None else ("1", [])
        return [i for (i,) in self.conn.execute(f"SELECT id FROM docs WHERE {sql} ORDER BY row", params)]

    def by_rows(self, rows: Sequence[int]) -> dict[int, tuple[str, str | None, str, int]]:
        """row -> (id, text, metadata JSON, crc) for the live rows among ``rows``."""
        in_list, params = _row_list(rows)
        cur = self.conn.execute(f"SELECT row, id, text, metadata, crc FROM docs WHERE row IN ({in_list})", params)
        return {row: (id_, text, meta, crc) for row, id_, text, meta, crc in cur}

    def by_ids(self, ids: Sequence[str]) -> dict[str, tuple[int, str | None, str, int]]:
        """id -> (row, text, metadata JSON, crc) for the ids that exist."""
        cur = self.conn.execute(
            f"SELECT id, row, text, metadata, crc FROM docs WHERE id IN ({_ROWS_OF})", (json.dumps(list(ids)),)
        )
        return {id_: (row, text, meta, crc) for id_, row, text, meta, crc in cur}

    def crcs(self, rows: Sequence[int]) -> dict[int, int]:
        in_list, params = _row_list(rows)
        return dict(self.conn.execute(f"SELECT row, crc FROM docs WHERE row IN ({in_list})", params).fetchall())

    def all_rows_and_crcs(self) -> list[tuple[int, int]]:
        return self.conn.execute("SELECT row, crc FROM docs ORDER BY row").fetchall()

    def integrity_problems(self) -> list[str]:
        try:
            result = [r for (r,) in self.conn.execute("PRAGMA integrity_check")]
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        return [] if result == ["ok"] else result
