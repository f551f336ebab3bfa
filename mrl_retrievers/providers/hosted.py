"""``HostedProvider``: the machinery every API-backed provider shares (see ``base.py`` for the contract).

Token-aware batching, bounded concurrency (threads on the sync path, tasks on the async path),
the one retry loop (``RetryPolicy`` from ``_retry.py``, honouring Retry-After the same way for every
SDK), error classification, and keeping the key out of every message. Import it from ``base``.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import logging
import random
import threading
import time
import weakref
from typing import Any, Callable, ClassVar

import numpy as np

from ..checks import positive_int
from ..config import Secret
from ..errors import AuthenticationError, ConfigError, ProviderConnectionError, ProviderError, ProviderTimeoutError, RateLimitError
from ._retry import Charge, PauseGate, RateBudget, RetryPolicy, make_error
from .base import Kind, Provider, resolve_api_key
from .models import DEFAULT_MODELS, ModelInfo, Width, lookup, resolve_width
from .multimodal import apply_capabilities

logger = logging.getLogger("mrl_retrievers.providers")


def checked_batch_size(requested: int | None, limit: int | None, default: int, api: str, *,
                       preferred: int | None = None) -> int:
    """Texts per request: the caller's choice, else ``preferred`` (when the API has one) capped at
    the model's limit, else the model's limit, else ``default``; a choice above the API's limit is
    refused at construction rather than answered with a 400 later."""
    if requested is not None:
        size = requested
    elif limit:
        size = min(preferred or limit, limit)
    else:
        size = default
    if limit is not None and size > limit:
        raise ConfigError(f"batch_size {size} is above the {api} limit of {limit} texts a request")
    return size


class _KeyScrubber:
    """Masks live providers' keys in every log record made in this process.

    Our messages are scrubbed where they are made; third-party ones are not: voyageai logs API
    error bodies at INFO, and httpcore logs whole response headers at DEBUG, where a proxy may echo
    the key. A logger's filter does not see records of its child loggers (``httpcore2.http11``), so
    the scrubber wraps the process's log-record factory instead: every record's message, arguments
    and exception text are masked before any handler sees them. It is installed when the first
    hosted provider is built; a provider's key is forgotten when the provider is garbage-collected,
    and records cost one substring test per live key.
    """

    MASK = "**********"

    def __init__(self) -> None:
        self._keys: dict[int, str] = {}
        self._installed = False
        self._lock = threading.Lock()

    def watch(self, owner: object, key: Secret) -> None:
        value = key.get_secret_value()
        if len(value) < 4:
            return
        with self._lock:
            self._keys[id(owner)] = value
            if not self._installed:
                make = logging.getLogRecordFactory()

                def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                    return self.scrub(make(*args, **kwargs))

                logging.setLogRecordFactory(factory)
                self._installed = True
        weakref.finalize(owner, self._keys.pop, id(owner), None)

    def scrub(self, record: logging.LogRecord) -> logging.LogRecord:
        keys = list(self._keys.values())
        if not keys:
            return record
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is the handler's to report
            return record
        if any(k in text for k in keys):
            record.msg, record.args = self._mask(text, keys), ()
        if record.exc_info and record.exc_info[1] is not None:
            formatted = logging.Formatter().formatException(record.exc_info)
            if any(k in formatted for k in keys):
                record.exc_text = self._mask(formatted, keys)
                record.exc_info = None  # handlers format exc_text; the exception object keeps the key
        return record

    def _mask(self, text: str, keys: list[str]) -> str:
        for k in keys:
            text = text.replace(k, self.MASK)
        return text


_SDK_LOG_SCRUBBER = _KeyScrubber()
_GATE_LOCK = threading.Lock()


class HostedProvider(Provider):
    """Shared machinery of API-backed providers: token-aware batching, concurrency, retries.

    Subclasses implement ``_embed_batch`` and ``_aembed_batch`` (one SDK call each, built from the
    same pure request/response functions) and ``_classify`` for their SDK's exceptions.
    """

    reject_empty: ClassVar[bool] = True
    #: the API's name in messages ("batch_size 2000 is above the OpenAI limit ...")
    api_label: ClassVar[str] = ""
    #: the width sent in requests (None: the API's native width, truncated here); set by _setup_model
    request_dim: int | None = None
    #: env vars read, in order, when no api_key is given
    api_key_env: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        model: str,
        dim: int,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        response_dim: int | None = None,
        batch_size: int = 128,
        max_batch_tokens: int | None = None,
        max_concurrency: int = 4,
        timeout: float = 60.0,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        seed: int | None = None,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        keyless: bool = False,
    ) -> None:
        """Args:
            api_key: the key, else read from ``api_key_env``; kept as a ``Secret``. Without one,
                construction fails (``AuthenticationError``) unless ``keyless``.
            keyless: the SDK authenticates another way (Vertex AI credentials, an Azure AD token).
            base_url: endpoint in the form the SDK expects (None = the SDK's default).
            max_batch_tokens: most estimated tokens per request (None = no token cap).
            timeout: seconds per request (subclasses convert to their SDK's unit).
            max_retries: retries after the first attempt (overrides ``retry.max_attempts``).
            retry: the backoff policy; default ``RetryPolicy()``.
            seed: seeds the backoff jitter (tests).
        """
        super().__init__(model=model, dim=dim, response_dim=response_dim, batch_size=batch_size,
                         max_concurrency=max_concurrency, query_prompt=query_prompt,
                         document_prompt=document_prompt)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if max_batch_tokens is not None:
            max_batch_tokens = positive_int("max_batch_tokens", max_batch_tokens, error=ConfigError)
        policy = retry or RetryPolicy()
        if max_retries is not None:
            max_retries = positive_int("max_retries", max_retries, minimum=0, error=ConfigError)
            policy = RetryPolicy(max_attempts=max_retries + 1, base_delay=policy.base_delay,
                                 max_delay=policy.max_delay, max_retry_after=policy.max_retry_after,
                                 jitter=policy.jitter)
        self._api_key = resolve_api_key(api_key, self.api_key_env)
        if self._api_key is None and not keyless:
            # Checked here, not at the first request: a missing key must fail before a store, a
            # cache or a pipeline exists (and with one exception, not a chain of two).
            where = " or ".join(self.api_key_env) or "the provider's key variable"
            raise make_error(AuthenticationError, f"no API key for the {self.name} provider: set {where}, or pass "
                             "api_key= (in a config: [embedder] api_key, or MRL_EMBEDDER_API_KEY)",
                             provider=self.name, model=model)
        if self._api_key:
            _SDK_LOG_SCRUBBER.watch(self, self._api_key)
        self.base_url = base_url
        self.max_batch_tokens = max_batch_tokens
        self.timeout = float(timeout)
        self.retry = policy
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        # Injected by tests to observe waits without sleeping.
        self._sleep: Callable[[float], None] = time.sleep
        self._asleep: Callable[[float], Any] = asyncio.sleep

    def _setup_model(self, model: str | None, dim: int | None, options: dict[str, Any], *, native_dim: int | None,
                     native_shortening: bool | None, batch_limit: int | None, batch_default: int,
                     batch_preferred: int | None = None, table_beside_native_dim: bool = False,
                     token_cap: bool = True) -> tuple[str, Width, ModelInfo | None]:
        """The shared start of every API's constructor (before ``HostedProvider.__init__``).

        Names the model (``DEFAULT_MODELS`` when None), resolves the width (``request_dim`` is set
        here), looks the model up (not when ``native_dim`` overrides the table, unless
        ``table_beside_native_dim``), checks ``options["batch_size"]`` against the model's limit
        (else ``batch_limit``; ``checked_batch_size``), defaults ``options["max_batch_tokens"]`` to
        the model's (``token_cap``), and copies the model's capabilities (images) onto ``self``.
        Returns the model name, its width and its table entry.
        """
        model = model or DEFAULT_MODELS[self.name]
        width = resolve_width(self.name, model, dim, native_dim=native_dim, native_shortening=native_shortening)
        info = lookup(self.name, model) if native_dim is None or table_beside_native_dim else None
        options["batch_size"] = checked_batch_size(options.pop("batch_size", None), info.max_batch if info else batch_limit,
                                                   batch_default, self.api_label, preferred=batch_preferred)
        if token_cap:
            options.setdefault("max_batch_tokens", info.max_batch_tokens if info else None)
        self.request_dim = width.request_dim
        apply_capabilities(self, info)
        return model, width, info

    @abc.abstractmethod
    async def _aembed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        """One async SDK call: raw vectors for ``texts`` in order."""

    def _classify(self, exc: BaseException) -> ProviderError:
        """Map an exception to a typed ``ProviderError`` with ``retryable`` / ``retry_after``.

        Subclasses map their SDK's exceptions and call ``super()._classify(exc)`` for the rest.
        """
        kw = {"provider": self.name, "model": self.model}
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError, concurrent.futures.TimeoutError)):
            return make_error(ProviderTimeoutError, f"no answer within {self.timeout:g}s", retryable=True, **kw)
        if isinstance(exc, (ConnectionError, OSError)):
            return make_error(ProviderConnectionError, f"cannot reach the provider: {exc}", retryable=True, **kw)
        return make_error(ProviderError, f"unexpected {type(exc).__name__}: {exc}", **kw)

    def _estimate_tokens(self, text: str) -> int:
        """A cautious token estimate: UTF-8 bytes / 3 (English runs ~4 bytes a token, CJK ~3)."""
        return len(text.encode("utf-8", "surrogatepass")) // 3 + 1

    def _split(self, texts: list[str]) -> list[np.ndarray]:
        if self.max_batch_tokens is None:
            return super()._split(texts)
        batches: list[np.ndarray] = []
        start, tokens = 0, 0
        for i, text in enumerate(texts):
            cost = self._estimate_tokens(text)
            # A text over the cap alone still goes alone; the API decides whether it fits.
            if i > start and (i - start >= self.batch_size or tokens + cost > self.max_batch_tokens):
                batches.append(np.arange(start, i))
                start, tokens = i, 0
            tokens += cost
        if start < len(texts):
            batches.append(np.arange(start, len(texts)))
        return batches

    @property
    def pause_gate(self) -> PauseGate:
        """The gate every request of this provider passes before it is sent (see ``PauseGate``)."""
        return self._shared("_pause_gate", PauseGate)

    @property
    def rate_budget(self) -> RateBudget:
        """The per-minute budget learned from this provider's 429s (see ``RateBudget``)."""
        return self._shared("_rate_budget", RateBudget)

    def _shared(self, name: str, factory: Callable[[], Any]) -> Any:
        # Created on first use (not in __init__): one per provider, shared by all its requests.
        value = self.__dict__.get(name)
        if value is None:
            with _GATE_LOCK:
                value = self.__dict__.setdefault(name, factory())
        return value

    # A request waits for room in the learned window at most this many times, then goes anyway
    # (the server's 429 and the pause gate still hold it back).
    _MAX_BUDGET_WAITS = 100

    def _run_batch(self, texts: list[str], kind: Kind) -> Any:
        gate, budget, tokens = self.pause_gate, self.rate_budget, self._batch_tokens(texts)
        attempt, waited_until = 0, 0.0
        while True:
            attempt += 1
            pause = gate.pause(waited_until)
            if pause > 0:
                self._sleep(pause)
            for _ in range(self._MAX_BUDGET_WAITS):
                charge, wait = budget.reserve(tokens)
                if charge is not None:
                    break
                self._sleep(wait)
            else:
                charge = budget.force(tokens)
            try:
                out = self._embed_batch(texts, kind)
            except Exception as exc:  # noqa: BLE001 - every failure is classified, none swallowed
                err = self._typed(exc)
                self._settle(budget, charge, err)
                wait = self._next_wait(attempt, err)
                if wait is None:
                    final, cause = self._final(err, attempt), self._cause(exc)
                else:
                    waited_until = max(waited_until, self._hold(gate, err, wait))
            else:
                budget.settle(charge, admitted=True)
                if waited_until:
                    gate.reopen(waited_until)
                return out
            if wait is None:
                # Raised outside the except block, so Python does not keep the SDK exception as
                # __context__ (its text may echo the key; _safe_cause decided whether to chain it).
                raise final from cause
            self._sleep(wait)

    async def _arun_batch(self, texts: list[str], kind: Kind) -> Any:
        gate, budget, tokens = self.pause_gate, self.rate_budget, self._batch_tokens(texts)
        attempt, waited_until = 0, 0.0
        while True:
            attempt += 1
            pause = gate.pause(waited_until)
            if pause > 0:
                await self._asleep(pause)
            for _ in range(self._MAX_BUDGET_WAITS):
                charge, wait = budget.reserve(tokens)
                if charge is not None:
                    break
                await self._asleep(wait)
            else:
                charge = budget.force(tokens)
            try:
                out = await self._aembed_batch(texts, kind)
            except Exception as exc:  # noqa: BLE001 - every failure is classified, none swallowed
                err = self._typed(exc)
                self._settle(budget, charge, err)
                wait = self._next_wait(attempt, err)
                if wait is None:
                    final, cause = self._final(err, attempt), self._cause(exc)
                else:
                    waited_until = max(waited_until, self._hold(gate, err, wait))
            else:
                budget.settle(charge, admitted=True)
                if waited_until:
                    gate.reopen(waited_until)
                return out
            if wait is None:
                raise final from cause  # outside the except block: see _run_batch
            await self._asleep(wait)

    def _batch_tokens(self, texts: list[str]) -> int:
        return sum(self._estimate_tokens(t) for t in texts)

    @staticmethod
    def _settle(budget: RateBudget, charge: Charge, err: ProviderError) -> None:
        # A 429 was not admitted (and teaches the limit); other failures are not counted either:
        # the window (and what a 429 teaches) holds only what the server answered.
        budget.settle(charge, admitted=False, refused_by_limit=isinstance(err, RateLimitError),
                      retry_after=getattr(err, "retry_after", None))

    @staticmethod
    def _hold(gate: PauseGate, err: ProviderError, wait: float) -> float:
        """A 429 pauses every request of the provider for ``wait``; returns until when this one
        sleeps itself (0: other errors pause only the request that failed)."""
        return gate.close_for(wait) if isinstance(err, RateLimitError) else 0.0

    def _typed(self, exc: BaseException) -> ProviderError:
        err = exc if isinstance(exc, ProviderError) else self._classify(exc)
        for attr, default in (("retryable", False), ("retry_after", None)):
            if not hasattr(err, attr):
                setattr(err, attr, default)
        return err

    def _next_wait(self, attempt: int, err: ProviderError) -> float | None:
        with self._rng_lock:
            wait = self.retry.delay(attempt, err, self._rng)
        if wait is not None:
            logger.debug("%s: attempt %d/%d failed (%s); retrying in %.2fs", self._label(), attempt,
                         self.retry.max_attempts, self._scrub(str(err)), wait)
        return wait

    def _final(self, err: ProviderError, attempts: int) -> ProviderError:
        """The error to raise: same type, key scrubbed, saying how many attempts were made."""
        # The bare message: the constructor below appends the [provider, model, status] suffix again.
        message = self._scrub(getattr(err, "message", None) or (str(err.args[0]) if err.args else str(err)))
        if attempts > 1:
            message = f"{message} (gave up after {attempts} attempts)"
        retry_after = getattr(err, "retry_after", None)
        if retry_after is not None and retry_after > self.retry.max_retry_after:
            message = f"{message} (the provider asked to wait {retry_after:g}s, above max_retry_after)"
        try:
            final = type(err)(message, provider=err.provider or self.name, model=err.model or self.model,
                              status=err.status)
        except TypeError:  # a subclass with another signature: keep it, scrubbed
            err.args = (message,)
            return err
        final.retryable = getattr(err, "retryable", False)  # type: ignore[attr-defined]
        final.retry_after = retry_after  # type: ignore[attr-defined]
        return final

    def _cause(self, exc: BaseException) -> BaseException | None:
        """What the raised error is chained to: the SDK's exception, never our own error again.

        ``_final`` re-creates our error with the attempt count; chaining it to the error it copies
        would print the same message twice. A ``ProviderError`` keeps its own cause, if any.
        """
        if isinstance(exc, ProviderError):
            return self._safe_cause(exc.__cause__) if exc.__cause__ is not None else None
        return self._safe_cause(exc)

    def _safe_cause(self, exc: BaseException) -> BaseException | None:
        """The SDK exception to chain, unless its text (or its own cause's) echoes the key."""
        key = self._api_key.get_secret_value() if self._api_key else ""
        chain, seen = exc, 0
        while chain is not None and seen < 5 and key:
            if key in str(chain) or key in repr(getattr(chain, "args", ())):
                return None
            chain, seen = chain.__cause__ or chain.__context__, seen + 1
        return exc

    def _scrub(self, text: str) -> str:
        key = self._api_key.get_secret_value() if self._api_key else ""
        return text.replace(key, "**********") if key and len(key) >= 4 else text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, dim={self.dim}, timeout={self.timeout:g})"

    __str__ = __repr__


__all__ = ["HostedProvider"]
