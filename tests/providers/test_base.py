"""The shared machinery of base.py, driven by a scripted fake transport (no network, no sleeping).

A ``Scripted`` provider pops one action per request: "ok" answers with deterministic vectors; an
``HTTPFail`` plays an SDK's status error (with headers); any other exception is raised as-is. The
retry sleeps are recorded, not slept, so backoff and Retry-After can be asserted exactly.
"""

from __future__ import annotations

import asyncio
import email.utils
import threading
import time
from typing import Any

import numpy as np
import pytest

from mrl_retrievers.errors import (
    AuthenticationError,
    ConfigError,
    EmbeddingResponseError,
    InvalidInputError,
    ProviderConnectionError,
    ProviderError,
    ProviderRequestError,
    ProviderServerError,
    ProviderTimeoutError,
    RateLimitError,
)
from mrl_retrievers.providers.base import (
    RetryPolicy,
    error_for_status,
    parse_retry_after,
)
from mrl_retrievers.providers.fake import FakeProvider
from mrl_retrievers.providers.hosted import HostedProvider

POLICY = RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=4.0, max_retry_after=60.0, jitter=0.5)


class HTTPFail(Exception):
    """What an SDK raises for an HTTP error status."""

    def __init__(self, status: int, message: str = "boom", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class Scripted(HostedProvider):
    name = "scripted"

    def __init__(self, script: list[Any] | None = None, *, dim: int = 8, response_dim: int | None = None,
                 width: int | None = None, **kw: Any) -> None:
        kw.setdefault("retry", POLICY)
        kw.setdefault("seed", 7)
        kw.setdefault("max_concurrency", 1)
        super().__init__(model="m-1", dim=dim, api_key=kw.pop("api_key", "k-123456"),
                         response_dim=response_dim or dim, **kw)
        self.script = list(script or [])
        self.width = width or response_dim or dim
        self.requests: list[list[str]] = []
        self.sleeps: list[float] = []
        self._sleep = self.sleeps.append
        self._lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0

        async def asleep(delay: float) -> None:
            self.sleeps.append(delay)

        self._asleep = asleep
        self._fake = FakeProvider(dim=self.width)

    def _answer(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            self.requests.append(list(texts))
            action = self.script.pop(0) if self.script else "ok"
        if isinstance(action, BaseException):
            raise action
        if callable(action):
            return action(texts)
        return np.stack([self._fake.vector(t) for t in texts])

    def _embed_batch(self, texts, kind):
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(0.002)
            return self._answer(texts)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _aembed_batch(self, texts, kind):
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.002)
            return self._answer(texts)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _classify(self, exc: BaseException) -> ProviderError:
        if isinstance(exc, HTTPFail):
            return error_for_status(exc.status, str(exc), provider=self.name, model=self.model,
                                    retry_after=parse_retry_after(exc.headers))
        return super()._classify(exc)


def run_both(make, call):
    """Run ``call`` on the sync and the async path of two identically built providers."""
    sync_p, async_p = make(), make()
    results = []
    for provider, mode in ((sync_p, "sync"), (async_p, "async")):
        try:
            out = call(provider, mode)
            results.append(("ok", out))
        except ProviderError as exc:
            results.append(("err", exc))
    return (sync_p, results[0]), (async_p, results[1])


def embed(provider, mode, texts=("a", "b")):
    if mode == "sync":
        return provider.embed_documents(list(texts))
    return asyncio.run(provider.aembed_documents(list(texts)))


# --- Retry-After and backoff ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_retry_after_seconds_is_honoured(mode):
    p = Scripted([HTTPFail(429, "slow down", {"Retry-After": "7"})])
    out = embed(p, mode)
    assert out.shape == (2, 8)
    assert len(p.requests) == 2
    assert len(p.sleeps) == 1 and 7.0 <= p.sleeps[0] <= 7.0 * 1.05


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_retry_after_ms_wins_over_seconds(mode):
    p = Scripted([HTTPFail(503, "busy", {"retry-after-ms": "1500", "retry-after": "9"})])
    embed(p, mode)
    assert 1.5 <= p.sleeps[0] <= 1.5 * 1.05


def test_retry_after_http_date():
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= parse_retry_after({"RETRY-AFTER": when}) <= 31
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after(None) is None
    assert parse_retry_after({"Retry-After": "-3"}) == 0.0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_backoff_without_retry_after_is_exponential_with_jitter(mode):
    p = Scripted([HTTPFail(500), HTTPFail(502), HTTPFail(503)])
    embed(p, mode)
    assert len(p.requests) == 4
    for attempt, wait in enumerate(p.sleeps, start=1):
        full = min(POLICY.max_delay, POLICY.base_delay * 2 ** (attempt - 1))
        assert (1 - POLICY.jitter) * full <= wait <= full


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_attempts_are_bounded_and_the_error_is_typed(mode):
    p = Scripted([HTTPFail(429, "quota", {"retry-after": "1"})] * 10)
    with pytest.raises(RateLimitError) as info:
        embed(p, mode)
    err = info.value
    assert len(p.requests) == POLICY.max_attempts
    assert len(p.sleeps) == POLICY.max_attempts - 1
    assert (err.provider, err.model, err.status) == ("scripted", "m-1", 429)
    text = str(err)
    assert "scripted" in text and "model=m-1" in text and "status=429" in text
    assert f"gave up after {POLICY.max_attempts} attempts" in text
    assert text.count("status=429") == 1  # regression: the suffix was appended twice


def test_retry_after_above_the_cap_gives_up_at_once():
    p = Scripted([HTTPFail(429, "daily quota", {"retry-after": "3600"})])
    with pytest.raises(RateLimitError, match="asked to wait 3600s"):
        p.embed_documents(["a"])
    assert len(p.requests) == 1 and p.sleeps == []


@pytest.mark.parametrize(
    ("status", "cls", "retried"),
    [
        (401, AuthenticationError, False),
        (403, AuthenticationError, False),
        (400, ProviderRequestError, False),
        (404, ProviderRequestError, False),
        (408, ProviderTimeoutError, True),
        (429, RateLimitError, True),
        (500, ProviderServerError, True),
        (501, ProviderServerError, False),
        (503, ProviderServerError, True),
    ],
)
def test_status_mapping(status, cls, retried):
    p = Scripted([HTTPFail(status)] * 10)
    with pytest.raises(cls) as info:
        p.embed_documents(["a"])
    assert info.value.status == status
    assert len(p.requests) == (POLICY.max_attempts if retried else 1)


@pytest.mark.parametrize(
    ("exc", "cls", "retried"),
    [
        (TimeoutError("read timed out"), ProviderTimeoutError, True),
        (ConnectionResetError("reset by peer"), ProviderConnectionError, True),
        (ValueError("weird"), ProviderError, False),
    ],
)
def test_builtin_exceptions_are_classified(exc, cls, retried):
    p = Scripted([exc] * 10)
    with pytest.raises(cls) as info:
        p.embed_documents(["a"])
    assert type(info.value) is cls
    assert len(p.requests) == (POLICY.max_attempts if retried else 1)


def test_max_retries_zero_means_one_attempt():
    p = Scripted([HTTPFail(503)] * 3, max_retries=0)
    with pytest.raises(ProviderServerError):
        p.embed_documents(["a"])
    assert len(p.requests) == 1


def test_sync_and_async_behave_identically():
    script = [HTTPFail(500), HTTPFail(429, headers={"retry-after": "2"}), TimeoutError(), "ok"]
    texts = [f"text {i}" for i in range(11)]
    (s, (ks, vs)), (a, (ka, va)) = run_both(
        lambda: Scripted(list(script), batch_size=4),
        lambda p, mode: embed(p, mode, texts),
    )
    assert ks == ka == "ok"
    assert np.array_equal(vs, va)
    assert s.sleeps == a.sleeps  # same seeded jitter, same decisions
    assert s.requests == a.requests

    failing = [HTTPFail(400, "bad input")]
    (_, (ks, es)), (_, (ka, ea)) = run_both(lambda: Scripted(list(failing)), lambda p, m: embed(p, m))
    assert ks == ka == "err" and type(es) is type(ea) and str(es) == str(ea)


# --- response checks, truncation, batching, concurrency ----------------------------------------


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (lambda texts: np.ones((len(texts) + 1, 8)), "expected 2 vectors"),
        (lambda texts: np.ones((len(texts), 7)), "7 wide, expected 8"),
        (lambda texts: np.full((len(texts), 8), np.nan), "NaN"),
        (lambda texts: np.zeros((len(texts), 8)), "all zeros"),
        (lambda texts: [["x"] * 8] * len(texts), "not a numeric matrix"),
    ],
)
def test_bad_responses_raise_typed_errors(answer, match):
    p = Scripted([answer])
    with pytest.raises(EmbeddingResponseError, match=match) as info:
        p.embed_documents(["a", "b"])
    assert info.value.provider == "scripted" and info.value.model == "m-1"
    assert len(p.requests) == 1  # a bad answer is not retried


