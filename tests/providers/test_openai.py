"""OpenAI provider: the real ``openai`` SDK against the loopback OpenAI / Azure emulator."""

from __future__ import annotations

import asyncio
import base64
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("openai")

from mrl_retrievers.errors import (  # noqa: E402
    AuthenticationError,
    ConfigError,
    EmbeddingResponseError,
    InvalidInputError,
    ProviderRequestError,
    UnsupportedDimensionError,
)
from mrl_retrievers.providers import get_provider  # noqa: E402
from mrl_retrievers.providers.openai import OpenAIProvider, build_request, parse_response  # noqa: E402
from tests.providers.servers.fixtures import FAST_RETRY, KEY  # noqa: E402

MODEL = "text-embedding-3-large"
TEXTS = ["the cat sat on the mat", "a dog barked", "mrl prefixes carry meaning"]


def make(server, **kw):
    kw.setdefault("model", MODEL)
    kw.setdefault("retry", FAST_RETRY)
    return OpenAIProvider(api_key=KEY, base_url=server.base_url, **kw)


def test_request_fields_and_vectors(openai_server):
    emb = make(openai_server, dim=256)
    vectors = emb.embed_documents(TEXTS)

    (req,) = openai_server.requests
    assert (req.method, req.path) == ("POST", "/v1/embeddings")
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.body == {"model": MODEL, "input": TEXTS, "dimensions": 256, "encoding_format": "base64"}
    expected = np.stack([openai_server.expected_vector(t, model=MODEL, dim=256) for t in TEXTS])
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert vectors.dtype == np.float32 and vectors.shape == (3, 256)


def test_query_is_not_marked(openai_server):
    """OpenAI has no query/document marking: both sides are the same request and vector."""
    emb = make(openai_server, dim=64)
    query = emb.embed_query(TEXTS[0])
    doc = emb.embed_documents(TEXTS[:1])[0]
    assert openai_server.requests[0].body == openai_server.requests[1].body
    np.testing.assert_array_equal(query, doc)
    assert emb.spec.query_prompt is None and emb.spec.document_prompt is None


def test_ada_002_is_truncated_not_asked(openai_server):
    """ada-002 answers 400 to `dimensions`: we truncate its 1536-wide vectors and renormalize."""
    emb = make(openai_server, model="text-embedding-ada-002", dim=100)
    vec = emb.embed_query("hello")
    assert "dimensions" not in openai_server.requests[0].body
    full = openai_server.expected_vector("hello", model="text-embedding-ada-002")
    np.testing.assert_allclose(vec, full[:100] / np.linalg.norm(full[:100]), atol=1e-6)


def test_ada_002_dimensions_answer_is_a_typed_request_error(openai_server):
    """Forcing `dimensions` on ada-002 gets the real 400 message, raised at once (not retried)."""
    emb = make(openai_server, model="text-embedding-ada-002", dim=100, native_dim=1536, native_shortening=True)
    with pytest.raises(ProviderRequestError, match="does not support specifying dimensions") as info:
        emb.embed_query("hello")
    assert info.value.status == 400 and len(openai_server.requests) == 1


def test_dim_wider_than_native_is_refused_before_any_request(openai_server):
    with pytest.raises(UnsupportedDimensionError):
        make(openai_server, model="text-embedding-3-small", dim=2000)
    assert openai_server.requests == []


def test_batches_split_at_2048_inputs(openai_server):
    texts = [f"text number {i}" for i in range(4100)]
    emb = make(openai_server, model="text-embedding-3-small", dim=32, max_concurrency=2, batch_size=2048)
    vectors = emb.embed_documents(texts)
    sizes = sorted(len(r.body["input"]) for r in openai_server.requests)
    assert sizes == [4, 2048, 2048]
    assert openai_server.texts_received().count("text number 4099") == 1
    np.testing.assert_allclose(vectors[4099], openai_server.expected_vector(
        "text number 4099", model="text-embedding-3-small", dim=32), atol=1e-6)


def test_batches_split_by_tokens_under_300k(openai_server):
    """100 texts of ~4k tokens each cannot go in one request (300k tokens at most)."""
    texts = [f"{i} " + "lorem ipsum dolor " * 900 for i in range(100)]
    emb = make(openai_server, model="text-embedding-3-small", dim=32)
    emb.embed_documents(texts)
    assert len(openai_server.requests) >= 2  # and every one was accepted (else the call raised)
    assert sum(len(r.body["input"]) for r in openai_server.requests) == 100


def test_azure_deployment_route_and_header(openai_server):
    """Azure: deployment name as model, api-version query, api-key header, native width configured."""
    emb = OpenAIProvider(model="my-embedder", dim=256, native_dim=3072, native_shortening=True, api_key=KEY,
                         azure_endpoint=openai_server.azure_endpoint, api_version="2024-10-21", retry=FAST_RETRY)
    vec = emb.embed_query("hello")
    (req,) = openai_server.requests
    assert req.path == "/openai/deployments/my-embedder/embeddings"
    assert req.query == {"api-version": "2024-10-21"}
    assert req.headers["api-key"] == KEY and "authorization" not in req.headers
    assert req.body["dimensions"] == 256 and req.body["model"] == "my-embedder"
    np.testing.assert_allclose(vec, openai_server.expected_vector("hello", model=MODEL, dim=256), atol=1e-6)
    assert emb.spec.model == "my-embedder" and emb.spec.dim == 256


