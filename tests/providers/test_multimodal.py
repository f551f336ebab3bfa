"""Images through the provider interface, for every multimodal provider (fake and the three APIs).

One routine for each hosted multimodal model against its emulator: images and interleaved inputs
give the API's vectors, in order, unit length after truncation, sync and async identical; faults
and rate limits with images behave as with texts. Then the inputs (path, bytes, URL, file object,
PIL image), the typed errors, the fake provider, the cache and the spec.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest

from mrl_retrievers.cache import EmbeddingCache
from mrl_retrievers.errors import EmbeddingResponseError, InvalidImageError, InvalidInputError, ProviderServerError
from mrl_retrievers.errors import RateLimitError, UnsupportedModalityError
from mrl_retrievers.media import Content, Image
from mrl_retrievers.providers import get_provider
from mrl_retrievers.providers.base import RetryPolicy
from mrl_retrievers.providers.cached import CachedProvider
from mrl_retrievers.providers.fake import FakeProvider
from mrl_retrievers.types import EmbeddingSpec
from tests.providers.images import jpeg, png
from mrl_retrievers.emulators import Fault
from tests.providers.servers.fixtures import KEY, record_waits

RED, GREEN, BLUE = png("red"), png("green"), jpeg("blue")
MODES = ("sync", "async")


def inputs_for(case):
    """Texts, images and (where the model interleaves) a caption + image, as the case's parts."""
    parts = [("a bar chart of rainfall",), (RED,), (GREEN,), (BLUE,), ("a pie chart",)]
    if case.label != "jina":
        parts.append(("rainfall by month", RED))
    return parts


def as_inputs(parts):
    return [p[0] if len(p) == 1 and isinstance(p[0], str) else list(p) if len(p) > 1 else p[0] for p in parts]


def embed(emb, inputs, mode, kind="document"):
    if mode == "sync":
        return emb.embed_inputs(inputs, kind)

    async def run():
        try:
            return await emb.aembed_inputs(inputs, kind)
        finally:
            await emb.aclose()

    return asyncio.run(run())


# --- every hosted multimodal model ----------------------------------------------------------------


def test_images_give_the_api_vectors_in_order_unit_and_sync_equals_async(multimodal):
    case = multimodal
    emb = case.provider(batch_size=2, max_concurrency=3)
    parts = inputs_for(case)
    docs = embed(emb, as_inputs(parts), "sync")
    assert docs.shape == (len(parts), case.dim) and docs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(docs, np.stack([case.expected_input(p, "document") for p in parts]), atol=1e-6)
    np.testing.assert_array_equal(embed(emb, as_inputs(parts), "async"), docs)
    queries = emb.embed_images([RED, BLUE], kind="query")
    np.testing.assert_allclose(queries[1], case.expected_input((BLUE,), "query"), atol=1e-6)
    assert emb.spec.modalities == ("image", "text")


@pytest.mark.parametrize("mode", MODES)
def test_image_batches_honour_retry_after_and_retry_5xx(multimodal, mode):
    case = multimodal
    emb = case.provider()
    waits = record_waits(emb)
    case.server.faults.push(Fault.rate_limit(retry_after=2), Fault.http(503))
    got = embed(emb, [RED, BLUE], mode)
    np.testing.assert_allclose(got, np.stack([case.expected_input((RED,), "document"),
                                              case.expected_input((BLUE,), "document")]), atol=1e-6)
    assert len(case.server.requests) == 3 and 2.0 <= waits[0] <= 2.0 * 1.06


@pytest.mark.parametrize("mode", MODES)
def test_image_faults_end_in_typed_errors(multimodal, mode):
    case = multimodal
    emb = case.provider()
    record_waits(emb)
    case.server.faults.push(Fault.rate_limit(), times=3)
    with pytest.raises(RateLimitError) as info:
        embed(emb, [RED], mode)
    assert (info.value.provider, info.value.model, info.value.status) == (case.name, case.model, 429)
    case.server.faults.push(Fault.http(500), times=3)
    with pytest.raises(ProviderServerError):
        embed(emb, [RED], mode)
    for fault in (Fault.malformed(), Fault.wrong_count(), Fault.wrong_width(), Fault.nan()):
        before = len(case.server.requests)
        case.server.faults.push(fault)
        with pytest.raises(EmbeddingResponseError):
            embed(emb, [RED, BLUE], mode)
        assert len(case.server.requests) == before + 1  # a broken answer is not paid for twice


