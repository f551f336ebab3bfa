"""Bulk loads: millions of vectors from a ``.npy`` file, an array (or memmap) or a generator, in
bounded memory, resumable after a kill at any point.

The source is read ``batch_rows`` at a time; each batch is validated, normalized into the file's
dtype and published as one transaction (``MRLStore.add`` semantics: upsert by id, durable when the
batch commits). A load with a ``name`` records its source position in the same transaction as each
batch, so a load started again under that name continues after the last batch that committed:
nothing committed is sent again, and the coarse index redoes only the rows above its last
checkpoint (``store/checkpoints.py``; the segments that were complete are loaded, not rebuilt).
The next batch is read and prepared on a second thread while the current one is written and
inserted (numpy, SQLite and hnswlib release the GIL), so a 2-core machine keeps both cores busy.

The writes and checkpoints of a load do not recalibrate the search effort (``store/calibration.py``);
the load calibrates once at its end if the store needs it, so a 10M build pays for one calibration,
not one per ``GROWTH`` (1.5x) of its rows.

Memory: two batches at a time (``2 x batch_rows x full_dim`` float32 plus their file-dtype copies)
beside the coarse index itself.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np

from ...checks import positive_int
from ...errors import InvalidInputError
from ..effort import Calibration
from . import calibration
from .state import StoreState

DEFAULT_BATCH_ROWS = 65_536

# A source: a .npy path; an (n, dim) array or memmap; a callable start_row -> iterator of blocks;
# or an iterable of blocks. A block is an array of rows, or (ids, vectors) / (ids, vectors, texts)
# / (ids, vectors, texts, metadatas).
Source = Any
Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class PreparedBatch:
    """A validated batch in the vector file's dtype, with its row checksums: what ``MRLStore.add``
    publishes, and what ``bulk_add`` prepares for the next batch while the previous one publishes."""

    ids: list[str]
    stored: np.ndarray
    texts: list[str | None]
    metas: list[str]
    crcs: list[int]


class Loadable(Protocol):
    """What ``bulk_add`` needs of the store it loads: ``MRLStore`` (typed here, not imported: the
    store module imports this one)."""

    @property
    def _s(self) -> StoreState: ...

    def _prepare(self, ids: Any, vectors: Any, texts: Any, metadatas: Any) -> PreparedBatch: ...

    def _publish(self, batch: PreparedBatch, cursor: tuple[str, int] | None = None) -> None: ...

    def calibrate(self, target_recall: float | None = None, **options: Any) -> Calibration: ...


@dataclass
class LoadReport:
    """What a bulk load did. ``resumed_from``: source rows an earlier run under the same name had
    committed (skipped); ``rows``: rows this run committed; ``seconds``: this run's wall time."""

    name: str | None
    resumed_from: int
    rows: int
    seconds: float
    total: int | None

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def bulk_add(store: Loadable, source: Source, *, ids: Sequence[str] | Callable[[int], str] | None = None,
             texts: Sequence[str | None] | None = None, name: str | None = None, total: int | None = None,
             batch_rows: int = DEFAULT_BATCH_ROWS, progress: bool | Progress = False) -> LoadReport:
    """Load ``source`` into ``store`` batch by batch (see the module docstring)."""
    batch_rows = positive_int("batch_rows", batch_rows)
    if name is not None and (not isinstance(name, str) or not name):
        raise InvalidInputError(f"name must be a non-empty string, got {name!r}")
    started = time.perf_counter()
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = name or f"npy:{path.resolve()}:{path.stat().st_size}"
        source = np.load(path, mmap_mode="r")
    if total is None and hasattr(source, "shape"):
        total = int(source.shape[0])
    done = store._s.docs.cursor(name) if name else 0
    report_progress = _progress(progress, total, done)
    blocks = _blocks(source, done, batch_rows)
    id_of = _id_source(ids)
    prepared: queue.Queue[tuple[int, PreparedBatch] | BaseException | None] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def prepare() -> None:
        position = done
        try:
            for block in blocks:
                if stop.is_set():
                    return
                block_ids, vectors, block_texts, metas = _unpack(block, position, id_of, texts)
                prepared.put((position + len(vectors), store._prepare(block_ids, vectors, block_texts, metas)))
                position += len(vectors)
            prepared.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the writing thread, raised there
            prepared.put(exc)

    worker = threading.Thread(target=prepare, name="mrl-bulk-prepare", daemon=True)
    worker.start()
    rows = 0
    # The checkpoints a load takes must not each recalibrate the search effort (at every 1.5x of
    # a 10M build: three times the work of one calibration at the end); the load calibrates once, below.
    with calibration.paused(store._s) as calibrating:
        try:
            while True:
                item = prepared.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                position, batch = item
                store._publish(batch, cursor=(name, position) if name else None)
                rows += len(batch.ids)
                report_progress(done + rows)
        finally:
            stop.set()
            while worker.is_alive():  # unblock a producer waiting on the full queue
                try:
                    prepared.get_nowait()
                except queue.Empty:
                    pass
                worker.join(timeout=0.05)
            report_progress(None)
    if rows and calibrating and calibration.needs_calibration(store._s):
        store.calibrate(source="bulk_add")
    return LoadReport(name, done, rows, time.perf_counter() - started, total)


