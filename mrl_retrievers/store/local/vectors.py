"""The row-addressed vector file: full vectors, append-only, read through a memory map.

Row ``r`` lives at byte ``r * row_bytes``; there is no header (the manifest holds width and dtype,
SQLite holds how many rows are committed and each row's checksum). Bytes past the committed rows
are the remains of a batch that crashed before its commit: the writer cuts them off on open.

Reads never hand out views of the map (a later remap would invalidate them): every read copies, or
scores the rows in place (``best_of``, ``scores_of``: the compiled kernel reads the map directly).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import time
import zlib
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from . import kernel
from .crashpoints import crash_point

T = TypeVar("T")
_PAGE = mmap.PAGESIZE
DTYPES = {"float16": np.float16, "float32": np.float32}

def _load_mincore():
    """libc's mincore (is a page in the page cache?), or None where it is unavailable."""
    try:
        # PyDLL: the call keeps the GIL. A ctypes.CDLL call hands it over, and a hand-over this short
        # (one system call) makes a thread searching beside it wait for the GIL instead (kernel.c,
        # GIL_HOLD_WORK).
        fn = ctypes.PyDLL(ctypes.util.find_library("c") or None, use_errno=True).mincore
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    fn.restype = ctypes.c_int
    return fn


_mincore = _load_mincore()
_PROBES = 4  # rows sampled per gather to decide whether the cache is warm (a ctypes call is ~3 us)
# Once a probe found the sampled rows resident, the next gathers skip the probe (~25 us a search at
# 100k) unless one of them is slow: a gather whose copy takes more than _SLOW_ROW_NS a row faulted
# pages in from disk (a warm copy takes well under 1 us a row; a read from disk ~100 us), so the
# next gather probes again and prefetches what is cold. Every _PROBE_EVERY-th gather probes anyway
# (pages the kernel evicted a few at a time), and an eviction or a new map starts over with a probe.
_PROBE_EVERY = 32
_SLOW_ROW_NS = 5_000


def vector_file_name(epoch: int, dtype: str) -> str:
    return f"vectors.{epoch:06d}.{'f16' if dtype == 'float16' else 'f32'}"


def row_checksums(rows: np.ndarray) -> list[int]:
    """CRC-32 of each row's stored bytes (``rows`` already in the file's dtype)."""
    rows = np.ascontiguousarray(rows)
    return [zlib.crc32(r) for r in rows]  # each row is a contiguous buffer: no copy


