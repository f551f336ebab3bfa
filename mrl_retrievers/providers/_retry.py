"""Retry machinery shared by every hosted provider: one policy, one status map, one Retry-After parser,
and the pause gate that makes all concurrent requests of a provider respect one 429.

Everything here is pure (no I/O, no sleeping): ``HostedProvider`` in ``hosted.py`` runs the loop, so
the sync and async paths make the same decisions. Adapters import these names from ``base``.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..checks import positive_int
from ..errors import (
    AuthenticationError,
    ConfigError,
    ProviderError,
    ProviderRequestError,
    ProviderServerError,
    ProviderTimeoutError,
    RateLimitError,
)


def parse_retry_after(headers: Mapping[str, str] | Any | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date), else None.

    Works with any mapping of headers (httpx, requests, aiohttp or a plain dict, any key case).
    """
    if not headers:
        return None
    lowered = {str(k).lower(): str(v) for k, v in dict(headers).items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def make_error(
    cls: type[ProviderError],
    message: str,
    *,
    provider: str,
    model: str,
    status: int | None = None,
    retryable: bool = False,
    retry_after: float | None = None,
) -> ProviderError:
    """A typed provider error with the retry attributes the retry loop reads."""
    err = cls(message, provider=provider, model=model, status=status)
    err.retryable = retryable  # type: ignore[attr-defined]
    err.retry_after = retry_after  # type: ignore[attr-defined]
    return err


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    model: str,
    retry_after: float | None = None,
) -> ProviderError:
    """Map an HTTP status to our typed error, with ``retryable`` set the same way for every SDK."""
    if status in (401, 403):
        cls, retryable = AuthenticationError, False
        message = f"{message} (check the API key and its permissions)"
    elif status == 429:
        cls, retryable = RateLimitError, True
    elif status == 408:
        cls, retryable = ProviderTimeoutError, True
    elif status in (409, 425):
        cls, retryable = ProviderError, True
    elif status >= 500:
        cls, retryable = ProviderServerError, status != 501
    elif 400 <= status < 500:
        cls, retryable = ProviderRequestError, False
        if status == 404:
            message = f"{message} (check the model name and base_url)"
    else:
        cls, retryable = ProviderError, False
    return make_error(cls, message, provider=provider, model=model, status=status,
                      retryable=retryable, retry_after=retry_after)


@dataclass(frozen=True)
class RetryPolicy:
    """How failed requests are retried (the same for every provider).

    Attributes:
        max_attempts: total attempts per batch, first one included (1 = no retries).
        base_delay: backoff before the 2nd attempt, in seconds; doubles each attempt.
        max_delay: cap of the computed backoff, in seconds.
        max_retry_after: a server's Retry-After above this many seconds is not waited for: the
            error is raised at once (a daily quota will not reset in a retry loop).
        jitter: the backoff is drawn uniformly from ``[(1 - jitter) * d, d]``; a Retry-After
            wait is stretched by up to ``jitter * 10%`` (at most ``jitter`` seconds) so clients do
            not stampede together.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        positive_int("max_attempts", self.max_attempts, error=ConfigError)
        for name in ("base_delay", "max_delay", "max_retry_after"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 seconds, got {getattr(self, name)!r}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ConfigError(f"jitter must be within [0, 1], got {self.jitter!r}")

    def delay(self, attempt: int, error: BaseException, rng: random.Random) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up.

        Pure given ``rng``: the sync and async paths share it, so they behave identically.
        """
        if attempt >= self.max_attempts or not getattr(error, "retryable", False):
            return None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            # Stretched a little so independent clients do not wake together, but by at most a
            # second: after a 60 s window turn, 5% more would be 3 s of the limit left unused.
            return retry_after + min(1.0, 0.1 * retry_after) * self.jitter * rng.random()
        backoff = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return backoff * (1.0 - self.jitter * rng.random())