def _blocks(source: Source, start: int, batch_rows: int) -> Iterator[Any]:
    """Blocks of at most ``batch_rows`` rows, starting ``start`` rows into the source."""
    if hasattr(source, "shape") and hasattr(source, "__getitem__"):  # an array or memmap: slice it
        for lo in range(start, int(source.shape[0]), batch_rows):
            yield np.asarray(source[lo : lo + batch_rows], dtype=np.float32)
        return
    if callable(source):  # start_row -> iterator: resumes without regenerating what is stored
        iterator: Iterable = source(start)
        skip = 0
    else:
        iterator, skip = source, start
    for block in iterator:
        n = len(block[1] if isinstance(block, tuple) else block)
        if skip >= n:
            skip -= n
            continue
        if skip:
            block = tuple(part[skip:] if part is not None else None for part in block) if isinstance(block, tuple) else block[skip:]
            skip = 0
        yield from _split(block, batch_rows)


def _split(block: Any, batch_rows: int) -> Iterator[Any]:
    n = len(block[1] if isinstance(block, tuple) else block)
    for lo in range(0, n, batch_rows):
        if isinstance(block, tuple):
            yield tuple(part[lo : lo + batch_rows] if part is not None else None for part in block)
        else:
            yield block[lo : lo + batch_rows]


def _id_source(ids: Sequence[str] | Callable[[int], str] | None) -> Callable[[int, int], list[str]]:
    if ids is None:
        return lambda start, n: [str(i) for i in range(start, start + n)]
    if callable(ids):
        return lambda start, n: [ids(i) for i in range(start, start + n)]
    return lambda start, n: list(ids[start : start + n])


def _unpack(block: Any, position: int, id_of, texts) -> tuple[list[str], np.ndarray, Any, Any]:
    if isinstance(block, tuple):
        if not 2 <= len(block) <= 4:
            raise InvalidInputError("a block must be vectors or (ids, vectors[, texts[, metadatas]])")
        block_ids, vectors = list(block[0]), block[1]
        block_texts = block[2] if len(block) > 2 else None
        metas = block[3] if len(block) > 3 else None
        return block_ids, vectors, block_texts, metas
    n = len(block)
    return id_of(position, n), block, (list(texts[position : position + n]) if texts is not None else None), None


def _progress(progress: bool | Progress, total: int | None, start: int) -> Callable[[int | None], None]:
    """A callable taking the source position (None: finished)."""
    if callable(progress):
        return lambda done: None if done is None else progress(done, total)
    if not progress:
        return lambda done: None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm arrives with the package's dependencies
        return lambda done: done is not None and print(f"\rloaded {done:,}" + (f" / {total:,}" if total else ""),
                                                       end="", file=sys.stderr, flush=True)
    bar = tqdm(total=total, initial=start, unit="vec", unit_scale=True, desc="loading", file=sys.stderr,
               disable=None if progress is True else False)
    state = {"last": start}

    def update(done: int | None) -> None:
        if done is None:
            bar.close()
            return
        bar.update(done - state["last"])
        state["last"] = done

    return update


__all__ = ["DEFAULT_BATCH_ROWS", "LoadReport", "bulk_add"]