def test_the_rate_limiter_charges_images(voyage_server):
    """Voyage charges an image by its pixels: a server allowing 100 tokens a minute admits one 1x1
    PNG (charged as 50k pixels = 90 tokens), then answers 429 with Retry-After."""
    pytest.importorskip("voyageai")
    from mrl_retrievers.providers.voyage import VoyageProvider
    from mrl_retrievers.emulators import VoyageServer

    with VoyageServer(api_key=KEY, tpm=100) as server:
        emb = VoyageProvider(model="voyage-multimodal-3.5", dim=256, api_key=KEY, base_url=server.base_url,
                             retry=RetryPolicy(max_attempts=2, base_delay=0.0, max_retry_after=3600))
        waits = record_waits(emb)
        emb.embed_images([RED])
        with pytest.raises(RateLimitError):
            emb.embed_images([GREEN])
        assert len(server.requests) == 3 and waits and waits[0] >= 1.0


def test_a_cached_provider_pays_once_for_an_image(multimodal, tmp_path):
    case = multimodal
    emb = CachedProvider(case.provider(), EmbeddingCache(tmp_path / "cache.sqlite"))
    first = emb.embed_inputs(as_inputs(inputs_for(case)))
    requests = len(case.server.requests)
    again = emb.embed_images([RED, BLUE])
    assert len(case.server.requests) == requests and emb.hits == 2
    np.testing.assert_array_equal(again, first[[1, 3]])
    emb.close()


# --- inputs -----------------------------------------------------------------------------------------


def test_every_form_of_an_image_embeds_the_same(tmp_path):
    from PIL import Image as PILImage

    path = tmp_path / "red.png"
    path.write_bytes(RED)
    emb = FakeProvider(dim=32)
    forms = [RED, bytearray(RED), path, str(path), path.as_uri(), io.BytesIO(RED), Image.from_bytes(RED),
             "data:image/png;base64," + Image.from_bytes(RED).base64()]
    vectors = emb.embed_images(forms)
    np.testing.assert_array_equal(vectors, np.repeat(vectors[:1], len(forms), axis=0))
    pil = PILImage.open(path)
    assert Image.load(pil).source == str(path)  # a PIL image opened from a file keeps its name
    assert Image.load(str(path)).source == str(path) and Image.load(RED).source is None
    assert Image.load("https://x.org/a.jpg") == Image(url="https://x.org/a.jpg", media_type="image/jpeg")


@pytest.mark.parametrize("value, message", [
    ("no/such/file.png", "cannot read image"),
    (b"", "empty"),
    (b"%PDF-1.7 not an image", "not a PNG, JPEG, GIF or WebP"),
    ("data:image/png;base64,@@@", "not valid base64"),
    (12345, "cannot use a int as an image"),
    ("ftp://x.org/a.png", "cannot read image"),
])
def test_unreadable_or_unsupported_images_are_one_typed_error(value, message):
    with pytest.raises(InvalidImageError, match=message):
        FakeProvider(dim=8).embed_images([value])


def test_a_directory_is_not_an_image(tmp_path):
    with pytest.raises(InvalidImageError, match="cannot read image"):
        FakeProvider(dim=8).embed_images([tmp_path])


@pytest.mark.parametrize("name, options", [
    ("openai", {"model": "text-embedding-3-small", "dim": 64}),
    ("voyage", {"model": "voyage-4", "dim": 256}),
    ("gemini", {"model": "gemini-embedding-001", "dim": 128}),
])
def test_a_text_only_model_refuses_images_before_any_request(name, options):
    emb = get_provider(name, api_key="k", base_url="http://127.0.0.1:9/v1", **options)
    for call in (lambda: emb.embed_images([RED]), lambda: emb.embed_inputs(["text", RED]),
                 lambda: asyncio.run(emb.aembed_images([RED])), lambda: emb.embed_inputs([["a", "b"]])):
        with pytest.raises(UnsupportedModalityError) as info:
            call()
        assert (info.value.provider, info.value.model) == (name, options["model"])
    with pytest.raises(UnsupportedModalityError, match="images need a multimodal model: .*jina/jina-embeddings-v4"):
        emb.embed_images([RED])
    with pytest.raises(UnsupportedModalityError, match="embeds text only"):  # the image is the problem
        emb.embed_inputs([["a caption", RED]])


