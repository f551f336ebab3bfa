"""Gemini provider: the real ``google-genai`` SDK against the loopback Gemini emulator."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("google.genai")

from google import genai  # noqa: E402

from mrl_retrievers.errors import (  # noqa: E402
    AuthenticationError,
    EmbeddingResponseError,
    RateLimitError,
    UnsupportedDimensionError,
)
from mrl_retrievers.providers import get_provider  # noqa: E402
from mrl_retrievers.providers.gemini import (  # noqa: E402
    GeminiProvider,
    build_request,
    parse_response,
    retry_info_delay,
)
from mrl_retrievers.emulators import Fault, RateLimiter  # noqa: E402
from tests.providers.servers.fixtures import FAST_RETRY, GEMINI2_PREFIX, KEY, record_waits  # noqa: E402

TEXTS = ["the cat sat on the mat", "a dog barked", "mrl prefixes carry meaning"]


def make(server, model="gemini-embedding-001", dim=768, **kw):
    kw.setdefault("retry", FAST_RETRY)
    return GeminiProvider(model=model, dim=dim, api_key=KEY, base_url=server.base_url, **kw)


def test_001_request_fields(gemini_server):
    emb = make(gemini_server)
    emb.embed_documents(TEXTS)
    emb.embed_query("what sat on the mat?")

    docs, query = gemini_server.requests
    assert (docs.method, docs.path) == ("POST", "/v1/models/gemini-embedding-001:batchEmbedContents")
    assert docs.headers["x-goog-api-key"] == KEY
    assert docs.body == {"requests": [
        {"model": "models/gemini-embedding-001", "content": {"role": "user", "parts": [{"text": t}]},
         "taskType": "RETRIEVAL_DOCUMENT", "outputDimensionality": 768}
        for t in TEXTS
    ]}
    assert query.body["requests"][0]["taskType"] == "RETRIEVAL_QUERY"
    assert emb.spec.query_prompt == "RETRIEVAL_QUERY" and emb.spec.document_prompt == "RETRIEVAL_DOCUMENT"


def test_001_short_vectors_are_renormalized(gemini_server):
    """The API returns raw, non-unit prefixes below 3072 for 001; we hand out unit vectors."""
    emb = make(gemini_server, dim=256)
    vectors = emb.embed_documents(TEXTS)
    raw = gemini_server.expected_vector(TEXTS[0], model="gemini-embedding-001", dim=256,
                                        task_type="RETRIEVAL_DOCUMENT")
    assert np.linalg.norm(raw) < 0.9  # what the server sent really was not unit length
    np.testing.assert_allclose(vectors[0], raw / np.linalg.norm(raw), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_gemini_2_uses_prefixes_and_no_task_type(gemini_server):
    emb = make(gemini_server, model="gemini-embedding-2", dim=512)
    emb.embed_documents(TEXTS)
    emb.embed_query("who barked?")
    docs, query = gemini_server.requests
    assert [item["content"]["parts"] for item in docs.body["requests"]] == [
        [{"text": "title: none | text: " + t}] for t in TEXTS
    ]
    assert query.body["requests"][0]["content"]["parts"] == [{"text": "task: search result | query: who barked?"}]
    assert all("taskType" not in item for r in (docs, query) for item in r.body["requests"])
    assert emb.spec.query_prompt == GEMINI2_PREFIX["query"]


def test_gemini_2_one_content_per_text_avoids_the_merge_trap(gemini_server):
    """google-genai merges a plain list of strings into ONE embedding for gemini-embedding-2."""
    client = genai.Client(api_key=KEY, http_options={"base_url": gemini_server.base_url})
    merged = client.models.embed_content(model="gemini-embedding-2", contents=TEXTS)
    assert len(merged.embeddings) == 1  # the upstream trap, reproduced by the emulator
    assert len(gemini_server.requests[0].body["requests"]) == 1

    vectors = make(gemini_server, model="gemini-embedding-2").embed_documents(TEXTS)
    assert vectors.shape == (3, 768)
    assert len(gemini_server.requests[1].body["requests"]) == 3


def test_batches_split_at_100(gemini_server):
    texts = [f"text {i}" for i in range(250)]
    vectors = make(gemini_server, dim=128).embed_documents(texts)
    assert sorted(len(r.body["requests"]) for r in gemini_server.requests) == [50, 100, 100]
    expected = gemini_server.expected_vector("text 249", model="gemini-embedding-001", dim=128,
                                             task_type="RETRIEVAL_DOCUMENT")
    np.testing.assert_allclose(vectors[249], expected / np.linalg.norm(expected), atol=1e-6)


def test_v1beta_route(gemini_server):
    make(gemini_server, api_version="v1beta").embed_query("x")
    assert gemini_server.requests[0].path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"


def test_width_below_128_refused_before_any_request(gemini_server):
    with pytest.raises(UnsupportedDimensionError):
        make(gemini_server, dim=64)
    assert gemini_server.requests == []


def test_retry_info_delay_is_honoured(gemini_server):
    """Gemini says how long to wait in a RetryInfo detail of the 429 body, not in a header."""
    emb = make(gemini_server)
    waits = record_waits(emb)
    gemini_server.faults.push(Fault.rate_limit(retry_delay=7.5))
    emb.embed_query("x")
    assert len(gemini_server.requests) == 2
    assert len(waits) == 1 and 7.5 <= waits[0] <= 7.5 * 1.06


def test_rate_limit_from_the_server_limiter(gemini_server):
    gemini_server.limiter = RateLimiter(rpm=1)
    emb = make(gemini_server, retry=FAST_RETRY)
    waits = record_waits(emb)
    emb.embed_query("first")
    with pytest.raises(RateLimitError) as info:
        emb.embed_query("second")
    assert info.value.status == 429 and all(w >= 55 for w in waits)  # ~60 s left in the window


def test_wrong_key_is_400_api_key_invalid_mapped_to_authentication(gemini_server):
    emb = GeminiProvider(dim=768, api_key="wrong-key-000", base_url=gemini_server.base_url, retry=FAST_RETRY)
    with pytest.raises(AuthenticationError) as info:
        emb.embed_query("x")
    assert info.value.status == 400 and len(gemini_server.requests) == 1


def test_missing_key_fails_at_construction(gemini_server, monkeypatch):
    """Regression (issue 14, trap 5): the key was checked only at the first request."""
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="GEMINI_API_KEY") as info:
        GeminiProvider(dim=768, base_url=gemini_server.base_url)
    assert info.value.__cause__ is None and info.value.__context__ is None
    GeminiProvider(dim=768, vertexai=True, project="p", location="l")  # Vertex AI authenticates without a key
    assert gemini_server.requests == []


@pytest.mark.parametrize("var", ["GEMINI_API_KEY", "GOOGLE_API_KEY"])
def test_key_from_env(gemini_server, monkeypatch, var):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv(var, KEY)
    get_provider("gemini", dim=768, base_url=gemini_server.base_url).embed_query("x")
    assert gemini_server.requests[0].headers["x-goog-api-key"] == KEY


def test_client_options_vertex_timeout_and_no_sdk_retries(monkeypatch):
    """Vertex AI settings reach genai.Client as given; timeout in ms; the SDK's retries are off."""
    seen = {}

    class Recorder:
        def __init__(self, **kwargs):
            seen.update(kwargs)

    monkeypatch.setattr(genai, "Client", Recorder)
    emb = GeminiProvider(dim=768, vertexai=True, project="my-proj", location="europe-west4",
                         base_url="https://europe-west4-aiplatform.googleapis.com", timeout=1.5)
    emb._client()
    assert seen["vertexai"] is True and seen["project"] == "my-proj" and seen["location"] == "europe-west4"
    assert seen["api_key"] is None  # Vertex: Application Default Credentials, no key required
    http = seen["http_options"]
    assert http.timeout == 1500 and http.base_url == "https://europe-west4-aiplatform.googleapis.com"
    assert http.retry_options.attempts == 1