def test_unknown_response_width_accepts_any_width_at_least_dim():
    p = Scripted([lambda texts: np.ones((len(texts), 12)), lambda texts: np.ones((len(texts), 3))], dim=4)
    p.response_dim = None
    assert p.embed_documents(["a"]).shape == (1, 4)
    with pytest.raises(EmbeddingResponseError, match="expected >= 4"):
        p.embed_documents(["a"])


def test_wider_responses_are_truncated_and_renormalized():
    p = Scripted(dim=4, response_dim=16)
    raw = np.stack([p._fake.vector(t) for t in ["x", "y"]])
    out = p.embed_documents(["x", "y"])
    expected = raw[:, :4] / np.linalg.norm(raw[:, :4], axis=1, keepdims=True)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert np.allclose(out, expected, atol=1e-6)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)


def test_token_aware_batching_keeps_order_and_limits():
    p = Scripted(batch_size=5, max_batch_tokens=40)
    texts = ["word " * 3, "x" * 200, "y", "z " * 20, "w", "v", "u", "t", "s", "r", "q"]
    batches = p._split(texts)
    assert np.concatenate(batches).tolist() == list(range(len(texts)))
    for b in batches:
        assert len(b) <= 5
        cost = sum(p._estimate_tokens(texts[i]) for i in b)
        assert cost <= 40 or len(b) == 1  # an oversized text travels alone
    out = p.embed_documents(texts)
    assert [t for r in p.requests for t in r] == texts
    assert np.allclose(out, FakeProvider(dim=8).embed_documents(texts), atol=1e-6)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_concurrency_is_bounded_and_order_kept(mode):
    texts = [f"t{i}" for i in range(40)]
    p = Scripted(batch_size=3, max_concurrency=3)
    out = embed(p, mode, texts)
    assert 1 < p.peak <= 3
    assert np.allclose(out, FakeProvider(dim=8).embed_documents(texts), atol=1e-6)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_failing_batch_among_concurrent_ones_raises(mode):
    p = Scripted([HTTPFail(401)] + ["ok"] * 20, batch_size=2, max_concurrency=4)
    with pytest.raises(AuthenticationError):
        embed(p, mode, [f"t{i}" for i in range(20)])


