"""Retry machinery shared by every hosted provider: one policy, one status map, one Retry-After parser.

Everything here is pure (no I/O, no sleeping): ``HostedProvider`` in ``base.py`` runs the loop, so
the sync and async paths make the same decisions. Adapters import these names from ``base``.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Any, Mapping

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
            wait is stretched by up to ``jitter * 10%`` so clients do not stampede together.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be an integer >= 1, got {self.max_attempts!r}")
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
            return retry_after * (1.0 + 0.1 * self.jitter * rng.random())
        backoff = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return backoff * (1.0 - self.jitter * rng.random())


__all__ = ["RetryPolicy", "error_for_status", "make_error", "parse_retry_after"]
