"""The hits' records (id, text, metadata) this handle has read and checked, kept in memory.

A search's last step attaches ids, texts and metadata to its k best rows. Read from SQLite that
step was a third of a 100k search (~75 us of ~230 in place: an index descent and a table descent
per hit, with the caches hnswlib and the rerank just walked through) and handed the GIL over at
every SQLite call. A row's record never changes while the row exists: an add writes new rows, a
delete removes rows, and only a compaction renumbers them (a new row epoch). So each record is read
and checked against its checksum once per handle and served from here afterwards, as the vector
rows' CRCs are (``search.RowChecks``).

Bounded by bytes (``RECORD_CACHE_BYTES`` per open handle, texts counted): past it the oldest
records leave first. Dropped rows are forgotten as they are tombstoned, and everything after a
compaction or when a read-only handle moves to another epoch. Records read inside a writer's own
open transaction are never kept: that transaction could still roll back and its rows be reused.
"""

from __future__ import annotations

import threading
from typing import Iterable

from .docstore import DocStore, check_record, damaged_record

# Per open handle. A record costs its strings plus ~150 bytes of Python objects: 32 MiB holds a 100k
# store's records whole when they carry no texts, and ~20k RAG chunks of 1-2 KB.
RECORD_CACHE_BYTES = 32 << 20
_OVERHEAD = 150


class HitRecords:
    """row -> (id, text, metadata JSON) for rows whose record was read and passed its checksum."""

    def __init__(self, budget: int = RECORD_CACHE_BYTES) -> None:
        self.budget = budget
        self.bytes = 0
        self._records: dict[int, tuple[str, str | None, str]] = {}
        self._lock = threading.Lock()  # writers of the dict; lookups need none (one dict.get each)

    def __len__(self) -> int:
        return len(self._records)

    def get(self, docs: DocStore, rows: list[int]) -> list[tuple[str, str | None, str] | None]:
        """The record of each of ``rows``, in order (None where a row holds none: the caller reads
        inside the committed state it ranked, where every row is live), each checked against its
        record checksum the first time this handle reads it."""
        known = self._records
        found = [known.get(row) for row in rows]
        if None not in found:  # the warm path: every record in memory
            return found
        missing = [row for row, record in zip(rows, found) if record is None]
        if missing:
            fresh = _read_checked(docs, missing)
            if docs.reads_committed():
                self._keep(fresh)
            found = [record if record is not None else fresh.get(row) for row, record in zip(rows, found)]
        return found

    def forget(self, rows: Iterable[int]) -> None:
        """Rows tombstoned: their records leave."""
        with self._lock:
            for row in rows:
                record = self._records.pop(int(row), None)
                if record is not None:
                    self.bytes -= _size(record)

    def reset(self) -> None:
        """Rows renumbered (a compaction, or a read-only handle on another row epoch)."""
        with self._lock:
            self._records = {}
            self.bytes = 0

    def _keep(self, fresh: dict[int, tuple[str, str | None, str]]) -> None:
        with self._lock:
            records = self._records
            for row, record in fresh.items():
                size = _size(record)
                if size > self.budget:
                    continue
                while self.bytes + size > self.budget and records:
                    oldest = next(iter(records))  # insertion order: first in, first out
                    self.bytes -= _size(records.pop(oldest))
                if row not in records:
                    records[row] = record
                    self.bytes += size


def _size(record: tuple[str, str | None, str]) -> int:
    id_, text, meta = record
    return len(id_) + len(meta) + (len(text) if text is not None else 0) + _OVERHEAD


def _read_checked(docs: DocStore, rows: list[int]) -> dict[int, tuple[str, str | None, str]]:
    """Read records in one SQLite step, each checked against its checksum. A record failing it is
    read again column by column (the one-step read goes through a JSON copy) before it counts as
    damage: then ``CorruptStoreError``."""
    out = {}
    for row, record in docs.hit_records(rows).items():
        id_, text, meta, _crc, rcrc = record
        if damaged_record(id_, text, meta, rcrc):  # the row's own columns decide, not their JSON copy
            id_, text, meta, _crc, rcrc = docs.by_rows([row]).get(row, record)
            check_record(docs.path.parent, id_, text, meta, rcrc)
        out[row] = (id_, text, meta)
    return out


__all__ = ["RECORD_CACHE_BYTES", "HitRecords"]
