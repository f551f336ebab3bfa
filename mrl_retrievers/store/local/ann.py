"""The coarse index: hnswlib over renormalized prefixes, with its sharp edges owned here.

The graph is hnswlib's: compiled into this package (``_graph.cpp`` over the vendored headers of
hnswlib 0.8.0), or the hnswlib package where that extension was not built (or with
``MRL_RETRIEVERS_GRAPH=hnswlib`` in the environment). Both read and write the same files. The
compiled graph takes the search breadth per call and searches and reranks in one GIL-free call
(``search_best_of``); the package takes the breadth as a setting of the index (``_EfGate``). It
keeps the prefixes as float16 in RAM where the CPU converts float16 (``_half.h``: half the graph's
memory; the files stay float32); ``MRL_RETRIEVERS_GRAPH=float32`` keeps them float32.

hnswlib 0.8.0 facts this wrapper exists for (see FACTS.md):
- ``knn_query`` raises "Cannot return the results in a contiguous 2D array" when it finds fewer
  than k live items (empty index, k above the live count, deletions): we clamp k and retry.
- ``add_items``/``resize_index`` beside ``knn_query`` crash: the store's readers-writer lock
  guards every mutation; this class is not thread-safe for writes.
- ``save_index`` writes straight over its destination: we save to a temp file and rename.
- ``load_index`` trusts the header (crafted files segfault): we only load a file whose size and
  CRC-32 match what we recorded when we wrote it, after checking the header fields.
- ``ef`` is not saved: the manifest keeps it.
- ``get_current_count`` counts deleted items: we count deletions ourselves.
"""

from __future__ import annotations

import functools
import os
import struct
import threading
from pathlib import Path

import hnswlib
import numpy as np

from ...errors import CorruptStoreError, StoreIOError
from .fs import commit_temp_file, file_crc32, temp_path

try:
    from . import _graph
except ImportError:  # not built (no C++ compiler at install time, or a source checkout never installed)
    _graph = None
    _WHY_NOT = "the hnswlib package (the compiled graph was not built: reinstall with a C++ compiler)"
else:
    _WHY_NOT = "the hnswlib package (MRL_RETRIEVERS_GRAPH=hnswlib)"

_CHOICE = os.environ.get("MRL_RETRIEVERS_GRAPH", "").lower()
if _CHOICE == "hnswlib":
    _graph = None
# float16 prefixes in RAM: the compiled graph's default where it was built with the CPU's F16C.
_HALF = _graph is not None and bool(_graph.HALF) and _CHOICE != "float32"


def compiled() -> bool:
    """Whether new and loaded indexes use the compiled graph (False: the hnswlib package)."""
    return _graph is not None


def describe() -> str:
    """What serves the coarse index here (``mrl-retrievers info`` shows it)."""
    if _graph is None:
        return _WHY_NOT
    return f"compiled graph (vendored hnswlib 0.8.0, {'float16' if _HALF else 'float32'} prefixes in RAM)"


def estimated_ram_bytes(count: int, dim: int, M: int, half: bool | None = None) -> int:
    """An estimate of the RAM of a graph of ``count`` prefixes ``dim`` wide at degree ``M``: per
    element its prefix (2 bytes a component with float16 prefixes, else 4), its level-0 links (8 M +
    4 bytes) and ~110 bytes of label, label map, upper levels and write locks (FACTS.md: N * (4 * dim
    + 8 * M + ~110) for hnswlib's float32 graph). ``half`` None: what a new graph here holds."""
    half = _HALF if half is None else half
    return count * ((2 if half else 4) * dim + 8 * M + 110)


def _new_graph(dim: int, half: bool | None):
    """A compiled graph (float16 prefixes unless ``half`` is False, or where not supported), else the
    hnswlib package's index."""
    if _graph is None:
        return hnswlib.Index(space="ip", dim=dim)
    return _graph.Graph(dim, half=_HALF if half is None else half)


def _is_compiled(index) -> bool:
    """Whether ``index`` is the compiled graph (else the hnswlib package's ``Index``, or a stand-in)."""
    return _graph is not None and isinstance(index, _graph.Graph)


_HEADER = struct.Struct("<QQQQQQiIQQQdQ")  # hnswalg.h saveIndex(), fields in order


