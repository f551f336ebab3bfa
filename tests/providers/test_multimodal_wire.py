"""What each multimodal API receives, field by field, through the real SDK (or httpx for Jina).

Voyage ``/v1/multimodalembeddings`` (voyage-multimodal-3.5), Gemini ``batchEmbedContents`` with
``inline_data`` parts (gemini-embedding-2) and Jina ``/v1/embeddings`` (jina-embeddings-v4): the
exact request bodies, image encodings and widths, the vectors the emulators answer, decoded in
order, truncated and unit length.
"""

from __future__ import annotations

import base64
import hashlib

import numpy as np
import pytest

from mrl_retrievers.errors import InvalidImageError, InvalidInputError, ProviderRequestError, UnsupportedDimensionError
from mrl_retrievers.errors import UnsupportedModalityError
from mrl_retrievers.media import Image
from tests.providers.images import jpeg, png, webp
from tests.providers.servers.fixtures import FAST_RETRY, GEMINI2_PREFIX, KEY

URL = "https://images.example.com/charts/rainfall.png"


# --- Voyage ---------------------------------------------------------------------------------------


def voyage(server, dim=512, **kw):
    pytest.importorskip("voyageai")
    from mrl_retrievers.providers.voyage import VoyageProvider

    return VoyageProvider(model="voyage-multimodal-3.5", dim=dim, api_key=KEY, base_url=server.base_url,
                          retry=FAST_RETRY, **kw)


def test_voyage_multimodal_request_body(voyage_server):
    red, blue = png("red"), jpeg("blue")
    emb = voyage(voyage_server)
    vectors = emb.embed_inputs(["a bar chart", red, ["rainfall by month", blue, "source: met office"]])

    (req,) = voyage_server.requests
    assert (req.method, req.path) == ("POST", "/v1/multimodalembeddings")
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.body == {
        "inputs": [
            {"content": [{"type": "text", "text": "a bar chart"}]},
            {"content": [{"type": "image_base64", "image_base64": "data:image/png;base64," + base64.b64encode(red).decode()}]},
            {"content": [{"type": "text", "text": "rainfall by month"},
                         {"type": "image_base64", "image_base64": "data:image/jpeg;base64," + base64.b64encode(blue).decode()},
                         {"type": "text", "text": "source: met office"}]},
        ],
        "model": "voyage-multimodal-3.5", "input_type": "document", "truncation": True, "output_dtype": None,
        "output_dimension": 512, "encoding_format": "base64",
    }
    expected = [voyage_server.multimodal_identity("a bar chart"), voyage_server.multimodal_identity(red),
                voyage_server.multimodal_identity("rainfall by month", blue, "source: met office")]
    for vec, identity in zip(vectors, expected):
        np.testing.assert_allclose(vec, voyage_server.expected_vector(
            identity, model="voyage-multimodal-3.5", dim=512, input_type="document"), atol=1e-6)


def test_voyage_query_images_and_urls(voyage_server):
    emb = voyage(voyage_server, dim=256)
    emb.embed_images([URL], kind="query")
    body = voyage_server.requests[-1].body
    assert body["inputs"] == [{"content": [{"type": "image_url", "image_url": URL}]}]
    assert (body["input_type"], body["output_dimension"]) == ("query", 256)


def test_voyage_never_mixes_urls_and_bytes_in_one_request(voyage_server):
    """The API wants image_url or image_base64 in a request, never both: batches are cut there."""
    red = png("red")
    emb = voyage(voyage_server, max_concurrency=1)  # requests arrive in batch order
    vectors = emb.embed_inputs(["text first", Image.from_url(URL), red, "text", Image.from_url(URL + "?2")])
    kinds = [{seg["type"] for item in r.body["inputs"] for seg in item["content"]} - {"text"}
             for r in voyage_server.requests]
    assert kinds == [{"image_url"}, {"image_base64"}, {"image_url"}]
    assert [len(r.body["inputs"]) for r in voyage_server.requests] == [2, 2, 1]
    np.testing.assert_allclose(vectors[2], voyage_server.expected_vector(
        voyage_server.multimodal_identity(red), model="voyage-multimodal-3.5", dim=512, input_type="document"),
        atol=1e-6)
    with pytest.raises(InvalidImageError, match="mixes image URLs and image bytes"):
        emb.embed_inputs([[Image.from_url(URL), red]])


