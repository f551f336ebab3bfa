"""Scripted behaviours of the loopback servers: faults and rate limits.

* ``Fault`` / ``FaultScript``: a FIFO of scripted behaviours, one consumed per request: an HTTP
  status (429 with or without ``retry-after`` / ``retry-after-ms``, 5xx, ...), a hang, a connection
  reset, malformed JSON, or a mutation of an otherwise good answer (wrong count, wrong width, NaN).
* ``RateLimiter``: requests/tokens per minute over a sliding window, for 429 with ``Retry-After``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

FAULT_KINDS = ("status", "hang", "reset", "malformed", "wrong_count", "wrong_width", "nan", "ok")


@dataclass(frozen=True)
class Fault:
    """One scripted behaviour for the next request. Build with the class methods.

    Attributes:
        kind: one of ``FAULT_KINDS``.
        status: HTTP status for ``status`` faults.
        headers: extra response headers (e.g. ``retry-after``).
        body: a body that replaces the API's usual error body, or None.
        seconds: how long a ``hang`` sleeps before answering normally.
        retry_delay: Gemini only: a ``google.rpc.RetryInfo`` delay put in the error body.
    """

    kind: str
    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    body: Any = None
    seconds: float = 0.0
    retry_delay: float | None = None

    @classmethod
    def http(cls, status: int, *, headers: dict[str, str] | None = None, body: Any = None) -> "Fault":
        """Answer ``status`` with the API's error body (or ``body``)."""
        return cls("status", status=status, headers=tuple((headers or {}).items()), body=body)

    @classmethod
    def rate_limit(
        cls,
        *,
        retry_after: float | str | None = None,
        retry_after_ms: float | None = None,
        retry_delay: float | None = None,
    ) -> "Fault":
        """A 429; ``retry_after`` -> ``retry-after`` header, ``retry_after_ms`` -> ``retry-after-ms``."""
        headers = {}
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        if retry_after_ms is not None:
            headers["retry-after-ms"] = str(retry_after_ms)
        return cls("status", status=429, headers=tuple(headers.items()), retry_delay=retry_delay)

    @classmethod
    def hang(cls, seconds: float = 5.0) -> "Fault":
        """Sleep ``seconds`` (past the client's timeout) and then answer normally."""
        return cls("hang", seconds=seconds)

    @classmethod
    def reset(cls) -> "Fault":
        """Close the connection with a TCP reset before answering."""
        return cls("reset")

    @classmethod
    def malformed(cls) -> "Fault":
        """Answer 200 with a truncated, unparseable JSON body."""
        return cls("malformed")

    @classmethod
    def wrong_count(cls) -> "Fault":
        """Answer 200 with one embedding fewer than the inputs."""
        return cls("wrong_count")

    @classmethod
    def wrong_width(cls) -> "Fault":
        """Answer 200 with every vector one coordinate short."""
        return cls("wrong_width")

    @classmethod
    def nan(cls) -> "Fault":
        """Answer 200 with a NaN in the first vector."""
        return cls("nan")

    @classmethod
    def ok(cls) -> "Fault":
        """Answer normally (a placeholder in a script)."""
        return cls("ok")


class FaultScript:
    """A thread-safe FIFO of faults; each request consumes at most one."""

    def __init__(self) -> None:
        self._queue: deque[Fault] = deque()
        self._lock = threading.Lock()

    def push(self, *faults: Fault, times: int = 1) -> None:
        """Append ``faults`` (the whole group ``times`` times)."""
        with self._lock:
            for _ in range(times):
                self._queue.extend(faults)

    def pop(self) -> Fault | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)


def mutate_vectors(vectors: list[np.ndarray], fault: Fault | None) -> list[np.ndarray]:
    """Apply a response-mutating fault (wrong count / width / NaN) to good vectors."""
    if fault is None or not vectors:
        return vectors
    if fault.kind == "wrong_count":
        return vectors[:-1]
    if fault.kind == "wrong_width":
        return [v[:-1] for v in vectors]
    if fault.kind == "nan":
        first = vectors[0].copy()
        first[0] = np.nan
        return [first, *vectors[1:]]
    return vectors


class RateLimiter:
    """Requests and tokens per minute over a sliding 60 s window; thread-safe.

    ``admit(tokens)`` returns None when the request may proceed (and charges it), else the seconds
    until it would fit, which the server sends as ``Retry-After``.
    """

    WINDOW = 60.0

    def __init__(self, rpm: int | None = None, tpm: int | None = None, clock: Callable[[], float] = time.monotonic):
        self.rpm, self.tpm, self._clock = rpm, tpm, clock
        self._events: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def admit(self, tokens: int) -> float | None:
        with self._lock:
            now = self._clock()
            while self._events and now - self._events[0][0] >= self.WINDOW:
                self._events.popleft()
            wait = self._wait(now, tokens)
            if wait is None:
                self._events.append((now, tokens))
            return wait

    def _wait(self, now: float, tokens: int) -> float | None:
        waits = []
        if self.rpm and len(self._events) >= self.rpm:
            waits.append(self._events[len(self._events) - self.rpm][0] + self.WINDOW - now)
        if self.tpm:
            used = sum(t for _, t in self._events)
            if used + tokens > self.tpm:
                # the earliest time enough old charges have left the window
                freed, wait = used + tokens - self.tpm, self.WINDOW
                for at, charged in self._events:
                    freed -= charged
                    if freed <= 0:
                        wait = at + self.WINDOW - now
                        break
                waits.append(wait)
        return max(waits, default=None) if waits else None
