"""docs.sqlite, the source of truth: id <-> row, text, metadata, checksums, tombstones.

A row of the vector file is *live* when exactly one id points at it, and a *tombstone* once that id
was deleted or overwritten. ``meta.rows`` says how many rows of the current vector file are
committed; it moves in the same transaction that publishes them (data and watermark together), so
every row below it is either live or a tombstone and none is above it. ``meta.generation`` counts
commits; ``tombstone_log`` lists tombstones in the order they were made, so a read-only handle in
another process can follow the writer by reading only what changed.

Every statement binds its values as parameters (row lists as one JSON array parameter; ids only as
placeholders: SQLite's JSON functions cut strings at U+0000, so ids never travel through them).
Every SQLite failure leaves this module as a typed error: damage is ``CorruptStoreError``,
anything else (disk full, I/O, locked, read-only) ``StoreIOError``.

Schema versions: 1 (first release) lacks ``tombstone_log``, ``generation``, the record checksum
``rcrc`` and the manifest copy; a writer upgrades it in place on open (``migrate``), and a
read-only handle on a version-1 store follows the writer by counting tombstones instead.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
import struct
import threading
import urllib.parse
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ... import filters
from ...errors import CorruptStoreError, FilterError, ReadOnlyStoreError, StoreIOError, UnsupportedFormatError
from .crashpoints import crash_point

DOCS_NAME = "docs.sqlite"
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE docs (
    id       TEXT PRIMARY KEY,
    row      INTEGER NOT NULL UNIQUE,
    text     TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    crc      INTEGER NOT NULL,
    rcrc     INTEGER
);
CREATE TABLE tombstones (row INTEGER PRIMARY KEY);
CREATE TABLE tombstone_log (seq INTEGER PRIMARY KEY, row INTEGER NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# SQLite's page cache per connection, in KiB (its default is 2 MiB). A search reads its hits' records
# by row: two B-tree descents each, whose pages outside the cache cost a read() each (~35 -> ~20 us
# for 10 hits at 100k items); 16 MiB holds a 100k-item store's docs.sqlite whole. Pages, not rows:
# a connection's cache follows the file (SQLite drops what another connection changed).
_CACHE_KIB = 16384
_ROWS_OF = "SELECT value FROM json_each(?)"  # a whole list of integers as one bound parameter
_MAX_PLACEHOLDERS = 999  # SQLite's historical limit of bound values per statement
_VECTOR_FILE = re.compile(r"^vectors\.(\d{6})\.f(16|32)$")
_CORRUPT = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}
_READONLY = {"SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH"}
_HEAD = struct.Struct("<qqq")
_STATE_KEYS = ("schema_version", "epoch", "rows", "generation", "vector_file")
_CURSOR = "load:"  # meta key prefix of bulk-load positions


def _row_list(rows: Sequence[int]) -> tuple[str, list]:
    """``IN (...)`` contents and parameters for a list of row numbers: one placeholder each for a
    search's few hundred rows (no JSON dump and parse per search), one JSON array above that."""
    rows = [int(r) for r in rows]
    if len(rows) <= _MAX_PLACEHOLDERS:
        return ",".join("?" * len(rows)), rows
    return _ROWS_OF, [json.dumps(rows)]


def _chunks(values: Sequence, size: int = _MAX_PLACEHOLDERS) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def record_checksum(id_: str, text: str | None, metadata: str) -> int:
    """CRC-32 over what a hit returns besides its vector: id, text (None differs from "") and the
    metadata JSON, with their lengths first so no two different records share an encoding."""
    i, m = id_.encode("utf-8"), metadata.encode("utf-8")
    t = b"" if text is None else text.encode("utf-8")
    crc = zlib.crc32(_HEAD.pack(len(i), -1 if text is None else len(t), len(m)))
    return zlib.crc32(m, zlib.crc32(t, zlib.crc32(i, crc)))


