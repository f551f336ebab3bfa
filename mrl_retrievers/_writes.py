"""What ``MRLIndex.add_texts`` does before and around its store writes: checks the whole call,
then writes its steps in order on one worker thread while the next step is embedded.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Mapping

import numpy as np

from .errors import InvalidInputError, InvalidMetadataError
from .metadata import validate_metadatas
from .store import VectorStore
from .store.validation import check_ids, check_utf8

Progress = Callable[[int, int], None]


class StepWriter:
    """Writes steps to the store in order, one at a time, on one worker thread.

    ``put`` waits for the previous step's write (raising its error, reporting its progress), then
    starts this one and returns, so the caller embeds the next step meanwhile. Leaving the block
    waits for the last write; leaving it with an error still waits for the write in flight, so it
    commits (or fails) before the error propagates. ``threaded=False`` writes inline (one step).

    The one pipelined writer under both ``add_texts`` (``with`` / ``put``) and ``aadd_texts``
    (``async with`` / ``aput``: the same worker thread and order, awaited instead of blocked on).
    Steps written on the worker are one load for a store that offers ``loading`` (the local store:
    one self-calibration after the last step, not one at each growth step; ``MRLStore.loading``).
    """

    def __init__(self, store: Callable[[], VectorStore | None], progress: Progress | None, total: int, *,
                 threaded: bool) -> None:
        self._store, self._progress, self._total = store, progress, total
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mrl-store-writer") if threaded else None
        self._pending: tuple[Future, int] | None = None
        self._loading: contextlib.AbstractContextManager | None = None

    def put(self, ids: list[str], vectors: np.ndarray, texts: list[str], metadatas: list[Any], stop: int) -> None:
        self._drain()
        if self._pool is not None and self._loading is None:  # the store exists from the first step on
            self._loading = getattr(self._store(), "loading", contextlib.nullcontext)()
            self._loading.__enter__()
        if self._pool is None:
            self._store().add(ids, vectors, texts=texts, metadatas=metadatas)
            self._report(stop)
        else:
            self._pending = (self._pool.submit(self._store().add, ids, vectors, texts=texts, metadatas=metadatas), stop)

    async def aput(self, ids: list[str], vectors: np.ndarray, texts: list[str], metadatas: list[Any], stop: int) -> None:
        await self._adrain()
        self.put(ids, vectors, texts, metadatas, stop)  # nothing pending now: put only submits

    def _drain(self) -> None:
        if self._pending is not None:
            future, stop = self._pending
            self._pending = None
            future.result()
            self._report(stop)

    async def _adrain(self) -> None:
        if self._pending is not None:
            future, stop = self._pending
            self._pending = None
            await asyncio.wrap_future(future)
            self._report(stop)

    def _report(self, stop: int) -> None:
        if self._progress:
            self._progress(stop, self._total)

    def __enter__(self) -> "StepWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self._drain()
            elif self._pending is not None:
                # An error (the next step's embedding, usually): the step being written still
                # commits first. If that write failed too, its error is the one raised (it was
                # the earlier step), with this one as its context.
                future, _ = self._pending
                self._pending = None
                wait([future])
                self._raise_failed(future)
        except BaseException as failed:
            self._end_load(failed)
            raise
        else:
            self._end_load(exc)
        finally:
            self._close()

    async def __aenter__(self) -> "StepWriter":
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                await self._adrain()
            elif self._pending is not None:  # as __exit__, awaited
                future, _ = self._pending
                self._pending = None
                await asyncio.wait([asyncio.wrap_future(future)])
                self._raise_failed(future)
        except BaseException as failed:
            self._end_load(failed)
            raise
        else:
            await asyncio.to_thread(self._end_load, exc)  # the load's calibration: seconds, off the loop
        finally:
            self._close()

    def _end_load(self, error: BaseException | None) -> None:
        """Leave the store's load: it calibrates if it needs to, unless the writes ended in ``error``."""
        loading, self._loading = self._loading, None
        if loading is not None:
            loading.__exit__(*((type(error), error, error.__traceback__) if error is not None else (None, None, None)))

    @staticmethod
    def _raise_failed(future: Future) -> None:
        if not future.cancelled() and future.exception() is not None:
            raise future.exception()

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)  # nothing is in flight any more: returns at once


def check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise InvalidInputError(f"query text must be a string, got {type(text).__name__}")
    return text


def check_batch(texts: Any, metadatas: Any, ids: Any, *, reject_empty: bool) -> tuple[list[str], list[Any], list[str]]:
    """Validate a whole ``add_texts`` call before anything is embedded or written.

    Errors name the position in the caller's lists (``metadatas[599]``), never a position inside a
    step; the store checks each step again, but by then nothing can fail on the input.
    """
    if isinstance(texts, (str, bytes)):
        raise InvalidInputError("texts must be a list of strings, not one string")
    try:
        texts = list(texts)
    except TypeError:
        raise InvalidInputError(f"texts must be a list of strings, got {type(texts).__name__}") from None
    n = len(texts)
    if ids is not None and (isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__")):
        raise InvalidInputError(f"ids must be a list of strings, got {type(ids).__name__}")
    ids = [str(uuid.uuid4()) for _ in texts] if ids is None else list(ids)
    if metadatas is not None and (isinstance(metadatas, (str, bytes, Mapping)) or not hasattr(metadatas, "__iter__")):
        raise InvalidMetadataError(f"metadatas must be a list with one dict (or None) per text, got {type(metadatas).__name__}")
    metadatas = [None] * n if metadatas is None else list(metadatas)
    if not len(ids) == len(metadatas) == n:
        raise InvalidInputError(f"got {n} texts, {len(ids)} ids and {len(metadatas)} metadatas; pass one of each per text")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(f"texts[{i}] must be a string, got {type(text).__name__}")
        check_utf8(text, f"texts[{i}]")
        if reject_empty and not text.strip():
            raise InvalidInputError(f"texts[{i}] is empty or whitespace-only; the provider rejects those (drop or fill them)")
    ids = check_ids(ids)
    validate_metadatas(metadatas, n)
    return texts, metadatas, ids


__all__ = ["Progress", "StepWriter", "check_batch", "check_text"]
