"""MRLIndex: provider + store from one config; spec enforcement; resumable steps; sync == async."""

from __future__ import annotations

import uuid

import pytest

from mrl_retrievers import MRLIndex, get_provider
from mrl_retrievers.errors import ConfigError, InvalidInputError, SpecMismatchError

TEXTS = [f"document number {i} about topic {i % 7}" for i in range(120)]


def config(tmp_path, **embedder):
    return {"embedder": {"provider": "fake", "dim": 48, **embedder}, "store": {"path": str(tmp_path / "store"), "prefix_dim": 16}}


def test_from_config_add_query_reopen(tmp_path):
    with MRLIndex.from_config(config(tmp_path)) as index:
        ids = index.add_texts(TEXTS[:10], metadatas=[{"n": i} for i in range(10)])
        assert all(uuid.UUID(i).version == 4 for i in ids)
        hit = index.query(TEXTS[3], k=1)[0]
        assert (hit.id, hit.text, hit.metadata) == (ids[3], TEXTS[3], {"n": 3})
        assert index.query(TEXTS[3], k=3, filter={"n": {"$gte": 5}})[0].metadata["n"] >= 5
    with MRLIndex.from_config(config(tmp_path)) as again:
        assert len(again) == 10 and again.query(TEXTS[3], k=1)[0].id == ids[3]


def test_toml_file_and_overrides(tmp_path):
    path = tmp_path / "mrl.toml"
    path.write_text(f'[embedder]\nprovider = "fake"\ndim = 32\n[store]\npath = "{tmp_path / "s"}"\n')
    with MRLIndex.from_config(path, overrides={"embedder": {"dim": 24}}) as index:
        assert index.store.full_dim == 24


@pytest.mark.parametrize("change", [{"dim": 32}, {"model": "fake-other"}])
def test_opening_with_another_provider_spec_fails_clearly(tmp_path, change):
    with MRLIndex.from_config(config(tmp_path)) as index:
        index.add_texts(["the store is created with its first vectors"])
    with pytest.raises((SpecMismatchError, ConfigError)) as info:
        MRLIndex.from_config(config(tmp_path, **change))
    assert "store" in str(info.value)


def test_reindex_needs_no_provider_call(tmp_path):
    provider = get_provider("fake", dim=48)
    with MRLIndex(provider, str(tmp_path / "s")) as index:
        index.add_texts(TEXTS, ids=[str(i) for i in range(len(TEXTS))])
        before = [h.id for h in index.store.search_exact(provider.embed_query("topic 3"), k=5)]
        calls = provider.calls
        index.reindex(prefix_dim=8)
        assert provider.calls == calls and index.store.prefix_dim == 8
        assert [h.id for h in index.store.search_exact(provider.embed_query("topic 3"), k=5)] == before


def test_failed_step_leaves_earlier_steps_and_nothing_half_written(tmp_path):
    def fail_on_third(texts, kind, call_number):
        if call_number == 3:
            raise RuntimeError("provider down")

    provider = get_provider("fake", dim=48, batch_size=20)
    provider.fail = fail_on_third
    with MRLIndex(provider, str(tmp_path / "s")) as index:
        ids = [str(i) for i in range(len(TEXTS))]
        with pytest.raises(Exception, match="provider down"):
            index.add_texts(TEXTS, ids=ids, step=40)
        # step 1 (calls 1-2) committed; step 2 (calls 3-4) failed whole
        assert sorted(int(r.id) for r in index.get(ids)) == list(range(40))


async def test_async_matches_sync(tmp_path):
    with MRLIndex(get_provider("fake", dim=48), str(tmp_path / "a")) as a, MRLIndex(get_provider("fake", dim=48), str(tmp_path / "b")) as b:
        ids = [str(i) for i in range(len(TEXTS))]
        a.add_texts(TEXTS, ids=ids)
        await b.aadd_texts(TEXTS, ids=ids)
        for q in ("topic 2", "document number 7"):
            sync_hits = [(h.id, round(h.score, 6)) for h in a.query(q, k=5)]
            async_hits = [(h.id, round(h.score, 6)) for h in await b.aquery(q, k=5)]
            assert sync_hits == async_hits


def test_bad_batches_are_rejected_before_any_call(tmp_path):
    provider = get_provider("fake", dim=48)
    with MRLIndex(provider, str(tmp_path / "s")) as index:
        for args in (("one string",), (["a", 3],), (["a", "b"], None, ["x", "x"]), (["a"], [{}, {}])):
            with pytest.raises(InvalidInputError):
                index.add_texts(*args)
        with pytest.raises(InvalidInputError):
            index.query(42)
        assert provider.calls == 0 and len(index) == 0


def test_every_query_method_passes_the_effort_keywords_to_the_store(tmp_path):
    """``query``/``aquery`` (and the image queries) take the store's effort keywords: ``ef`` with
    ``shortlist`` (the expert override) and ``target_recall``. ``aquery`` had no ``ef``: the bench's
    async rows could not time the setting its sync rows timed."""
    import asyncio

    from tests.index.test_multimodal_index import png

    with MRLIndex.from_config(config(tmp_path)) as index:
        index.add_texts(TEXTS[:60], ids=[str(i) for i in range(60)])
        index.add_images([png("red")], ids=["img"])
        store = index.store
        seen = []
        real = store.search

        def spy(vector, k=10, shortlist=None, filter=None, **effort):
            seen.append((shortlist, effort))
            return real(vector, k, shortlist, filter, **effort)

        store.search = spy
        vector = index.embed_query(TEXTS[5])
        expected = [h.id for h in real(vector, k=3, shortlist=20, ef=77)]
        assert [h.id for h in index.query(TEXTS[5], k=3, shortlist=20, ef=77)] == expected
        assert [h.id for h in asyncio.run(index.aquery(TEXTS[5], k=3, shortlist=20, ef=77))] == expected
        index.query(TEXTS[5], k=3, target_recall=0.95)
        asyncio.run(index.aquery(TEXTS[5], k=3, target_recall=1.0))
        index.query_image(png("red"), k=1, shortlist=8, ef=9)
        asyncio.run(index.aquery_image(png("red"), k=1, target_recall=0.9))
        index.query(TEXTS[5], k=3)
        assert seen == [(20, {"ef": 77}), (20, {"ef": 77}), (None, {"target_recall": 0.95}), (None, {"target_recall": 1.0}),
                        (8, {"ef": 9}), (None, {"target_recall": 0.9}), (None, {})]
        with pytest.raises(InvalidInputError, match="not both"):
            index.query(TEXTS[5], k=3, ef=40, target_recall=0.99)
        with pytest.raises(InvalidInputError):
            asyncio.run(index.aquery(TEXTS[5], k=3, ef=0))