def test_bad_input_shapes():
    emb = FakeProvider(dim=8)
    with pytest.raises(InvalidInputError, match="must be a list"):
        emb.embed_images(RED)
    with pytest.raises(InvalidInputError, match="must be a list"):
        emb.embed_inputs("one text")
    with pytest.raises(InvalidInputError, match="at least one part"):
        emb.embed_inputs([[]])
    assert emb.embed_inputs([]).shape == (0, 8)


def test_hosted_providers_refuse_empty_text_parts():
    emb = get_provider("jina", api_key="k", base_url="http://127.0.0.1:9/v1", dim=256)
    with pytest.raises(InvalidInputError, match="empty or whitespace-only"):
        emb.embed_inputs(["  "])


# --- the fake provider ------------------------------------------------------------------------------


def test_fake_images_are_deterministic_from_their_bytes_and_prefix_stable():
    wide, narrow = FakeProvider(dim=128), FakeProvider(dim=64)
    a, b = wide.embed_images([RED, GREEN]), wide.embed_images([RED, GREEN])
    np.testing.assert_array_equal(a, b)
    assert abs(float(a[0] @ a[1])) < 0.5  # different bytes, unrelated vectors
    prefix = a[0, :64] / np.linalg.norm(a[0, :64])
    np.testing.assert_allclose(narrow.embed_images([RED])[0], prefix, atol=1e-6)
    np.testing.assert_allclose(np.asarray(asyncio.run(wide.aembed_images([RED, GREEN]))), a, atol=0)


def test_fake_finds_a_captioned_image_from_text():
    emb = FakeProvider(dim=64)
    images = [png("red", caption="bar chart of monthly rainfall in Lisbon"),
              png("blue", caption="pie chart of browser market share"),
              png("green", caption="line plot of temperature over a year")]
    vectors = emb.embed_images(images)
    for query, best in (("monthly rainfall", 0), ("browser share", 1), ("temperature plot", 2)):
        assert int(np.argmax(vectors @ emb.embed_query(query))) == best


def test_fake_interleaved_input_is_the_sum_of_its_parts():
    emb = FakeProvider(dim=16)
    raw = emb.vector(Content(("a caption", Image.from_bytes(RED))))
    np.testing.assert_allclose(raw, emb.vector("a caption") + emb.vector(Image.from_bytes(RED)))


# --- the spec ---------------------------------------------------------------------------------------


def test_the_spec_records_the_modality_mix_without_changing_identity():
    spec = FakeProvider(dim=8).spec
    assert spec.modalities == ("image", "text") and spec.to_dict()["modalities"] == ["image", "text"]
    assert EmbeddingSpec.from_dict(spec.to_dict()) == spec
    assert EmbeddingSpec.from_dict(spec.to_dict()).modalities == ("image", "text")
    text_only = EmbeddingSpec(provider="fake", model="fake-mrl-v1", dim=8)
    assert "modalities" not in text_only.to_dict()  # text-only specs serialize as before
    assert text_only == spec and not text_only.differences(spec)  # a record, not an identity
    with pytest.raises(Exception, match="modalities"):
        EmbeddingSpec(provider="fake", model="m", dim=8, modalities=("audio",))


def test_the_cache_key_of_a_spec_ignores_modalities():
    from mrl_retrievers.cache import spec_id

    spec = FakeProvider(dim=8).spec
    assert spec_id(spec) == spec_id(EmbeddingSpec(provider="fake", model="fake-mrl-v1", dim=8))


def test_images_from_paths_keep_their_source(tmp_path: Path):
    path = tmp_path / "chart.png"
    path.write_bytes(RED)
    from mrl_retrievers.media import media_metadata

    assert media_metadata(Image.load(path)) == {"mrl_modality": "image", "mrl_source": str(path),
                                                "mrl_media_type": "image/png"}
    assert media_metadata(Content(("caption", Image.load(path), Image.load(BLUE)))) == {
        "mrl_modality": "text+image", "mrl_media_type": ["image/png", "image/jpeg"]}
    assert media_metadata("plain text") == {}