# --- pure functions ---------------------------------------------------------------------------


def test_build_request_markings():
    assert build_request("gemini-embedding-001", ["a"], "query", 256).task_type == "RETRIEVAL_QUERY"
    two = build_request("gemini-embedding-2", ["a"], "document", None)
    assert two.texts == ["title: none | text: a"] and two.task_type is None
    # an unknown future multimodal model follows google-genai's own rule: prefixes
    assert build_request("gemini-embedding-3", ["a"], "query", None).task_type is None


def test_retry_info_delay():
    body = {"error": {"code": 429, "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "31.5s"}]}}
    assert retry_info_delay(body) == 31.5
    assert retry_info_delay({"error": {"code": 429}}) is None
    assert retry_info_delay(None) is None


def test_parse_response_rejects_bad_answers():
    ok = SimpleNamespace(embeddings=[SimpleNamespace(values=[1.0, 0.0]), SimpleNamespace(values=[0.0, 1.0])])
    assert parse_response(ok, 2, "m").shape == (2, 2)
    with pytest.raises(EmbeddingResponseError, match="expected 3"):
        parse_response(ok, 3, "m")
    ragged = SimpleNamespace(embeddings=[SimpleNamespace(values=[1.0]), SimpleNamespace(values=[0.0, 1.0])])
    with pytest.raises(EmbeddingResponseError, match="different widths"):
        parse_response(ragged, 2, "m")
    with pytest.raises(EmbeddingResponseError, match="no 'values'"):
        parse_response(SimpleNamespace(embeddings=[SimpleNamespace(values=None)]), 1, "m")