def test_azure_v1_route_through_base_url(openai_server):
    emb = OpenAIProvider(model=MODEL, dim=64, api_key=KEY, base_url=f"{openai_server.url}/openai/v1")
    emb.embed_query("hello")
    assert openai_server.requests[0].path == "/openai/v1/embeddings"


def test_azure_needs_api_version_and_a_width(openai_server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_VERSION", raising=False)
    with pytest.raises(ConfigError, match="api_version"):
        OpenAIProvider(model="my-embedder", dim=64, api_key=KEY, azure_endpoint=openai_server.azure_endpoint)
    with pytest.raises(ConfigError, match="dim="):  # an unknown deployment: its width cannot be guessed
        OpenAIProvider(model="my-embedder", api_key=KEY, azure_endpoint=openai_server.azure_endpoint,
                       api_version="2024-10-21")


def test_azure_key_from_its_env_var(openai_server, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    emb = OpenAIProvider(model="my-embedder", dim=64, native_dim=3072, native_shortening=True,
                         azure_endpoint=openai_server.azure_endpoint, api_version="2024-10-21")
    emb.embed_query("x")
    assert openai_server.requests[0].headers["api-key"] == KEY


def test_missing_key_fails_at_construction(openai_server, monkeypatch):
    """Regression (issue 14, trap 5): the key was checked only at the first request."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="OPENAI_API_KEY") as info:
        OpenAIProvider(model=MODEL, dim=64, base_url=openai_server.base_url)
    assert info.value.__cause__ is None and info.value.__context__ is None  # one exception, no chain
    with pytest.raises(AuthenticationError, match="OPENAI_API_KEY"):
        get_provider("openai", model=MODEL, dim=64, base_url=openai_server.base_url)
    assert openai_server.requests == []


def test_key_from_env(openai_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    get_provider("openai", model=MODEL, dim=64, base_url=openai_server.base_url).embed_query("x")
    assert openai_server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_wrong_key_is_not_retried_and_not_leaked(openai_server):
    canary = "sk-canary-0000-SECRET-9999"
    emb = OpenAIProvider(model=MODEL, dim=64, api_key=canary, base_url=openai_server.base_url, retry=FAST_RETRY)
    with pytest.raises(AuthenticationError) as info:
        emb.embed_query("x")
    assert info.value.status == 401 and len(openai_server.requests) == 1
    assert canary not in str(info.value) and canary not in repr(emb)


def test_unknown_model_is_a_request_error(openai_server):
    emb = make(openai_server, model="no-such-model", dim=8)
    with pytest.raises(ProviderRequestError, match="does not exist") as info:
        emb.embed_query("x")
    assert info.value.status == 404


def test_empty_text_rejected_before_any_request(openai_server):
    with pytest.raises(InvalidInputError):
        make(openai_server, dim=8).embed_documents(["fine", ""])
    assert openai_server.requests == []


# --- pure functions ---------------------------------------------------------------------------


def test_build_request_omits_dimensions_when_not_asked():
    assert build_request("m", ["a"], None) == {"model": "m", "input": ["a"], "encoding_format": "base64"}


def _item(index, embedding):
    return SimpleNamespace(index=index, embedding=embedding)


def test_parse_response_orders_by_index_and_reads_both_encodings():
    b64 = base64.b64encode(np.array([0.0, 1.0], dtype="<f4").tobytes()).decode()
    response = SimpleNamespace(data=[_item(1, [1.0, 0.0]), _item(0, b64)])
    np.testing.assert_array_equal(parse_response(response, 2, "m"), [[0.0, 1.0], [1.0, 0.0]])


@pytest.mark.parametrize("data, match", [
    ([_item(0, [1.0])], "expected 2"),
    ([_item(0, [1.0]), _item(0, [1.0])], "indexes"),
    ([_item(0, [1.0]), _item(1, [1.0, 2.0])], "different widths"),
    ([_item(0, "not base64!"), _item(1, "AAAA")], "base64"),
])
def test_parse_response_rejects_bad_answers(data, match):
    with pytest.raises(EmbeddingResponseError, match=match):
        parse_response(SimpleNamespace(data=data), 2, "m")


def test_default_batch_is_512_texts_and_2049_is_refused(openai_server):
    emb = make(openai_server, model="text-embedding-3-small", dim=32)
    assert emb.batch_size == 512
    emb.embed_documents([f"text number {i}" for i in range(1030)])
    assert sorted(len(r.body["input"]) for r in openai_server.requests) == [6, 512, 512]
    with pytest.raises(ConfigError):
        make(openai_server, model="text-embedding-3-small", dim=32, batch_size=2049)
