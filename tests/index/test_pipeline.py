"""MRLIndex.add_texts / aadd_texts pipelining: step N+1 is embedded while step N is written.

What must keep holding (and what each test would catch if it broke):

* steps reach the store in input order, one transaction each, with their own texts' vectors, even
  when the provider's batches finish out of order;
* the next step's embedding really overlaps the previous step's write (no timing assert: the write
  waits for a signal the next step's embedding gives);
* an error stops the ingestion with the typed error, after the step being written has committed:
  every step before the failing one is stored whole, nothing of a later one;
* a re-run after a failure mid-way pays (with the embedding cache) only for the texts not cached;
* 429s (scripted, and from the emulator's own rate limiter) are retried, honouring Retry-After,
  and every text ends up stored with the vector the API gives.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from mrl_retrievers import MRLIndex
from mrl_retrievers.cache import EmbeddingCache
from mrl_retrievers.errors import InvalidInputError, ProviderError, StoreIOError
from mrl_retrievers.providers.cached import CachedProvider
from mrl_retrievers.providers.fake import FakeProvider
from mrl_retrievers.emulators import Fault, OpenAIServer, RateLimiter
from tests.providers.servers.fixtures import KEY, record_waits

TEXTS = [f"passage {i} about topic {i % 11} and the coarse to fine index" for i in range(200)]
IDS = [f"doc-{i}" for i in range(200)]
STEP = 40


def _mode_add(index, mode, texts=TEXTS, ids=IDS, **kw):
    if mode == "sync":
        return index.add_texts(texts, ids=ids, **kw)
    return asyncio.run(index.aadd_texts(texts, ids=ids, **kw))


def _record_adds(index, before=None):
    """Wrap ``index.store.add``: record the ids of each call; ``before(call_number, ids)`` runs first."""
    calls: list[list[str]] = []
    real_add = index.store.add

    def add(ids, vectors, texts=None, metadatas=None):
        calls.append(list(ids))
        if before is not None:
            before(len(calls), list(ids))
        return real_add(ids, vectors, texts=texts, metadatas=metadatas)

    index.store.add = add
    return calls


def _expected(provider: FakeProvider, texts):
    raw = np.stack([provider.vector(t) for t in texts])
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_steps_are_written_in_order_with_their_own_vectors(tmp_path, mode):
    def jitter(texts, kind, call_number):  # batches finish out of order
        time.sleep(0.004 * (3 - call_number % 4))

    provider = FakeProvider(dim=48, batch_size=7, max_concurrency=4, fail=jitter)
    with MRLIndex(provider, tmp_path / "s", exact_below=0) as index:
        calls = _record_adds(index)
        done = []
        assert _mode_add(index, mode, step=STEP, progress=lambda d, n: done.append((d, n))) == IDS
        assert [c for call in calls for c in call] == IDS
        assert [len(c) for c in calls] == [STEP] * (len(TEXTS) // STEP)
        assert done == [(STEP * (i + 1), len(TEXTS)) for i in range(len(TEXTS) // STEP)]
        records = index.get(IDS, include_vectors=True)
        assert [r.text for r in records] == TEXTS
        np.testing.assert_allclose(np.stack([r.vector for r in records]), _expected(provider, TEXTS), atol=2e-3)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_next_step_is_embedded_while_the_previous_one_is_written(tmp_path, mode):
    next_step_started = threading.Event()
    seen = []

    def mark(texts, kind, call_number):
        if TEXTS[STEP] in texts:
            next_step_started.set()

    def before(call_number, ids):
        if call_number == 1:  # step 1's write waits for step 2's embedding to begin (serial: never)
            seen.append(next_step_started.wait(timeout=10))

    provider = FakeProvider(dim=32, batch_size=10, fail=mark)
    with MRLIndex(provider, tmp_path / "s") as index:
        _record_adds(index, before)
        _mode_add(index, mode, texts=TEXTS[: 3 * STEP], ids=IDS[: 3 * STEP], step=STEP)
        assert seen == [True]
        assert len(index) == 3 * STEP


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_embedding_error_waits_for_the_step_being_written(tmp_path, mode):
    failed = threading.Event()

    def fail_in_step_3(texts, kind, call_number):
        if TEXTS[2 * STEP] in texts:
            failed.set()
            raise RuntimeError("provider down")

    def before(call_number, ids):
        if call_number == 2:  # step 2 is still being written when step 3's embedding fails
            failed.wait(timeout=10)
            time.sleep(0.2)

    provider = FakeProvider(dim=32, batch_size=STEP, fail=fail_in_step_3)
    with MRLIndex(provider, tmp_path / "s") as index:
        calls = _record_adds(index, before)
        with pytest.raises(Exception, match="provider down"):
            _mode_add(index, mode, step=STEP)
        # checked without taking the store's lock: step 2 had committed before the error came out
        assert len(index) == 2 * STEP
        assert [r.id for r in index.get(IDS)] == IDS[: 2 * STEP]
        assert len(calls) == 2


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_store_error_stops_the_ingestion_with_its_type(tmp_path, mode):
    def before(call_number, ids):
        if call_number == 2:
            raise StoreIOError("disk full (scripted)")

    provider = FakeProvider(dim=32, batch_size=STEP)
    with MRLIndex(provider, tmp_path / "s") as index:
        calls = _record_adds(index, before)
        with pytest.raises(StoreIOError, match="disk full"):
            _mode_add(index, mode, step=STEP)
        assert len(calls) == 2  # nothing written after the failed step
        assert provider.texts_embedded <= 3 * STEP  # at most the step embedded beside the failed write
        assert [r.id for r in index.get(IDS)] == IDS[:STEP]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_rerun_after_a_failure_pays_only_for_what_the_cache_lacks(tmp_path, mode):
    def fail_once(texts, kind, call_number):
        if call_number == 10:  # the middle of step 3 (4 batches of 10 a step, 3 in flight)
            raise RuntimeError("provider down")

    first = FakeProvider(dim=32, batch_size=10, max_concurrency=3, fail=fail_once)
    with MRLIndex(CachedProvider(first, EmbeddingCache(tmp_path / "cache.sqlite")), tmp_path / "s") as index:
        with pytest.raises(Exception, match="provider down"):
            _mode_add(index, mode, step=STEP)
        assert [r.id for r in index.get(IDS)] == IDS[: 2 * STEP]
    with EmbeddingCache(tmp_path / "cache.sqlite") as cache:
        cached = cache.count()
    assert 2 * STEP <= cached < 3 * STEP  # steps 1-2 and the batches of step 3 that completed

    again = FakeProvider(dim=32, batch_size=10, max_concurrency=3)
    with MRLIndex(CachedProvider(again, EmbeddingCache(tmp_path / "cache.sqlite")), tmp_path / "s") as index:
        assert _mode_add(index, mode, step=STEP) == IDS
        assert again.texts_embedded == len(TEXTS) - cached
        records = index.get(IDS, include_vectors=True)
        assert [r.text for r in records] == TEXTS
        np.testing.assert_allclose(np.stack([r.vector for r in records]), _expected(again, TEXTS), atol=2e-3)


def _openai_index(server, tmp_path, **options):
    from mrl_retrievers.providers.openai import OpenAIProvider

    provider = OpenAIProvider(model="text-embedding-3-small", dim=64, api_key=KEY, base_url=server.base_url, **options)
    return MRLIndex(provider, tmp_path / "s", prefix_dim=16), provider


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_scripted_429s_are_retried_across_the_pipeline(tmp_path, mode):
    pytest.importorskip("openai")
    texts, ids = TEXTS[:60], IDS[:60]
    with OpenAIServer(api_key=KEY) as server:
        index, provider = _openai_index(server, tmp_path, batch_size=5, max_concurrency=3)
        waits = record_waits(provider)
        server.faults.push(Fault.ok(), Fault.rate_limit(retry_after=2), Fault.ok(), Fault.ok(),
                           Fault.rate_limit(retry_after_ms=1500), Fault.ok(), Fault.rate_limit(retry_after=1))
        with index:
            assert _mode_add(index, mode, texts=texts, ids=ids, step=20) == ids
            records = index.get(ids, include_vectors=True)
            assert [r.text for r in records] == texts
            expected = np.stack([server.expected_vector(t, model="text-embedding-3-small", dim=64) for t in texts])
            np.testing.assert_allclose(np.stack([r.vector for r in records]), expected, atol=2e-3)
        assert len(server.requests) == 12 + 3  # every 429 retried once
        # Besides the three retries, requests started while a 429's pause held (the provider's
        # shared pause gate, issue 16) waited too: set those apart, then check the retries.
        retries = list(waits)
        for pause in provider.pause_gate.pauses:
            retries.remove(pause)
        assert len(retries) == 3 and all(w >= r for w, r in zip(sorted(retries), (1.0, 1.5, 2.0)))  # Retry-After honoured
        assert all(pause <= 2.0 * 1.05 for pause in provider.pause_gate.pauses)  # never beyond the longest Retry-After
        received = server.texts_received()
        assert len(received) == len(texts) + 3 * 5 and set(received) == set(texts)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_emulator_rate_limiter_binds_and_nothing_is_left_unhandled(tmp_path, mode):
    """A real sliding-window limit (4 requests a minute) on a fake clock that the client's
    Retry-After sleeps advance: every 429 is waited out and retried, nothing is lost."""
    pytest.importorskip("openai")
    texts, ids = TEXTS[:60], IDS[:60]
    now = [0.0]
    clock_lock = threading.Lock()
    with OpenAIServer(api_key=KEY) as server:
        server.limiter = RateLimiter(rpm=4, clock=lambda: now[0])
        index, provider = _openai_index(server, tmp_path, batch_size=5, max_concurrency=2)

        def sleep(delay):
            with clock_lock:
                now[0] += delay

        async def asleep(delay):
            sleep(delay)

        provider._sleep, provider._asleep = sleep, asleep
        statuses = []
        real_handle = server.handle

        def handle(req):
            reply = real_handle(req)
            statuses.append(reply.status)
            return reply

        server.handle = handle
        with index:
            assert _mode_add(index, mode, texts=texts, ids=ids, step=20) == ids
            assert [r.id for r in index.get(ids)] == ids
        # At least one 429 proves the limiter bound; how many depends on thread timing (two requests in
        # flight both refused, or the second held by the pause gate the first 429 closed: seen on a
        # loaded machine). The fake clock proves the waiting: 12 requests at 4 a minute need two windows.
        assert statuses.count(200) == 12 and statuses.count(429) >= 1
        assert set(statuses) == {200, 429}
        assert now[0] >= 120  # 12 requests at 4 a minute: the client waited out two windows


def test_default_step_is_one_provider_round_within_bounds(tmp_path):
    with MRLIndex(FakeProvider(dim=16, batch_size=64, max_concurrency=1), tmp_path / "a") as small:
        assert small.default_step() == 512
    with MRLIndex(FakeProvider(dim=16, batch_size=300, max_concurrency=4), tmp_path / "b") as mid:
        assert mid.default_step() == 1200
    with MRLIndex(FakeProvider(dim=16, batch_size=2048, max_concurrency=4), tmp_path / "c") as big:
        assert big.default_step() == 4096
        for bad in (0, -3, 2.5, True):
            with pytest.raises(InvalidInputError):
                big.add_texts(["a"], step=bad)


def test_one_step_needs_no_writer_thread(tmp_path):
    provider = FakeProvider(dim=16)
    with MRLIndex(provider, tmp_path / "s") as index:
        threads = []
        _record_adds(index, lambda n, ids: threads.append(threading.current_thread().name))
        index.add_texts(TEXTS[:10], ids=IDS[:10])
        assert threads == [threading.current_thread().name]


def test_provider_error_type_survives_the_pipeline(tmp_path):
    def fail(texts, kind, call_number):
        if call_number == 3:
            raise ProviderError("quota gone", provider="fake", model="fake-mrl-v1")

    with MRLIndex(FakeProvider(dim=16, batch_size=STEP, fail=fail), tmp_path / "s") as index:
        with pytest.raises(ProviderError, match="quota gone"):
            index.add_texts(TEXTS, ids=IDS, step=STEP)
        assert len(index) == 2 * STEP


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_load_of_many_steps_calibrates_once_at_its_end(tmp_path, mode, monkeypatch):
    """Each ``add`` that grows a store 1.5x past its calibration recalibrates it (so a store left
    open between checkpoints searches calibrated: tests/store/test_live_store_recall.py); a
    multi-step ``add_texts`` is one load: one calibration at its final size (``MRLStore.loading``),
    not one at each growth step (4k, 6k, 10k, 16k of a 20k ingestion: 1.5x the work). A search
    during the load scans exactly (no calibration yet); a failed load leaves the calibration to the
    next write and restores the store's own calibrating."""
    from mrl_retrievers.store.local import calibration

    monkeypatch.setattr(calibration, "DEFAULT_PROBES", 48)
    measured = []
    real = calibration.calibrate
    monkeypatch.setattr(calibration, "calibrate", lambda state, **kw: measured.append(state.ann.live) or real(state, **kw))
    texts = [f"passage {i} on subject {i % 97}" for i in range(4000)]
    ids = [f"p{i}" for i in range(4000)]
    provider = FakeProvider(dim=32, batch_size=250)
    with MRLIndex(provider, tmp_path / "s", prefix_dim=4) as index:
        plans = []
        progress = lambda done, total: plans.append(index.store._searcher.plan(10, None, None))  # noqa: E731
        _mode_add(index, mode, texts=texts, ids=ids, step=500, progress=progress)
        assert measured == [4000]  # 2,500 and 4,000 rows cross growth steps; the load measured once
        assert index.store.manifest.calibration.live == 4000 and index.store._s.auto_calibrate
        assert all(p.policy is None and p.exact_below >= 2500 for p in plans[4:-1])  # past exact_below: scanned
        # A load that fails part-way: the steps before stay, the flag comes back, no calibration yet.
        measured.clear()

        def fail_late(batch, kind, call_number):
            if "passage 7999 on" in batch[-1]:
                raise RuntimeError("provider down")

        provider.fail = fail_late
        more = [f"passage {i} on subject {i % 97}" for i in range(4000, 8000)]
        with pytest.raises(RuntimeError, match="provider down"):
            _mode_add(index, mode, texts=more, ids=[f"p{i}" for i in range(4000, 8000)], step=500)
        assert measured == [] and index.store._s.auto_calibrate and len(index) == 7500
        index.store.add(["one-more"], np.ones((1, 32), np.float32))  # the next write measures (1.9x)
        assert measured == [7501]
