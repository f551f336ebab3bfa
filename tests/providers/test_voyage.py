"""Voyage provider: the real ``voyageai`` SDK against the loopback Voyage emulator."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("voyageai")

from mrl_retrievers.errors import (  # noqa: E402
    AuthenticationError,
    EmbeddingResponseError,
    ProviderServerError,
    UnsupportedDimensionError,
)
from mrl_retrievers.providers import get_provider  # noqa: E402
from mrl_retrievers.providers.voyage import VoyageProvider, build_request, parse_response  # noqa: E402
from mrl_retrievers.emulators import Fault  # noqa: E402
from tests.providers.servers.fixtures import FAST_RETRY, KEY, record_waits  # noqa: E402

TEXTS = ["the cat sat on the mat", "a dog barked", "mrl prefixes carry meaning"]


def make(server, model="voyage-4", dim=512, **kw):
    kw.setdefault("retry", FAST_RETRY)
    return VoyageProvider(model=model, dim=dim, api_key=KEY, base_url=server.base_url, **kw)


def test_request_fields_and_vectors(voyage_server):
    emb = make(voyage_server)
    docs = emb.embed_documents(TEXTS)
    query = emb.embed_query("who barked?")

    doc_req, query_req = voyage_server.requests
    assert (doc_req.method, doc_req.path) == ("POST", "/v1/embeddings")
    assert doc_req.headers["authorization"] == f"Bearer {KEY}"
    # the SDK sends unset options as null and asks for base64 by itself
    assert doc_req.body == {"input": TEXTS, "model": "voyage-4", "input_type": "document", "truncation": True,
                            "output_dtype": None, "output_dimension": 512, "encoding_format": "base64"}
    assert query_req.body["input_type"] == "query"
    for text, vec in zip(TEXTS, docs):
        np.testing.assert_allclose(vec, voyage_server.expected_vector(
            text, model="voyage-4", dim=512, input_type="document"), atol=1e-6)
    np.testing.assert_allclose(query, voyage_server.expected_vector(
        "who barked?", model="voyage-4", dim=512, input_type="query"), atol=1e-6)
    assert emb.spec.query_prompt == "query" and emb.spec.document_prompt == "document"


@pytest.mark.parametrize("dim", [300, 100, 4096])
def test_unsupported_width_refused_before_any_request(voyage_server, dim):
    with pytest.raises(UnsupportedDimensionError, match="256, 512, 1024, 2048"):
        make(voyage_server, dim=dim)
    with pytest.raises(UnsupportedDimensionError):
        get_provider("voyage", model="voyage-4", dim=dim, api_key=KEY, base_url=voyage_server.base_url)
    assert voyage_server.requests == []


def test_the_server_would_refuse_300_too(voyage_server):
    """The emulator enforces the allowed set, so the check above is not the only safety net."""
    emb = make(voyage_server, model="voyage-4", dim=300, native_dim=2048, native_shortening=True)
    with pytest.raises(Exception, match="output_dimension"):
        emb.embed_query("x")


def test_batches_split_at_1000(voyage_server):
    texts = [f"text {i}" for i in range(2500)]
    vectors = make(voyage_server, dim=256).embed_documents(texts)
    assert sorted(len(r.body["input"]) for r in voyage_server.requests) == [500, 1000, 1000]
    np.testing.assert_allclose(vectors[2499], voyage_server.expected_vector(
        "text 2499", model="voyage-4", dim=256, input_type="document"), atol=1e-6)


def test_batches_split_by_the_model_token_cap(voyage_server):
    """voyage-4-large takes 120k tokens a request: 100 texts of ~3k tokens need several requests."""
    texts = [f"{i} " + "lorem ipsum dolor " * 700 for i in range(100)]
    make(voyage_server, model="voyage-4-large", dim=256).embed_documents(texts)
    assert len(voyage_server.requests) >= 3
    assert sum(len(r.body["input"]) for r in voyage_server.requests) == 100


def test_fixed_width_model_is_truncated(voyage_server):
    """voyage-3 has one width (1024): no output_dimension is sent; we truncate and renormalize."""
    emb = make(voyage_server, model="voyage-3", dim=256, native_dim=1024)
    vec = emb.embed_query("hello")
    assert voyage_server.requests[0].body["output_dimension"] is None
    full = voyage_server.expected_vector("hello", model="voyage-3", input_type="query")
    np.testing.assert_allclose(vec, full[:256] / np.linalg.norm(full[:256]), atol=1e-6)


def test_500_is_retried_by_us_although_the_sdk_never_would(voyage_server):
    emb = make(voyage_server)
    waits = record_waits(emb)
    voyage_server.faults.push(Fault.http(500), Fault.http(500))
    emb.embed_query("x")
    assert len(voyage_server.requests) == 3 and len(waits) == 2
    voyage_server.faults.push(Fault.http(500), times=3)
    with pytest.raises(ProviderServerError, match="voyage.*model=voyage-4.*status=500"):
        emb.embed_query("x")


def test_missing_key_fails_at_construction(voyage_server, monkeypatch):
    """Regression (issue 14, trap 5): the key was checked only at the first request."""
    monkeypatch.delenv("VOYAGE_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="VOYAGE_API_KEY") as info:
        VoyageProvider(dim=512, base_url=voyage_server.base_url)
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert voyage_server.requests == []


def test_key_from_env(voyage_server, monkeypatch):
    monkeypatch.setenv("VOYAGE_API_KEY", KEY)
    get_provider("voyage", dim=512, base_url=voyage_server.base_url).embed_query("x")
    assert voyage_server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_wrong_key(voyage_server):
    emb = VoyageProvider(dim=512, api_key="wrong-key-000", base_url=voyage_server.base_url, retry=FAST_RETRY)
    with pytest.raises(AuthenticationError) as info:
        emb.embed_query("x")
    assert info.value.status == 401 and len(voyage_server.requests) == 1


# --- pure functions ---------------------------------------------------------------------------


def test_build_request():
    assert build_request("voyage-4", ["a"], "query", None) == {
        "texts": ["a"], "model": "voyage-4", "input_type": "query", "truncation": True, "output_dimension": None}


def test_parse_response_rejects_bad_answers():
    assert parse_response(SimpleNamespace(embeddings=[[1.0, 0.0]]), 1, "m").shape == (1, 2)
    with pytest.raises(EmbeddingResponseError, match="expected 2"):
        parse_response(SimpleNamespace(embeddings=[[1.0]]), 2, "m")
    with pytest.raises(EmbeddingResponseError, match="different widths"):
        parse_response(SimpleNamespace(embeddings=[[1.0], [1.0, 2.0]]), 2, "m")
    with pytest.raises(EmbeddingResponseError, match="no 'embeddings'"):
        parse_response(SimpleNamespace(), 1, "m")