def test_the_emulator_refuses_a_request_mixing_urls_and_bytes(voyage_server):
    """The cut above is needed: the server (as the API) refuses a mixed request."""
    import voyageai

    client = voyageai.Client(api_key=KEY, base_url=voyage_server.base_url, max_retries=1)
    inputs = [{"content": [{"type": "image_url", "image_url": URL}]},
              {"content": [{"type": "image_base64", "image_base64": "data:image/png;base64," + base64.b64encode(png()).decode()}]}]
    with pytest.raises(voyageai.error.InvalidRequestError, match="either image_base64 or image_url"):
        client.multimodal_embed(inputs, model="voyage-multimodal-3.5")


def test_voyage_multimodal_widths_and_batches(voyage_server):
    with pytest.raises(UnsupportedDimensionError, match="256, 512, 1024, 2048"):
        voyage(voyage_server, dim=300)
    emb = voyage(voyage_server, dim=2048, batch_size=3, max_concurrency=1)
    emb.embed_images([png(c) for c in ("red", "green", "blue", "white", "black")])
    assert [len(r.body["inputs"]) for r in voyage_server.requests] == [3, 2]
    assert {r.body["output_dimension"] for r in voyage_server.requests} == {2048}


def test_voyage_batches_stay_under_the_token_cap(voyage_server):
    """Images cost pixels / 560 tokens (resized into 50k..2M pixels): 100 large images weigh ~357k
    tokens, over the 320k a request takes, so they go in two requests."""
    big = png("red", size=(1500, 1400))  # 2.1M pixels -> charged as 2M -> 3572 tokens
    emb = voyage(voyage_server, dim=256)
    emb.embed_images([big] * 100)
    sizes = [len(r.body["inputs"]) for r in voyage_server.requests]
    assert sum(sizes) == 100 and len(sizes) == 2


def test_voyage_text_model_takes_no_images(voyage_server):
    pytest.importorskip("voyageai")
    from mrl_retrievers.providers.voyage import VoyageProvider

    emb = VoyageProvider(model="voyage-4", dim=512, api_key=KEY, base_url=voyage_server.base_url)
    with pytest.raises(UnsupportedModalityError, match="voyage/voyage-4 embeds text only.*voyage-multimodal-3.5"):
        emb.embed_images([png()])
    assert voyage_server.requests == []


# --- Gemini ---------------------------------------------------------------------------------------


def gemini(server, model="gemini-embedding-2", dim=768):
    pytest.importorskip("google.genai")
    from mrl_retrievers.providers.gemini import GeminiProvider

    return GeminiProvider(model=model, dim=dim, api_key=KEY, base_url=server.base_url, retry=FAST_RETRY)


def _inline(part):
    blob = part["inline_data"]
    data = blob["data"].replace("-", "+").replace("_", "/")  # google-genai sends URL-safe base64
    return blob["mime_type"], base64.b64decode(data + "=" * (-len(data) % 4))