def check_header(path: Path, *, dim: int) -> None:
    """Reject a file hnswlib would misread: header fields inconsistent with ``dim`` or with each
    other, or a body whose link lists do not end exactly at the end of the file (a short write)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(_HEADER.size)
        if len(raw) < _HEADER.size:
            raise CorruptStoreError(f"{path.name}: shorter than an hnswlib header")
        (off_l0, max_el, count, per_el, label_off, off_data, max_level, enter, max_m, max_m0, m, _mult, _efc) = _HEADER.unpack(raw)
        links0 = max_m0 * 4 + 4
        problems = []
        if off_l0 != 0 or not 2 <= m <= 2048 or max_m != m or max_m0 != 2 * m:
            problems.append("graph parameters")
        if per_el != links0 + dim * 4 + 8 or off_data != links0 or label_off != links0 + dim * 4:
            problems.append(f"element layout (not a {dim}-wide index)")
        if count > max_el or (count and (enter >= count or not 0 <= max_level < 64)):
            problems.append("element count / entry point")
        if size < _HEADER.size + count * (per_el + 4):
            problems.append("file shorter than its element count")
        if not problems:
            fh.seek(_HEADER.size + count * per_el)
            problems.extend(_link_list_problems(fh.read(), count, max_m * 4 + 4, max_level))
    if problems:
        raise CorruptStoreError(f"{path.name}: bad hnswlib file ({', '.join(problems)})")


def _link_list_problems(body: bytes, count: int, per_level: int, max_level: int) -> list[str]:
    """Walk the upper-level link lists as hnswlib's loadIndex does; they must fill ``body`` exactly."""
    pos, end, unpack = 0, len(body), struct.Struct("<I").unpack_from
    for _ in range(count):
        if pos + 4 > end:
            return ["link lists cut short"]
        length = unpack(body, pos)[0]
        if length % per_level or length // per_level > max_level:
            return ["link list sizes"]
        pos += 4 + length
    return [] if pos == end else ["link lists cut short" if pos > end else "trailing bytes"]


