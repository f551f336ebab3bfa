"""Images in an index: what an image item's record says it is, text-to-image and image-to-image
search, the reserved metadata keys validated at every add, persistence and checksums.

Also the ``[embedder]`` block selecting a multimodal model, with the spec recording the mix.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from mrl_retrievers import Image, MRLIndex, MRLStore, get_provider
from mrl_retrievers.errors import InvalidMetadataError, UnsupportedModalityError
from tests.providers.images import jpeg, png
from tests.providers.servers.fixtures import KEY, voyage_server  # noqa: F401 - the emulator fixture

CHARTS = {
    "rain": "bar chart of monthly rainfall in Lisbon",
    "browsers": "pie chart of browser market share",
    "temps": "line plot of temperature over one year",
}


@pytest.fixture
def chart_files(tmp_path):
    folder = tmp_path / "charts"
    folder.mkdir()
    paths = {}
    for name, caption in CHARTS.items():
        paths[name] = folder / f"{name}.png"
        paths[name].write_bytes(png(color="red", caption=caption))
    return paths


def test_image_records_keep_source_and_media_type_in_hits(tmp_path, chart_files):
    with MRLIndex(get_provider("fake", dim=48), tmp_path / "store") as index:
        ids = index.add_images(list(chart_files.values()), ids=list(chart_files),
                               metadatas=[{"year": 2024}] * 3, captions=[None, "browsers", None])
        index.add_texts(["an unrelated note about rainfall statistics"], ids=["note"])
        assert ids == list(chart_files)
        hit = index.query("monthly rainfall", k=1, filter={"mrl_modality": "image"})[0]
        assert hit.id == "rain" and hit.text is None
        assert hit.metadata == {"year": 2024, "mrl_modality": "image", "mrl_source": str(chart_files["rain"]),
                                "mrl_media_type": "image/png"}
        assert index.get(["browsers"])[0].text == "browsers"  # a caption is stored, not embedded
        assert index.query("browser share", k=1)[0].id == "browsers"
        assert {h.id for h in index.query("rainfall", k=4)} == {"rain", "browsers", "temps", "note"}
        text_only = index.query("rainfall", k=4, filter={"mrl_modality": {"$exists": False}})
        assert [h.id for h in text_only] == ["note"]
    report = MRLStore.verify(tmp_path / "store")  # checksums cover the reserved keys like any metadata
    assert report.ok, report
    with MRLStore.open(tmp_path / "store") as store:
        assert store.get(["temps"])[0].metadata["mrl_source"] == str(chart_files["temps"])


def test_image_to_image_search(tmp_path):
    images = [png("red"), png("green"), jpeg("blue")]
    with MRLIndex(get_provider("fake", dim=32)) as index:
        index.add_images(images, ids=["r", "g", "b"])
        assert [index.query_image(img, k=1)[0].id for img in images] == ["r", "g", "b"]
        assert asyncio.run(index.aquery_image(images[2], k=1))[0].id == "b"
        assert index.get(["b"])[0].metadata == {"mrl_modality": "image", "mrl_media_type": "image/jpeg"}


def test_interleaved_inputs_and_urls(tmp_path):
    with MRLIndex(get_provider("fake", dim=32)) as index:
        ids = index.add_inputs(["plain text", ["a caption", png()], Image.from_url("https://x.org/cat.jpg")],
                               ids=["t", "c", "u"])
        records = {r.id: r for r in index.get(ids)}
        assert (records["t"].text, records["t"].metadata) == ("plain text", {})
        assert (records["c"].text, records["c"].metadata) == ("a caption", {"mrl_modality": "text+image",
                                                                             "mrl_media_type": "image/png"})
        assert records["u"].metadata == {"mrl_modality": "image", "mrl_source": "https://x.org/cat.jpg",
                                         "mrl_media_type": "image/jpeg"}


@pytest.mark.parametrize("metadata, message", [
    ({"mrl_kind": "image"}, "reserved prefix"),
    ({"mrl_modality": "video"}, "must be one of"),
    ({"mrl_modality": "image", "mrl_media_type": "text/html"}, "not a valid media type"),
    ({"mrl_source": "a.png"}, "describes an image"),
    ({"mrl_modality": "image", "mrl_source": ""}, "not a valid source"),
])
def test_reserved_keys_are_validated_at_add_and_nothing_is_written(tmp_path, metadata, message):
    with MRLIndex(get_provider("fake", dim=16), tmp_path / "store") as index:
        index.add_texts(["first"], ids=["a"])
        with pytest.raises(InvalidMetadataError, match=message):
            index.add_texts(["second"], metadatas=[metadata], ids=["b"])
        with pytest.raises(InvalidMetadataError, match=message):
            index.store.add(["b"], np.ones((1, 16)), metadatas=[metadata])
        assert len(index) == 1


def test_a_text_only_provider_refuses_images_before_anything_is_written(tmp_path):
    emb = get_provider("openai", model="text-embedding-3-small", dim=64, api_key="k", base_url="http://127.0.0.1:9/v1")
    with MRLIndex(emb, tmp_path / "store") as index:
        with pytest.raises(UnsupportedModalityError, match="openai/text-embedding-3-small embeds text only"):
            index.add_images([png()])
        assert len(index) == 0


def test_the_embedder_block_selects_a_multimodal_model_and_the_store_records_the_mix(tmp_path):
    config = {"embedder": {"provider": "voyage", "model": "voyage-multimodal-3.5", "dim": 512, "api_key": "k",
                           "base_url": "http://127.0.0.1:9/v1"},
              "store": {"path": str(tmp_path / "store")}}
    from mrl_retrievers.providers import from_config

    emb = from_config(config)
    assert (emb.model, emb.dim, emb.spec.modalities) == ("voyage-multimodal-3.5", 512, ("image", "text"))
    with MRLIndex(get_provider("fake", dim=16), tmp_path / "fake-store") as index:
        index.add_images([png()])
    manifest = json.loads((tmp_path / "fake-store" / "manifest.json").read_text())
    assert manifest["spec"]["modalities"] == ["image", "text"]


def test_the_readme_voyage_images_snippet_against_the_voyage_emulator(tmp_path, monkeypatch, voyage_server):
    """README "Images beside text" (not run there: it needs a key): the same calls, the real SDK."""
    pytest.importorskip("voyageai")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "charts").mkdir()
    (tmp_path / "charts" / "rainfall.png").write_bytes(png("blue", caption="monthly rainfall"))
    (tmp_path / "charts" / "share.png").write_bytes(png("red", caption="browser share"))
    provider = get_provider("voyage", model="voyage-multimodal-3.5", dim=512, api_key=KEY,
                            base_url=voyage_server.base_url)
    with MRLIndex(provider, "charts-index") as index:
        ids = index.add_images(["charts/rainfall.png", "charts/share.png"])
        hits = index.query("monthly rainfall", k=3, filter={"mrl_modality": "image"})
        similar = index.query_image("charts/rainfall.png", k=3)
    assert {h.id for h in hits} == set(ids) and len(ids) == 2
    assert {h.metadata["mrl_source"] for h in similar} == {"charts/rainfall.png", "charts/share.png"}
    paths = [r.path for r in voyage_server.requests]
    assert paths and set(paths) == {"/v1/multimodalembeddings"}