def test_gemini_embedding_2_request_body(gemini_server):
    red, blue = png("red"), jpeg("blue")
    emb = gemini(gemini_server)
    vectors = emb.embed_inputs(["a bar chart", red, ["rainfall by month", blue]])

    (req,) = gemini_server.requests
    assert (req.method, req.path) == ("POST", "/v1/models/gemini-embedding-2:batchEmbedContents")
    assert req.headers["x-goog-api-key"] == KEY
    items = req.body["requests"]
    assert [set(i) for i in items] == [{"model", "content", "outputDimensionality"}] * 3  # no taskType on -2
    assert {i["model"] for i in items} == {"models/gemini-embedding-2"}
    assert {i["outputDimensionality"] for i in items} == {768}
    assert items[0]["content"] == {"parts": [{"text": GEMINI2_PREFIX["document"] + "a bar chart"}], "role": "user"}
    (part,) = items[1]["content"]["parts"]
    assert set(part) == {"inline_data"} and _inline(part) == ("image/png", red)  # an image alone: no prefix
    text, image = items[2]["content"]["parts"]
    assert text == {"text": GEMINI2_PREFIX["document"] + "rainfall by month"}
    assert _inline(image) == ("image/jpeg", blue)
    from mrl_retrievers.emulators.gemini_server import image_identity

    identities = [GEMINI2_PREFIX["document"] + "a bar chart", image_identity(red),
                  GEMINI2_PREFIX["document"] + "rainfall by month\n" + image_identity(blue)]
    for vec, identity in zip(vectors, identities):
        np.testing.assert_allclose(vec, gemini_server.expected_vector(identity, model="gemini-embedding-2", dim=768),
                                   atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_gemini_refuses_what_the_api_would_before_any_request(gemini_server):
    emb = gemini(gemini_server)
    with pytest.raises(InvalidImageError, match="image/png, image/jpeg images, not image/webp"):
        emb.embed_images([webp()])
    with pytest.raises(InvalidImageError, match="takes image bytes, not URLs"):
        emb.embed_images([URL])
    with pytest.raises(InvalidInputError, match="7 images in one input.*at most 6"):
        emb.embed_inputs([[png()] * 7])
    with pytest.raises(UnsupportedModalityError, match="gemini/gemini-embedding-001 embeds text only"):
        gemini(gemini_server, model="gemini-embedding-001").embed_images([png()])
    assert gemini_server.requests == []


# --- Jina -------------------------------------------------------------------------------------------


def jina(server, dim=512, **kw):
    from mrl_retrievers.providers.jina import JinaProvider

    return JinaProvider(model="jina-embeddings-v4", dim=dim, api_key=KEY, base_url=server.base_url,
                        retry=FAST_RETRY, **kw)


def test_jina_v4_request_body_and_renormalized_vectors(jina_server):
    red = webp("red")
    emb = jina(jina_server)
    vectors = emb.embed_inputs(["a bar chart", red, Image.from_url(URL)])
    query = emb.embed_query("rainfall")

    doc_req, query_req = jina_server.requests
    assert (doc_req.method, doc_req.path) == ("POST", "/v1/embeddings")
    assert doc_req.headers["authorization"] == f"Bearer {KEY}"
    assert doc_req.body == {
        "model": "jina-embeddings-v4", "task": "retrieval.passage", "dimensions": 512, "embedding_type": "float",
        "truncate": True,
        "input": [{"text": "a bar chart"}, {"image": base64.b64encode(red).decode()}, {"image": URL}],
    }
    assert query_req.body["task"] == "retrieval.query" and query_req.body["input"] == [{"text": "rainfall"}]
    identities = ["a bar chart", "image:" + hashlib.sha256(red).hexdigest(), "url:" + URL]
    for vec, identity in zip(vectors, identities):
        raw = jina_server.expected_vector(identity, model="jina-embeddings-v4", dim=512, task="retrieval.passage")
        assert not np.isclose(np.linalg.norm(raw), 1.0, atol=1e-3)  # the API sent a truncated, not unit, vector
        np.testing.assert_allclose(vec, raw / np.linalg.norm(raw), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(query), 1.0, atol=1e-6)


def test_jina_takes_one_text_or_one_image_per_input(jina_server):
    emb = jina(jina_server)
    with pytest.raises(UnsupportedModalityError, match="one text or one image per input"):
        emb.embed_inputs([["a caption", png()]])
    assert jina_server.requests == []


@pytest.mark.parametrize("dim", [64, 4096])
def test_jina_width_out_of_range_is_refused_at_construction(jina_server, dim):
    with pytest.raises(UnsupportedDimensionError, match="128..2048"):
        jina(jina_server, dim=dim)


def test_jina_api_errors_are_typed(jina_server):
    """A URL the API cannot fetch: the 400 comes back as a typed error, not retried."""
    emb = jina(jina_server)
    with pytest.raises(ProviderRequestError, match="failed to fetch the image") as info:
        emb.embed_images(["https://unreachable.invalid/x.png"])
    assert (info.value.provider, info.value.model, info.value.status) == ("jina", "jina-embeddings-v4", 400)
    assert len(jina_server.requests) == 1