class VectorFile:
    """Append rows, gather rows. Not thread-safe for writes: the store's write lock guards appends."""

    def __init__(self, path: Path, *, dim: int, dtype: str, writable: bool) -> None:
        self.path = path
        self.dim = dim
        self.dtype = np.dtype(DTYPES[dtype])
        self.row_bytes = dim * self.dtype.itemsize
        self.writable = writable
        flags = os.O_RDWR | os.O_CREAT if writable else os.O_RDONLY
        self._fd = os.open(path, flags, 0o644)
        self._map: mmap.mmap | None = None
        self._view: np.ndarray = np.empty((0, dim), dtype=self.dtype)
        self._pages = self.row_bytes // _PAGE + 2  # the most pages one row spans
        self._warm_left = 0  # gathers that may skip the residency probe (see _PROBE_EVERY)

    # --- size --------------------------------------------------------------------------------

    def rows_on_disk(self) -> int:
        return os.fstat(self._fd).st_size // self.row_bytes

    def bytes_on_disk(self) -> int:
        return os.fstat(self._fd).st_size

    def cut_to(self, rows: int) -> None:
        """Drop everything after ``rows`` rows (an uncommitted tail from a crashed batch)."""
        if self.bytes_on_disk() != rows * self.row_bytes:
            os.ftruncate(self._fd, rows * self.row_bytes)
            os.fsync(self._fd)
            self._remap(rows)

    # --- writes ------------------------------------------------------------------------------

    def append(self, start_row: int, rows: np.ndarray, *, durable: bool = True) -> None:
        """Write ``rows`` (already in the file dtype) at row ``start_row`` and flush them.

        Must complete before the SQLite transaction that publishes these rows commits.
        """
        data = np.ascontiguousarray(rows, dtype=self.dtype).tobytes()
        offset = start_row * self.row_bytes
        os.ftruncate(self._fd, offset)  # a crashed batch may have left a tail here
        written = 0
        while written < len(data):
            written += os.pwrite(self._fd, data[written:], offset + written)
        crash_point("add:vectors-written")
        if durable:
            os.fsync(self._fd)
        crash_point("add:vectors-synced")

    # --- reads -------------------------------------------------------------------------------

    def ensure_mapped(self, rows: int) -> None:
        """Make sure rows [0, rows) are visible through the map (remap after appends)."""
        if rows > self._view.shape[0]:
            self._remap(rows)

    def _remap(self, rows: int) -> None:
        length = rows * self.row_bytes
        if length == 0:
            self._map, self._view = None, np.empty((0, self.dim), dtype=self.dtype)
            return
        self._warm_left = 0
        mm = mmap.mmap(self._fd, length, access=mmap.ACCESS_READ)
        # Reranks touch a few hundred scattered rows: without this, the kernel's readahead turns
        # each cold row into a large sequential read (measured ~170 ms vs ~5 ms for 200 rows).
        if hasattr(mmap, "MADV_RANDOM"):
            mm.madvise(mmap.MADV_RANDOM)
        self._map = mm
        self._view = np.frombuffer(mm, dtype=self.dtype).reshape(-1, self.dim)

    def gather(self, rows: np.ndarray, *, columns: int | None = None) -> np.ndarray:
        """Copy the given rows (sorted ascending for locality) in the file dtype.

        ``columns`` limits the read to each row's first ``columns`` numbers (the funnel stage).
        """
        if len(rows) == 0:
            return np.empty((0, columns or self.dim), dtype=self.dtype)
        self.ensure_mapped(int(rows[-1]) + 1)
        view = self._view if columns is None else self._view[:, :columns]
        return self._read(rows, lambda: view[rows])  # fancy indexing copies

    def best_of(self, rows: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best of ``rows`` (any order) by dot product with ``query``: (rows, scores), best
        first (``kernel.best_of``), read in place. The caller checks the rows' CRC-32 first."""
        if len(rows) == 0:
            return kernel.best_of(self._view, rows, query, k)
        return self._in_place(rows, lambda: kernel.best_of(self._view, rows, query, k))

    def scores_of(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Dot products of ``rows`` (any order) with ``query``, by the same arithmetic as ``best_of``."""
        if len(rows) == 0:
            return np.empty(0, dtype=np.float32)
        return self._in_place(rows, lambda: kernel.scores_of(self._view, rows, query))

    def read_unnamed(self, read: Callable[[np.ndarray], T], rows_read: int) -> T | None:
        """``read(map as an array)`` for a read whose rows are not known before the call (the fused
        search: the graph names them inside it), or None when the cache is not known to be warm: the
        caller then takes a path that names its rows first, which probes and prefetches cold ones
        (``_read``). A call slower than twice the cold-row threshold for ``rows_read`` rows re-arms the probe."""
        if self._warm_left <= 0 or self._map is None:
            return None
        self._warm_left -= 1
        started = time.perf_counter_ns()
        out = read(self._view)
        if time.perf_counter_ns() - started > 2 * _SLOW_ROW_NS * rows_read:
            self._warm_left = 0
        return out

    def _in_place(self, rows: np.ndarray, score):
        self.ensure_mapped(int(rows.max()) + 1)  # rows come in any order
        return self._read(rows, score)

    def _read(self, rows: np.ndarray, read):
        """``read()`` of mapped rows, cold pages prefetched first (see ``_PROBE_EVERY``)."""
        if self._warm_left > 0:
            self._warm_left -= 1
            started = time.perf_counter_ns()
            out = read()
            if time.perf_counter_ns() - started > _SLOW_ROW_NS * len(rows):
                self._warm_left = 0  # it read from disk: probe (and prefetch) again next time
            return out
        self._prefetch(rows)
        return read()

    def _prefetch(self, rows: np.ndarray) -> None:
        """Ask the kernel to start reading all candidate pages at once (MADV_WILLNEED).

        One madvise per row costs ~0.1 ms of CPU for 200 rows even when every page is cached: when
        a few sampled rows are found resident (mincore), the cache is warm and the calls are skipped
        (and so is the probe itself for the next gathers: ``_PROBE_EVERY``).
        """
        if self._map is None or len(rows) > 4096 or not hasattr(mmap, "MADV_WILLNEED"):
            return
        if self._resident(rows[:: max(1, len(rows) // _PROBES)]):
            self._warm_left = _PROBE_EVERY
            return
        starts = (rows.astype(np.int64) * self.row_bytes // _PAGE) * _PAGE
        ends = rows.astype(np.int64) * self.row_bytes + self.row_bytes
        for start, end in zip(starts.tolist(), ends.tolist()):
            self._map.madvise(mmap.MADV_WILLNEED, start, end - start)

    def _resident(self, rows: np.ndarray) -> bool:
        """Whether every page of the given rows is in the page cache (False when unknown)."""
        if _mincore is None:
            return False
        base = self._view.ctypes.data
        row_bytes = self.row_bytes
        vec = (ctypes.c_ubyte * self._pages)()  # per call: searches on several threads probe at once
        for row in rows.tolist():
            start = row * row_bytes
            first = start - start % _PAGE
            count = (start + row_bytes - 1) // _PAGE - first // _PAGE + 1
            # The low bit of each page's byte says "resident"; a row spans one page or a few.
            if _mincore(base + first, count * _PAGE, vec) != 0 or not all(b & 1 for b in vec[:count]):
                return False
        return True

    def iter_blocks(self, rows: int, block: int = 65536):
        """Yield (start_row, copy of rows) over [0, rows), for rebuilds and exact scans."""
        self.ensure_mapped(rows)
        for start in range(0, rows, block):
            yield start, np.array(self._view[start : min(rows, start + block)])

    def drop_page_cache(self) -> None:
        """Evict this file from the page cache (benchmarks of cold reads). Pages mapped here survive
        ``POSIX_FADV_DONTNEED``: this handle's map lets go of them first."""
        self._warm_left = 0
        if self._map is not None:
            self._map.madvise(mmap.MADV_DONTNEED)
        if self._fd >= 0:
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def close(self) -> None:
        self._map = None
        self._view = np.empty((0, self.dim), dtype=self.dtype)
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
