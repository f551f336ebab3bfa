"""Rate limits: the pause gate and the learned per-minute budget (issue 16).

When a provider's limit binds, every concurrent request of the provider respects one 429 (the
gate), and after the first window turn requests wait for room instead of being sent into a 429
(the budget learned from what the server admitted). Checked on pure bookkeeping with a fake clock,
and end to end against the loopback OpenAI emulator under its real sliding-window limiter (a 1 s
window instead of 60 s, the same on both sides, so the test takes seconds).
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from mrl_retrievers.providers._retry import PauseGate, RateBudget
from mrl_retrievers.providers.openai import OpenAIProvider
from tests.providers.servers.fixtures import KEY
from mrl_retrievers.emulators.openai_server import OpenAIServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the gate -----------------------------------------------------------------------------------------


def test_gate_holds_everyone_until_the_longest_wait():
    clock = Clock()
    gate = PauseGate(clock)
    assert gate.pause() == 0.0
    until = gate.close_for(5.0)
    assert gate.pause() == 5.0
    gate.close_for(2.0)  # a shorter wait never shortens the pause
    assert gate.pause() == 5.0 and gate.closed == 2
    clock.now += 3.0
    assert gate.pause() == 2.0
    # the request that slept its own wait goes at once; a longer pause set since still holds it
    assert gate.pause(waited_until=until) == 0.0
    later = gate.close_for(10.0)
    assert gate.pause(waited_until=until) == later - until


def test_gate_reopens_when_the_request_that_waited_goes_through():
    clock = Clock()
    gate = PauseGate(clock)
    until = gate.close_for(5.0)
    gate.reopen(until)
    assert gate.pause() == 0.0
    longer = gate.close_for(9.0)
    gate.reopen(until)  # someone else's longer pause is not cancelled
    assert gate.pause() == pytest.approx(longer - clock.now)


# --- the learned budget ---------------------------------------------------------------------------------


def test_budget_learns_the_window_at_a_429_and_waits_for_room():
    clock = Clock()
    budget = RateBudget(clock)
    budget.WINDOW = 60.0
    charges = []
    for _ in range(3):  # three admitted, 100 tokens each
        charge, wait = budget.reserve(100)
        assert wait == 0.0
        budget.settle(charge, admitted=True)
        charges.append(charge)
        clock.now += 1.0
    refused, _ = budget.reserve(100)
    budget.settle(refused, admitted=False, refused_by_limit=True, retry_after=57.0)
    assert (budget.max_requests, budget.max_tokens) == (3, 300)
    # the window is full until the first admitted answer is 60 s old
    charge, wait = budget.reserve(100)
    assert charge is None and wait == pytest.approx(charges[0].done + 60.0 - clock.now)
    clock.now = charges[0].done + 60.0
    charge, wait = budget.reserve(100)
    assert charge is not None and wait == 0.0


def test_a_429_with_nothing_admitted_teaches_nothing():
    budget = RateBudget(Clock())
    charge, _ = budget.reserve(10)
    budget.settle(charge, admitted=False, refused_by_limit=True, retry_after=30.0)
    assert budget.max_requests is None
    assert budget.reserve(10)[0] is not None  # no limit learned: never waits


@pytest.mark.parametrize("retry_after", [None, 0.5, 5.0])
def test_a_short_or_missing_retry_after_teaches_nothing(retry_after):
    # a burst limit or a transient 429 (Retry-After under a tenth of the window) says nothing
    # about the per-minute window: learning from it would throttle the client for good
    budget = RateBudget(Clock())
    admitted, _ = budget.reserve(10)
    budget.settle(admitted, admitted=True)
    refused, _ = budget.reserve(10)
    budget.settle(refused, admitted=False, refused_by_limit=True, retry_after=retry_after)
    assert budget.max_requests is None


# --- end to end: the emulator's real limiter --------------------------------------------------------------


class Recording(OpenAIServer):
    """The emulator, recording when each answer was given and its status."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.answers: list[tuple[float, int]] = []
        self._answers_lock = threading.Lock()

    def handle(self, req):  # noqa: ANN001
        reply = super().handle(req)
        with self._answers_lock:
            self.answers.append((time.monotonic(), reply.status))
        return reply


WINDOW = 1.0  # seconds: the emulator's and the client's window (60 s in production)
RPM = 4  # requests per window
TEXTS = [f"passage {i}" for i in range(24)]  # 24 one-text requests: six window turns at best


@pytest.fixture
def limited(monkeypatch):
    monkeypatch.setattr(RateBudget, "WINDOW", WINDOW)
    server = Recording(api_key=KEY, rpm=RPM, latency_ms=20)
    server.limiter.WINDOW = WINDOW
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _provider(server):
    # 5 attempts (the default policy): enough for a request that meets one 429, not for churn
    return OpenAIProvider(model="text-embedding-3-small", dim=32, api_key=KEY, base_url=server.base_url,
                          batch_size=1, max_concurrency=4)


def _refusals(server) -> int:
    return sum(1 for _, status in server.answers if status == 429)


@pytest.mark.slow
def test_no_429_churn_on_the_sync_path(limited):
    provider = _provider(limited)
    out = provider.embed_documents(TEXTS)
    assert out.shape == (len(TEXTS), 32)
    ok = sum(1 for _, status in limited.answers if status == 200)
    assert ok == len(TEXTS)
    # Only the requests in flight when the limit first binds are refused; later window turns are
    # waited for. (Without the gate and the budget: ~20 refusals for these 24 texts.)
    assert _refusals(limited) <= provider.max_concurrency


@pytest.mark.slow
def test_no_429_churn_with_two_concurrent_async_calls(limited):
    # Two calls on one provider (as a pipelined ingestion makes): 8 requests in flight. Without a
    # shared gate and budget, some request met a 429 at every window turn and gave up after 5.
    provider = _provider(limited)

    async def both():
        return await asyncio.gather(provider.aembed_documents(TEXTS[0::2]), provider.aembed_documents(TEXTS[1::2]))

    first, second = asyncio.run(both())
    assert first.shape == second.shape == (len(TEXTS) // 2, 32)
    assert _refusals(limited) <= 2 * provider.max_concurrency
    # after the first refusal's wait, every request fitted the window
    first_429 = min(t for t, status in limited.answers if status == 429)
    late = [status for t, status in limited.answers if t > first_429 + 2 * WINDOW]
    assert late and all(status == 200 for status in late)
