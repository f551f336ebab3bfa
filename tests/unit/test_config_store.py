"""The [store] block of the one config schema, env overrides, secrets, and the commented example."""

from __future__ import annotations

import pytest

from mrl_retrievers.config import EXAMPLE_TOML, Secret, load_config
from mrl_retrievers.errors import ConfigError


def test_example_toml_parses_into_the_schema(tmp_path):
    (tmp_path / "mrl.toml").write_text(EXAMPLE_TOML)
    settings = load_config(tmp_path / "mrl.toml", env={})
    assert settings.store.backend == "local" and settings.store.prefix_dim == 128 and settings.store.dtype == "float16"


def test_precedence_defaults_file_env_overrides(tmp_path):
    (tmp_path / "mrl.toml").write_text('[store]\npath = "from-file"\nprefix_dim = 64\n')
    env = {"MRL_STORE_PREFIX_DIM": "96", "MRL_STORE_SHORTLIST": "300"}
    settings = load_config(tmp_path / "mrl.toml", env=env, overrides={"store": {"path": "from-flag"}})
    assert (settings.store.path, settings.store.prefix_dim, settings.store.shortlist) == ("from-flag", 96, 300)
    assert settings.store.ef is None  # left to the store's manifest


@pytest.mark.parametrize(
    "block,message",
    [
        ({"store": {"dtype": "int8"}}, "dtype"),
        ({"store": {"backend": "faiss"}}, "backend"),
        ({"store": {"prefix_dim": 0}}, "prefix_dim"),
        ({"store": {"prefix_dim": "wide"}}, "prefix_dim"),
        ({"store": {"colour": "red"}}, "unknown settings"),
        ({"stor": {}}, "unknown config blocks"),
    ],
)
def test_bad_settings_raise_config_error(block, message):
    with pytest.raises(ConfigError, match=message):
        load_config(block, env={})


def test_bad_toml_and_missing_file(tmp_path):
    (tmp_path / "bad.toml").write_text("[store\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml", env={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml", env={})


def test_secrets_never_show():
    settings = load_config({"store": {"backend": "qdrant", "api_key": "canary-123"}}, env={})
    assert isinstance(settings.store.api_key, Secret)
    assert settings.store.api_key.get_secret_value() == "canary-123"
    for text in (repr(settings), str(settings), repr(settings.to_dict())):
        assert "canary-123" not in text