class AnnIndex:
    """hnswlib inner-product index over unit prefixes; labels are vector-file rows."""

    def __init__(self, index, dim: int, deleted: int = 0) -> None:
        """``index``: a compiled ``_graph.Graph`` or an ``hnswlib.Index`` (anything with its methods)."""
        if _is_compiled(index):
            self._graph, self._knn = index, functools.partial(_compiled_knn, index)
        else:
            self._graph = _PackageGraph(index)
            self._knn = self._graph.knn
        self.dim = dim
        self.deleted = deleted

    @property
    def fused(self) -> bool:
        """Whether ``search_best_of`` and ``search_scored`` can answer (the compiled graph)."""
        return not isinstance(self._graph, _PackageGraph)

    @classmethod
    def empty(cls, dim: int, *, M: int, ef_construction: int, capacity: int = 1024, half: bool | None = None) -> "AnnIndex":
        """``half``: float16 prefixes in RAM (None: the compiled graph's default, ``_HALF``)."""
        index = _new_graph(dim, half)
        if _is_compiled(index):
            index.init(max(capacity, 16), M, ef_construction, 100)
        else:
            index.init_index(max_elements=max(capacity, 16), M=M, ef_construction=ef_construction, random_seed=100)
        return cls(index, dim)

    @classmethod
    def load(cls, path: Path, *, dim: int, size: int, crc32: int, half: bool | None = None) -> "AnnIndex":
        """Load a checkpoint, but only if it is byte-for-byte the file we wrote (``half``: as ``empty``)."""
        if not path.is_file() or path.stat().st_size != size:
            raise CorruptStoreError(f"{path.name}: missing or wrong size")
        check_header(path, dim=dim)
        if file_crc32(path) != crc32:
            raise CorruptStoreError(f"{path.name}: checksum mismatch")
        index = _new_graph(dim, half)
        try:
            if _is_compiled(index):
                index.load(str(path), 0)
            else:
                index.load_index(str(path), max_elements=0)
        except RuntimeError as exc:  # "Index seems to be corrupted or unsupported"
            raise CorruptStoreError(f"{path.name}: hnswlib refused it ({exc})") from None
        return cls(index, dim)

    # --- size --------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Elements ever added (deleted included): labels [0, count) for our row-ordered adds."""
        return self._graph.count()

    @property
    def live(self) -> int:
        return self.count - self.deleted

    @property
    def half(self) -> bool:
        """Whether the prefixes are float16 in RAM (the compiled graph's default)."""
        return self.fused and self._graph.is_half()

    def ram_bytes(self, M: int) -> int:
        """An estimate of this graph's RAM (``estimated_ram_bytes``)."""
        return estimated_ram_bytes(self.count, self.dim, M, half=self.half)

    # --- writes (caller holds the write lock) ---------------------------------------------------

    def add(self, prefixes: np.ndarray, rows: np.ndarray, num_threads: int = 1) -> None:
        """Insert prefixes under row labels (bulk builds pass num_threads=-1: all cores)."""
        needed = self.count + len(rows)
        capacity = self._graph.capacity()
        if needed > capacity:
            self._graph.resize(max(needed, capacity * 2))
        self._graph.add(np.ascontiguousarray(prefixes, dtype=np.float32), np.ascontiguousarray(rows, dtype=np.int64), num_threads)

    def mark_deleted(self, rows) -> None:
        for row in rows:
            try:
                self._graph.mark_deleted(int(row))
            except RuntimeError:  # not in the index, or already deleted: nothing to do
                continue
            self.deleted += 1

    def save(self, path: Path) -> tuple[int, int]:
        """Checkpoint atomically; return (size, crc32) for the manifest."""
        tmp = temp_path(path)
        tmp.unlink(missing_ok=True)  # hnswlib's ofstream would write through a planted symlink
        self._graph.save(str(tmp))
        try:
            # hnswlib never checks its ofstream: on a full disk it returns with a short file.
            check_header(tmp, dim=self.dim)
        except CorruptStoreError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreIOError(f"{path.name}: the checkpoint was not written whole ({exc}); disk full?") from None
        crc = file_crc32(tmp)
        size = tmp.stat().st_size
        commit_temp_file(tmp, path, point="ann")
        return size, crc

    # --- reads (safe beside other reads) ----------------------------------------------------------

    def vectors_of(self, rows: np.ndarray) -> np.ndarray | None:
        """The prefixes stored under these labels (None if one is missing or deleted)."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        try:
            self._graph.get_items(rows, out)
        except RuntimeError:  # "Label not found"
            return None
        return out

    def query(self, prefixes: np.ndarray, k: int, ef: int, num_threads: int = 1, *,
              attempts: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows by prefix similarity for each query; fewer columns if fewer live items.

        Returns (rows int64 (q, k'), similarities float32 (q, k')). ``attempts=1``: no retry with a
        wider ef (LookupError instead), so the answer is exactly hnswlib's search at ``max(ef, k)``.
        """
        k = min(k, self.live)
        if k <= 0:
            q = len(prefixes)
            return np.empty((q, 0), dtype=np.int64), np.empty((q, 0), dtype=np.float32)
        for attempt in range(attempts):
            # ef below k is meaningless; hnswlib silently raises it, we do it explicitly.
            found = self._knn(prefixes, k, max(ef, k) * (2**attempt), num_threads)
            if found is not None:
                return found
            # Deletions can leave the graph search short of k live items: widen and retry.
        raise LookupError("coarse index could not return enough candidates")

    def search_best_of(self, prefix: np.ndarray, shortlist: int, ef: int, matrix: np.ndarray, checked: np.ndarray,
                       query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | np.ndarray | None:
        """A fixed-effort search in one call (compiled graph only: ``fused``): the ``shortlist`` rows
        nearest ``prefix`` (unit, float32) at ``ef``, then the ``k`` best of them by ``query`` against
        ``matrix`` (the vector file's rows), as (rows, scores) best first: ``kernel.best_of``'s answer.

        Returns the shortlist's rows alone (an array) when one of them is not marked in ``checked`` yet
        (the caller verifies their checksums, then reranks them), and None when the call cannot answer
        (fewer than ``shortlist`` live items found at this ef, or a row outside ``matrix``): the caller
        takes the unfused path, which retries wider and raises what is wrong."""
        ef = max(ef, shortlist)  # before the clamp below, as ``query`` is asked by the stepwise path
        shortlist = min(shortlist, self.live)
        if shortlist <= 0:
            return None
        candidates = np.empty(shortlist, dtype=np.int64)
        rows = np.empty(min(k, shortlist), dtype=np.int64)
        scores = np.empty(len(rows), dtype=np.float32)
        count = self._graph.search_best_of(prefix, shortlist, ef, matrix, checked, query, candidates, rows, scores)
        if count >= 0:
            return rows[:count], scores[:count]
        return candidates if count == -4 else None

    def search_scored(self, prefix: np.ndarray, shortlist: int, ef: int, matrix: np.ndarray, checked: np.ndarray,
                      query: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The adaptive climb's first level in one call (compiled graph only: ``fused``): the
        ``shortlist`` rows nearest ``prefix`` at ``ef`` as (rows, prefix similarities, full scores by
        ``query`` against ``matrix``), all in prefix order: what ``query`` followed by
        ``kernel.scores_of`` gives, bit for bit. None when the call cannot answer (fewer than
        ``shortlist`` live items found at this ef, a row outside ``matrix``, or one not marked in
        ``checked`` yet): the caller takes the stepwise path, which retries wider, verifies the
        rows' checksums and raises what is wrong."""
        ef = max(ef, shortlist)
        if not 0 < shortlist <= self.live:
            return None
        rows = np.empty(shortlist, dtype=np.int64)
        sims = np.empty(shortlist, dtype=np.float32)
        scores = np.empty(shortlist, dtype=np.float32)
        if self._graph.search_scored(prefix, shortlist, ef, matrix, checked, query, rows, sims, scores) < 0:
            return None
        return rows, sims, scores


def _compiled_knn(graph, prefixes: np.ndarray, k: int, ef: int, threads: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows, similarities) from the compiled graph, or None when the walk found fewer than ``k``."""
    prefixes = np.ascontiguousarray(prefixes, dtype=np.float32)
    labels = np.empty((len(prefixes), k), dtype=np.int64)
    sims = np.empty((len(prefixes), k), dtype=np.float32)
    return (labels, sims) if graph.knn(prefixes, k, ef, threads, labels, sims) >= k else None


class _PackageGraph:
    """The hnswlib package's ``Index`` behind the compiled graph's methods (``_graph.Graph``)."""

    def __init__(self, index) -> None:
        self._index = index
        self._ef = _EfGate(index)

    def count(self) -> int:
        return self._index.get_current_count()

    def capacity(self) -> int:
        return self._index.get_max_elements()

    def resize(self, size: int) -> None:
        self._index.resize_index(size)

    def add(self, items: np.ndarray, labels: np.ndarray, threads: int) -> None:
        self._index.add_items(items, labels, num_threads=threads)

    def mark_deleted(self, label: int) -> None:
        self._index.mark_deleted(label)

    def save(self, path: str) -> None:
        self._index.save_index(path)

    def get_items(self, labels: np.ndarray, out: np.ndarray) -> None:
        out[:] = self._index.get_items(labels, return_type="numpy")

    def knn(self, prefixes: np.ndarray, k: int, ef: int, threads: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(rows, similarities), or None when the walk found fewer than ``k`` live items."""
        gate = self._ef
        gate.enter(ef)
        try:
            labels, dist = self._index.knn_query(prefixes, k=k, num_threads=threads)
        except RuntimeError:  # "Cannot return the results in a contiguous 2D array"
            return None
        finally:
            gate.leave()
        # hnswlib's labels are uint64 and its distances float32 (1 - inner product).
        return labels.astype(np.int64), np.subtract(np.float32(1.0), dist, dtype=np.float32)


class _EfGate:
    """hnswlib's search breadth is one setting of the index (``set_ef``), not an argument of
    ``knn_query``: a search that set 400 could run at another thread's 16 (fewer neighbours than it
    asked for), and a calibration measuring one level beside searches could measure another level's
    recall. Searches at the same ef run together; a different ef waits until those in flight end.

    Fair: the first search that must wait for another ef books it (``_next``), and searches that
    arrive after it queue behind, even at the ef in flight. Without that, searches at one ef kept
    joining those in flight, and a calibration waiting for its ef beside four searching threads
    never got in."""

    def __init__(self, index: hnswlib.Index) -> None:
        self._index = index
        self._cond = threading.Condition()
        self._ef: int | None = None
        self._inflight = 0
        self._next: int | None = None  # the ef the gate switches to when those in flight end

    def enter(self, ef: int) -> None:
        """Wait for this ef's turn, then set ``ef`` and count this search in; every ``enter``
        needs its ``leave``. (Two calls, not a context manager: a generator-based one costs a
        search ~1.5 us.)"""
        with self._cond:
            booked = False
            try:
                while not self._may_enter(ef):
                    if self._next is None:
                        self._next, booked = ef, True
                    self._cond.wait()
            except BaseException:  # interrupted while waiting: give the booking up
                if booked and self._next == ef:
                    self._next = None
                    self._cond.notify_all()
                raise
            if self._next == ef:
                self._next = None
            if self._ef != ef:
                self._index.set_ef(ef)
                self._ef = ef
            self._inflight += 1

    def _may_enter(self, ef: int) -> bool:
        if self._inflight == 0:
            return self._next is None or self._next == ef
        return self._ef == ef and self._next is None

    def leave(self) -> None:
        with self._cond:
            self._inflight -= 1
            if not self._inflight:
                self._cond.notify_all()