def typed_sqlite_error(exc: sqlite3.Error, path: Path, doing: str) -> Exception:
    """Our error for a SQLite failure: damage is CorruptStoreError, a file that may not be written
    is ReadOnlyStoreError, anything else (disk full, I/O, locked) StoreIOError."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if any(name.startswith(code) for code in _CORRUPT) or "malformed" in str(exc):
        return CorruptStoreError(
            f"{path}: {exc} while {doing} (SQLite reports damage); run `mrl-retrievers verify {path.parent}`, "
            f"then `mrl-retrievers rebuild {path.parent}` to salvage what is readable"
        )
    if any(name.startswith(code) for code in _READONLY):
        return ReadOnlyStoreError(
            f"{path}: {exc} while {doing} ({name}); the store's directory or files may not be written "
            "(read-only file system or permissions): open it with read_only=True"
        )
    return StoreIOError(f"{path}: {exc} while {doing} ({name or 'sqlite error'}); nothing was written")


def _typed(doing: str):
    """Decorator: a raw sqlite3 error inside a DocStore method becomes a typed error."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(self: "DocStore", *args, **kwargs):
            try:
                return fn(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise typed_sqlite_error(exc, self.path, doing) from None

        return inner

    return wrap


class StaleRead(Exception):
    """A ``pinned`` read found a newer committed state than the one its caller searched."""


@dataclass(frozen=True)
class CommittedState:
    """What one read of ``meta`` says is committed. ``generation`` is None on a schema-1 store
    (then ``tombstones`` counts tombstones, so that a delete still changes the token)."""

    epoch: int
    rows: int
    vector_file: str
    generation: int | None
    tombstones: int | None = None

    @property
    def token(self) -> tuple:
        return (self.epoch, self.rows, self.generation, self.tombstones)


def _reader_uri(path: Path, *, immutable: bool = False) -> str:
    """A read-only SQLite URI for ``path``. The path is percent-encoded: in a URI a ``?`` or ``#``
    in a folder name ends the path, and ``%`` starts an escape (a store in "notes #2/" opened
    another, nonexistent database and failed with "no such table")."""
    return f"file:{urllib.parse.quote(str(path))}?mode=ro" + ("&immutable=1" if immutable else "")


class DocStore:
    """Typed access to docs.sqlite. The caller serializes writers (store write lock).

    A writer uses one connection. A read-only store gives each thread its own connection, and
    ``snapshot()`` holds one read transaction on it: every read inside sees one committed state.
    A writer's searches read their hits' records and checksums (``by_rows``, ``crcs``) on a
    read-only connection of their thread too, outside any transaction of the writer's: threads
    sharing one connection queue on its mutex (2 threads read hits at half the rate of one). Under
    the store's read lock no write is under way and every write has committed, so that connection
    sees exactly what the writer's would.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, *, read_only: bool, uri: str | None = None) -> None:
        self.conn = conn
        self.path = path
        self.read_only = read_only
        self._uri = uri
        self._local = threading.local()
        self._readers: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._readers_lock = threading.Lock()

    # --- lifecycle ------------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, *, vector_file: str, manifest_copy: str) -> "DocStore":
        store = cls.connect(directory, read_only=False)
        try:
            store.conn.execute("BEGIN")
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                store.conn.execute(statement)
            store.conn.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?)",
                [("schema_version", str(SCHEMA_VERSION)), ("epoch", "0"), ("rows", "0"), ("generation", "0"),
                 ("vector_file", vector_file), ("manifest", manifest_copy)],
            )
            store.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            store.close(checkpoint=False)
            raise typed_sqlite_error(exc, store.path, "creating") from None
        return store

    @classmethod
    def connect(cls, directory: Path, *, read_only: bool, immutable: bool = False) -> "DocStore":
        path = directory / DOCS_NAME
        uri = None
        try:
            if read_only:
                # immutable=1: a store on read-only media (nobody can write it, and SQLite could not
                # create its shared-memory file there).
                uri = _reader_uri(path, immutable=immutable)
                conn = cls._open_reader(uri)
            else:
                conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA busy_timeout=5000")
                conn.execute("PRAGMA journal_mode=WAL")
                # FULL: a commit is durable when it returns; "acknowledged = committed".
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        except sqlite3.Error as exc:
            raise typed_sqlite_error(exc, path, "opening") from None
        filters.register_sql_functions(conn)
        return cls(conn, path, read_only=read_only, uri=uri)

    @staticmethod
    def _open_reader(uri: str) -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # fail here, not at the first search
        return conn

    def close(self, *, checkpoint: bool) -> None:
        try:
            if checkpoint:
                # Fold the WAL back into the database so the directory is self-contained.
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for _thread, conn in readers:
            conn.close()
        self.conn.close()

    # --- connections and snapshots -----------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        """The connection this thread reads with: its snapshot's (opened now if the read is
        ``pinned``), else the store's."""
        snap = getattr(self._local, "snapshot", None)
        if snap is not None:
            return snap
        return self._open_pinned() if getattr(self._local, "pin", None) is not None else self.conn

    def _thread_reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "reader", None)
        if conn is None:
            conn = self._open_reader(self._uri or _reader_uri(self.path))
            filters.register_sql_functions(conn)
            with self._readers_lock:
                # The connections of threads that have ended are closed here: a thread pool that
                # comes and goes (asyncio.to_thread, a server's workers) must not pile them up.
                alive = []
                for thread, other in self._readers:
                    if thread.is_alive():
                        alive.append((thread, other))
                    else:
                        other.close()
                alive.append((threading.current_thread(), conn))
                self._readers = alive
            self._local.reader = conn
        return conn

    def _lookup_db(self) -> sqlite3.Connection:
        """The connection a search reads hits and checksums with: its snapshot's (read-only
        handles), else this thread's reader (a writer outside its own transactions), else the
        writer's (inside one: its reads must see what it has not committed yet)."""
        snap = getattr(self._local, "snapshot", None)
        if snap is not None:
            return snap
        if getattr(self._local, "pin", None) is not None:
            return self._open_pinned()
        if self.read_only or self.conn.in_transaction:
            return self.conn
        return self._thread_reader()

    def reads_committed(self) -> bool:
        """Whether this thread's lookups (``_lookup_db``) see committed state only: not the writer's
        own open transaction, which may still roll back (its rows then numbered again)."""
        return self.read_only or getattr(self._local, "snapshot", None) is not None or not self.conn.in_transaction

    @contextmanager
    def snapshot(self) -> Iterator[CommittedState]:
        """One read transaction on this thread: every read inside sees the same committed state.

        Writers need none (their process makes every change, under the store's write lock).
        """
        if not self.read_only or getattr(self._local, "snapshot", None) is not None:
            yield self.state()
            return
        version = self._current_version()  # before BEGIN: a commit in between only makes it stale sooner
        self._begin()
        try:
            committed = self.state()  # the first read fixes the snapshot
            self._local.seen = (version, committed.token)
            yield committed
        finally:
            self._end_snapshot()

    # A read-only handle's reads usually find nothing committed since the last one, and most of them
    # (a warm search: index, vector map and hits' records all in memory) need no SQLite at all. For
    # those, one PRAGMA replaces BEGIN, the read of the committed state and COMMIT (~40 us of a
    # ~110 us search at 100k; docs/benchmarks.md), and the read opens its snapshot only if it reads
    # SQLite after all, checking there that the state is still the one it searched.

    def unchanged(self) -> tuple | None:
        """The committed state's token this thread's last ``snapshot`` read, if no connection has
        committed since (``PRAGMA data_version``: no transaction, no table read), else None."""
        seen = getattr(self._local, "seen", None)
        if seen is None:
            return None
        return seen[1] if self._current_version() == seen[0] else None

    @contextmanager
    def pinned(self, token: tuple) -> Iterator[None]:
        """Reads on this thread that open their snapshot at the first SQLite read they make, and
        raise ``StaleRead`` there if the committed state is no longer ``token`` (the caller's
        in-memory state must not be paired with a newer state's rows). Read-only handles only."""
        self._local.pin = token
        try:
            yield
        finally:
            self._local.pin = None
            self._end_snapshot()

    def _open_pinned(self) -> sqlite3.Connection:
        token, self._local.pin = self._local.pin, None  # state() below reads through the snapshot
        conn = self._begin()  # ``pinned`` ends it
        if self.state().token != token:
            raise StaleRead
        return conn

    def _begin(self) -> sqlite3.Connection:
        """A read transaction on this thread's reader, made the thread's snapshot."""
        try:
            conn = self._thread_reader()
            conn.execute("BEGIN")
        except sqlite3.Error as exc:
            raise typed_sqlite_error(exc, self.path, "reading") from None
        self._local.snapshot = conn
        return conn

    def _end_snapshot(self) -> None:
        conn = getattr(self._local, "snapshot", None)
        self._local.snapshot = None
        if conn is not None:
            try:
                conn.execute("COMMIT")  # a read transaction: nothing to lose if it fails
            except sqlite3.Error:
                pass

    def _current_version(self) -> int:
        """``PRAGMA data_version`` of this thread's reader: changes when another connection commits."""
        try:
            return self._thread_reader().execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise typed_sqlite_error(exc, self.path, "reading") from None

    # --- state ------------------------------------------------------------------------------------

    @_typed("reading the store's metadata")
    def meta(self, keys: tuple[str, ...] | None = None) -> dict[str, str]:
        try:
            if keys is None:
                return dict(self._db().execute("SELECT key, value FROM meta").fetchall())
            return dict(self._db().execute(f"SELECT key, value FROM meta WHERE key IN ({','.join('?' * len(keys))})", keys).fetchall())
        except sqlite3.DatabaseError as exc:
            name = getattr(exc, "sqlite_errorname", "") or ""
            if any(name.startswith(code) for code in _READONLY | {"SQLITE_IOERR", "SQLITE_BUSY", "SQLITE_FULL"}):
                raise
            raise CorruptStoreError(f"{self.path}: unreadable store metadata ({exc})") from None

    def state(self) -> CommittedState:
        """The committed state, validated (its numbers decide what a writer may cut off)."""
        meta = self.meta(_STATE_KEYS)
        try:
            schema = int(meta.get("schema_version", "1"))
            epoch, rows, name = int(meta["epoch"]), int(meta["rows"]), meta["vector_file"]
            generation = int(meta["generation"]) if "generation" in meta else None
        except (KeyError, ValueError) as exc:
            raise CorruptStoreError(f"{self.path}: unreadable store metadata ({type(exc).__name__}: {exc})") from None
        if schema > SCHEMA_VERSION:
            raise UnsupportedFormatError(
                f"{self.path} has schema version {schema}; this mrl-retrievers reads up to {SCHEMA_VERSION}. "
                "Upgrade mrl-retrievers (the store is not damaged: do not rebuild it)."
            )
        match = _VECTOR_FILE.match(name)
        if schema < 1 or epoch < 0 or rows < 0 or (generation is not None and generation < 0) or match is None or int(match.group(1)) != epoch:
            # The name is opened for writing and truncated on recovery: never trust an odd one.
            raise CorruptStoreError(f"{self.path}: bad store metadata epoch={epoch} rows={rows} file={name!r}")
        tombstones = None if generation is not None else self._scalar("SELECT count(*) FROM tombstones")
        return CommittedState(epoch, rows, name, generation, tombstones)

    @_typed("reading")
    def _scalar(self, sql: str, params: Sequence = ()) -> int:
        value = self._db().execute(sql, params).fetchone()[0]
        return -1 if value is None else int(value)

    @_typed("checking the committed rows")
    def check_rows(self, rows: int) -> None:
        """Every row below ``rows`` is live or a tombstone and none is above: so the highest row
        named anywhere is ``rows - 1``. A damaged ``meta.rows`` fails this before anything trusts it."""
        top = max(self._scalar("SELECT max(row) FROM docs"), self._scalar("SELECT max(row) FROM tombstones"))
        if top != rows - 1:
            raise CorruptStoreError(
                f"{self.path}: meta says {rows} rows are committed, but the highest row in use is {top}; "
                "the store's metadata is damaged"
            )

    @_typed("reading the schema version")
    def schema_version(self) -> int:
        return int(self.meta().get("schema_version", "1"))

    def manifest_copy(self) -> str | None:
        """The copy of the manifest (without its derived index state) kept for reconstruction."""
        return self.meta().get("manifest")

    @_typed("counting items")
    def count(self) -> int:
        return self._db().execute("SELECT count(*) FROM docs").fetchone()[0]

    @_typed("reading live rows")
    def live_rows(self, *, start: int = 0, end: int | None = None) -> np.ndarray:
        """Live rows in [start, end), ascending."""
        if start == 0 and end is None:
            rows = self._db().execute("SELECT row FROM docs ORDER BY row").fetchall()
        else:
            rows = self._db().execute("SELECT row FROM docs WHERE row >= ? AND row < ? ORDER BY row",
                                      (start, (1 << 62) if end is None else end)).fetchall()
        return np.fromiter((r for (r,) in rows), dtype=np.int64, count=len(rows))

    @_typed("counting live rows")
    def live_per_segment(self, segment_rows: int) -> dict[int, int]:
        """Live rows per coarse-index segment (``segment_rows`` 0: one segment)."""
        if segment_rows == 0:
            return {0: self.count()}
        return dict(self._db().execute("SELECT row / ?, count(*) FROM docs GROUP BY 1", (segment_rows,)).fetchall())

    @_typed("reading tombstones")
    def tombstone_rows(self) -> list[int]:
        return [r for (r,) in self._db().execute("SELECT row FROM tombstones")]

    @_typed("reading tombstones")
    def tombstones_after(self, seq: int) -> tuple[list[int], int]:
        """Rows tombstoned after log position ``seq`` and the new position (schema 2)."""
        found = self._db().execute("SELECT seq, row FROM tombstone_log WHERE seq > ? ORDER BY seq", (seq,)).fetchall()
        return [r for _, r in found], (found[-1][0] if found else seq)

    @_typed("reading tombstones")
    def tombstone_seq(self) -> int:
        if self.schema_version() < 2:
            return 0
        return self._scalar("SELECT max(seq) FROM tombstone_log")

    # --- writes -------------------------------------------------------------------------------------

    @_typed("upgrading the store's schema")
    def migrate(self, manifest_copy: str) -> bool:
        """Bring a schema-1 store to schema 2 in one transaction. Returns True if it changed."""
        if self.schema_version() >= SCHEMA_VERSION:
            return False
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            columns = {c[1] for c in conn.execute("PRAGMA table_info(docs)")}
            if "rcrc" not in columns:
                conn.execute("ALTER TABLE docs ADD COLUMN rcrc INTEGER")
            conn.execute("CREATE TABLE IF NOT EXISTS tombstone_log (seq INTEGER PRIMARY KEY, row INTEGER NOT NULL)")
            # A generation, once there, only moves forward (read-only handles compare them).
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('generation', '0')")
            conn.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [("manifest", manifest_copy), ("schema_version", str(SCHEMA_VERSION))],
            )
            conn.execute("COMMIT")
        except BaseException as exc:
            self._abort(exc)
            raise
        return True

    @_typed("saving the manifest copy")
    def save_manifest_copy(self, manifest_copy: str) -> None:
        if self.meta().get("manifest") == manifest_copy:
            return
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('manifest', ?)", (manifest_copy,))

    def announce(self) -> None:
        """A commit that changes no row, only the generation: the manifest's search settings changed
        (a calibration, ``tune``), and read-only handles in other processes re-read them when they
        see the generation move (``follow.catch_up``)."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._bump(conn)
            conn.execute("COMMIT")
        except BaseException as exc:
            self._abort(exc)
            raise

    def _bump(self, conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    def _tombstone(self, conn: sqlite3.Connection, rows: list[int]) -> None:
        conn.executemany("INSERT INTO tombstones(row) VALUES (?)", ((r,) for r in rows))
        conn.executemany("INSERT INTO tombstone_log(row) VALUES (?)", ((r,) for r in rows))

    def _rows_of_ids(self, conn: sqlite3.Connection, ids: Sequence[str]) -> list[int]:
        rows: list[int] = []
        for part in _chunks(ids):
            rows.extend(r for (r,) in conn.execute(f"SELECT row FROM docs WHERE id IN ({','.join('?' * len(part))})", part))
        return rows

    def publish(
        self,
        ids: Sequence[str],
        start_row: int,
        texts: Sequence[str | None],
        metadatas: Sequence[str],
        crcs: Sequence[int],
        *,
        cursor: tuple[str, int] | None = None,
    ) -> list[int]:
        """Publish a batch in one transaction (the commit point). Returns the rows it superseded.

        ``cursor`` (a bulk load's name and source position) commits with the batch, so a resumed
        load starts exactly after the last batch that committed."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            old = self._rows_of_ids(conn, ids)
            self._tombstone(conn, old)
            conn.executemany("DELETE FROM docs WHERE row = ?", ((r,) for r in old))
            conn.executemany(
                "INSERT INTO docs(id, row, text, metadata, crc, rcrc) VALUES (?, ?, ?, ?, ?, ?)",
                ((i, start_row + n, t, m, c, record_checksum(i, t, m))
                 for n, (i, t, m, c) in enumerate(zip(ids, texts, metadatas, crcs))),
            )
            crash_point("add:mid-transaction")
            conn.execute("UPDATE meta SET value = ? WHERE key = 'rows'", (str(start_row + len(ids)),))
            if cursor is not None:
                conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (_CURSOR + cursor[0], str(cursor[1])))
            self._bump(conn)
            conn.execute("COMMIT")
        except BaseException as exc:
            self._abort(exc)
            raise
        crash_point("add:committed")
        return old

    def cursor(self, name: str) -> int:
        """Source rows a bulk load of this name has committed (0 if none)."""
        value = self.meta((_CURSOR + name,)).get(_CURSOR + name)
        return int(value) if value is not None else 0

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
        try:
            conn.execute("BEGIN IMMEDIATE")
            rows = sorted(set(self._rows_of_ids(conn, list(ids))))
            self._tombstone(conn, rows)
            conn.executemany("DELETE FROM docs WHERE row = ?", ((r,) for r in rows))
            crash_point("delete:mid-transaction")
            if rows:
                self._bump(conn)
            conn.execute("COMMIT")
        except BaseException as exc:
            self._abort(exc)
            raise
        crash_point("delete:committed")
        return rows

    def renumber(self, mapping: np.ndarray, *, epoch: int, vector_file: str) -> None:
        """After compaction: live row r becomes mapping[r]; tombstones vanish; one transaction."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            # Negative temporaries keep the UNIQUE(row) constraint satisfied while rows move.
            conn.execute("UPDATE docs SET row = -1 - row")
            conn.executemany(
                "UPDATE docs SET row = ? WHERE row = ?",
                ((int(new), -1 - int(old)) for old, new in enumerate(mapping.tolist()) if new >= 0),
            )
            conn.execute("DELETE FROM tombstones")
            conn.execute("DELETE FROM tombstone_log")
            live = conn.execute("SELECT count(*) FROM docs").fetchone()[0]
            conn.executemany(
                "UPDATE meta SET value = ? WHERE key = ?",
                [(str(epoch), "epoch"), (str(live), "rows"), (vector_file, "vector_file")],
            )
            self._bump(conn)
            conn.execute("COMMIT")
        except BaseException as exc:
            self._abort(exc)
            raise
        crash_point("compact:committed")

    # --- reads --------------------------------------------------------------------------------------

    @_typed("filtering")
    def rows_matching(self, flt) -> np.ndarray:
        """Live rows whose metadata satisfies the (parsed) filter, ascending."""
        sql, params = filters.to_sql(flt, column="metadata")
        try:
            rows = self._db().execute(f"SELECT row FROM docs WHERE {sql} ORDER BY row", params).fetchall()
        except sqlite3.OperationalError as exc:  # e.g. too many bound values in one $in
            if "too many" not in str(exc) and "too big" not in str(exc):
                raise
            raise FilterError(f"filter too large for SQLite ({exc}); split it or use fewer values") from None
        return np.fromiter((r for (r,) in rows), dtype=np.int64, count=len(rows))

    @_typed("listing ids")
    def ids_matching(self, flt) -> list[str]:
        """Ids of live items whose metadata satisfies the (parsed) filter, by row (insertion order)."""
        sql, params = filters.to_sql(flt, column="metadata") if flt is not None else ("1", [])
        return [i for (i,) in self._db().execute(f"SELECT id FROM docs WHERE {sql} ORDER BY row", params)]

    @_typed("reading items")
    def by_rows(self, rows: Sequence[int]) -> dict[int, tuple[str, str | None, str, int, int | None]]:
        """row -> (id, text, metadata JSON, crc, record crc) for the live rows among ``rows``."""
        in_list, params = _row_list(rows)
        cur = self._lookup_db().execute(f"SELECT row, id, text, metadata, crc, rcrc FROM docs WHERE row IN ({in_list})", params)
        return {row: (id_, text, meta, crc, rcrc) for row, id_, text, meta, crc, rcrc in cur}

    @_typed("reading items")
    def hit_records(self, rows: Sequence[int]) -> dict[int, tuple[str, str | None, str, int, int | None]]:
        """``by_rows`` for a search's hits, in one SQLite step: the records come back as one JSON
        array. Each row step hands the GIL over, and with threads searching side by side every
        hand-over waits for the other thread (10 hits: 11 steps; one step instead gave two threads
        ~15% more searches a second at 100k, docs/benchmarks.md "The compiled rerank"). JSON keeps
        every text exactly (NUL and any code point escaped); the caller still checks each record's
        checksum and re-reads a failing one with ``by_rows`` before calling it damage."""
        in_list, params = _row_list(rows)
        (doc,) = self._lookup_db().execute(
            f"SELECT json_group_array(json_array(row, id, text, metadata, crc, rcrc)) FROM docs WHERE row IN ({in_list})", params
        ).fetchone()
        return {row: (id_, text, meta, crc, rcrc) for row, id_, text, meta, crc, rcrc in json.loads(doc)}

    @_typed("reading items")
    def by_ids(self, ids: Sequence[str]) -> dict[str, tuple[int, str | None, str, int, int | None]]:
        """id -> (row, text, metadata JSON, crc, record crc) for the ids that exist."""
        found = {}
        db = self._db()
        for part in _chunks(sorted(set(ids))):
            cur = db.execute(f"SELECT id, row, text, metadata, crc, rcrc FROM docs WHERE id IN ({','.join('?' * len(part))})", part)
            found.update({id_: (row, text, meta, crc, rcrc) for id_, row, text, meta, crc, rcrc in cur})
        return found

    @_typed("reading checksums")
    def crcs(self, rows: Sequence[int]) -> dict[int, int]:
        in_list, params = _row_list(rows)
        return dict(self._lookup_db().execute(f"SELECT row, crc FROM docs WHERE row IN ({in_list})", params).fetchall())

    @_typed("reading checksums")
    def sample_crcs(self, rows: int, n: int) -> list[tuple[int, int]]:
        """(row, crc) of up to ``n`` live rows spread over [0, rows), ascending (index lookups only)."""
        found: dict[int, int] = {}
        db = self._db()
        for threshold in sorted({rows * i // max(1, n - 1) for i in range(n)}):
            hit = db.execute("SELECT row, crc FROM docs WHERE row >= ? AND row < ? ORDER BY row LIMIT 1", (threshold, rows)).fetchone()
            if hit is not None:
                found[hit[0]] = hit[1]
        last = db.execute("SELECT row, crc FROM docs WHERE row < ? ORDER BY row DESC LIMIT 1", (rows,)).fetchone()
        if last is not None:
            found[last[0]] = last[1]
        return sorted(found.items())

    @_typed("reading live rows")
    def live_rows_sample(self, below: int, n: int, *, start: int = 0) -> np.ndarray:
        """Up to ``n`` live rows spread over [start, below), ascending (index lookups only)."""
        db = self._db()
        found = set()
        for threshold in {start + (below - start) * i // max(1, n) for i in range(n)}:
            hit = db.execute("SELECT row FROM docs WHERE row >= ? AND row < ? ORDER BY row LIMIT 1", (threshold, below)).fetchone()
            if hit is not None:
                found.add(hit[0])
        return np.array(sorted(found), dtype=np.int64)

    @_typed("reading checksums")
    def all_rows_and_crcs(self) -> list[tuple[int, int]]:
        return self._db().execute("SELECT row, crc FROM docs ORDER BY row").fetchall()

    @_typed("reading items")
    def iter_records(self, block: int = 65536) -> Iterator[list[tuple[str, str | None, str, int | None]]]:
        """(id, text, metadata, record crc) of every live item, ``block`` at a time (for verify)."""
        cur = self._db().execute("SELECT id, text, metadata, rcrc FROM docs ORDER BY row")
        while part := cur.fetchmany(block):
            yield part

    def integrity_problems(self) -> list[str]:
        try:
            result = [r for (r,) in self._db().execute("PRAGMA integrity_check")]
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        return [] if result == ["ok"] else result


def damaged_record(id_: str, text: str | None, metadata: str, rcrc: int | None) -> bool:
    """Whether a record's id, text or metadata fail their checksum (None: written before schema 2)."""
    return rcrc is not None and record_checksum(id_, text, metadata) != rcrc


def check_record(store: object, id_: str, text: str | None, metadata: str, rcrc: int | None) -> None:
    """``CorruptStoreError`` (naming ``store``'s path and the command that lists the damage) when the
    record fails its checksum: what a search's hits and ``get`` say about a damaged record."""
    if damaged_record(id_, text, metadata, rcrc):
        raise CorruptStoreError(f"item {id_!r} of {store} fails its text/metadata checksum; "
                                f"run `mrl-retrievers verify {store}` to list damaged items")