def test_empty_input_makes_no_request():
    p = Scripted()
    assert p.embed_documents([]).shape == (0, 8)
    assert asyncio.run(p.aembed_documents([])).shape == (0, 8)
    assert p.requests == []


@pytest.mark.parametrize(
    ("texts", "match"),
    [("one string", "not one string"), (["ok", 3], r"texts\[1\] must be a string"),
     (["ok", "  "], r"texts\[1\] is empty"), (None, "sequence of strings")],
)
def test_bad_texts_are_rejected_before_any_request(texts, match):
    p = Scripted()
    with pytest.raises(InvalidInputError, match=match):
        p.embed_documents(texts)
    with pytest.raises(InvalidInputError):
        asyncio.run(p.aembed_documents(texts))
    assert p.requests == []


def test_query_must_be_a_string():
    with pytest.raises(InvalidInputError):
        Scripted().embed_query(["a"])


def test_key_is_scrubbed_from_errors_that_echo_it():
    key = "sk-live-echo-9f8e7d6c"
    p = Scripted([HTTPFail(401, f"Incorrect API key provided: {key}")], api_key=key)
    with pytest.raises(AuthenticationError) as info:
        p.embed_documents(["a"])
    assert key not in str(info.value) and key not in repr(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [dict(max_attempts=0), dict(base_delay=-1), dict(jitter=2.0), dict(max_attempts=True)],
)
def test_retry_policy_validates(kwargs):
    with pytest.raises(ConfigError):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(timeout=0), dict(max_retries=-1), dict(max_concurrency=0),
                                    dict(batch_size=0), dict(max_batch_tokens=0)])
def test_hosted_options_validate(kwargs):
    with pytest.raises(ConfigError):
        Scripted(**kwargs)