class PauseGate:
    """One per provider: after a 429, no request of that provider is sent until the wait is over.

    Without it each of the ``max_concurrency`` requests in flight learns about the rate limit from
    its own 429, and requests started meanwhile hit the closed window again (429 churn: wasted
    round trips, and a window that never fills evenly). With it, the first 429 closes the gate for
    its wait (the server's Retry-After, or the backoff); every request checks the gate before it is
    sent, so at most the requests already in flight see a 429.

    Pure bookkeeping: callers sleep (``HostedProvider`` with its injectable sleep functions).
    """

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._until = 0.0
        self._lock = threading.Lock()
        self.closed = 0  # how many 429s closed (or extended) the gate
        self.pauses: deque[float] = deque(maxlen=256)  # the latest pauses it imposed (diagnostics)

    def close_for(self, seconds: float) -> float:
        """Hold every request for ``seconds`` from now (never shortens a longer pause); returns the
        moment the gate opens (clock units), which the caller passes to ``pause`` after its own wait."""
        with self._lock:
            self._until = max(self._until, self._clock() + seconds)
            self.closed += 1
            return self._until

    def pause(self, waited_until: float = 0.0) -> float:
        """Seconds to wait before sending. ``waited_until``: the caller already slept until then
        (its own Retry-After), so only a later extension by another request counts."""
        with self._lock:
            until = self._until
            if until <= waited_until:
                return 0.0
            pause = max(0.0, until - max(self._clock(), waited_until))
            if pause > 0:
                self.pauses.append(pause)
            return pause

    def reopen(self, waited_until: float) -> None:
        """A request that slept until ``waited_until`` went through: the window has room again, so
        the pause it set is over (a longer one set since by another 429 stays)."""
        with self._lock:
            if self._until == waited_until:
                self._until = min(self._until, self._clock())


@dataclass
class Charge:
    """One request in the client-side window: sent at ``sent``, ``tokens`` estimated, ``done`` when
    its answer arrived (None while in flight)."""

    sent: float
    tokens: int
    done: float | None = field(default=None)


class RateBudget:
    """What the provider admits per minute, learned from its 429s, and this client's use of it.

    Every request reserves a ``Charge`` before it is sent; an admitted one stays in the window until
    60 s after its answer arrived (never before the server's own window frees it), a refused one
    (429) is dropped. At each 429 the limits become what the window held when the server refused:
    that many requests and that many estimated tokens a minute (the same token estimator for both
    sides, so its bias cancels). From then on a request waits for room in the window instead of
    being sent into a 429: after the first window turn there is no 429 churn. A 429 that arrives with
    nothing admitted in the window (a quota), without a Retry-After or with one under a tenth of the
    window (a burst limit, a transient) teaches nothing.
    """

    WINDOW = 60.0

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._charges: deque[Charge] = deque()
        self.max_requests: int | None = None  # learned; None until the first informative 429
        self.max_tokens: int | None = None

    def reserve(self, tokens: int) -> tuple[Charge | None, float]:
        """``(charge, 0)`` when the request may go now, else ``(None, seconds to wait)``."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            if self.max_requests is not None and self._charges:
                used_requests = len(self._charges)
                used_tokens = sum(c.tokens for c in self._charges)
                if used_requests + 1 > self.max_requests or used_tokens + tokens > (self.max_tokens or 0):
                    return None, self._next_room(now)
            charge = Charge(now, tokens)
            self._charges.append(charge)
            return charge, 0.0

    def force(self, tokens: int) -> Charge:
        """Reserve without waiting (after too many waits: the server still has the last word)."""
        with self._lock:
            charge = Charge(self._clock(), tokens)
            self._charges.append(charge)
            return charge

    def settle(self, charge: Charge, *, admitted: bool, refused_by_limit: bool = False,
               retry_after: float | None = None) -> None:
        """The answer arrived: keep an admitted charge for a window from now, drop a refused one,
        and on a 429 whose Retry-After is at least a tenth of the window (the window is full; a
        shorter one is a burst limit or a transient) learn the limits from what the window holds."""
        with self._lock:
            now = self._clock()
            if admitted:
                charge.done = now
                return
            try:
                self._charges.remove(charge)
            except ValueError:
                pass
            if refused_by_limit and retry_after is not None and retry_after >= 0.1 * self.WINDOW:
                self._expire(now)
                if self._charges:  # later 429s of the same turn correct the first (its peers were refused too)
                    self.max_requests = len(self._charges)
                    self.max_tokens = sum(c.tokens for c in self._charges)

    def _expire(self, now: float) -> None:
        self._charges = deque(c for c in self._charges if c.done is None or now - c.done < self.WINDOW)

    def _next_room(self, now: float) -> float:
        done = [c.done for c in self._charges if c.done is not None]
        # only requests in flight: their answers come within a request's time; look again soon
        return max(0.01, min(done) + self.WINDOW - now) if done else 0.05


__all__ = ["Charge", "PauseGate", "RateBudget", "RetryPolicy", "error_for_status", "make_error", "parse_retry_after"]
