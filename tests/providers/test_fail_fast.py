"""Provider mistakes fail at construction, with one exception (issue 14, trap 5).

Regressions: a missing API key surfaced only at the first ``add_texts`` (after the store existed),
as a chained traceback printing the message twice; ``provider = "local"`` with a hosted model name
left in the config spent ~2 minutes retrying a model hub before failing.
"""

from __future__ import annotations

import traceback

import pytest

import mrl_retrievers.providers.local as local_module
from mrl_retrievers import MRLIndex
from mrl_retrievers.errors import AuthenticationError, ConfigError, EmbeddingResponseError
from mrl_retrievers.providers import from_config, get_provider
from tests.providers.test_base import Scripted


def _printed(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


@pytest.mark.parametrize(("provider", "env"), [("openai", "OPENAI_API_KEY"), ("gemini", "GEMINI_API_KEY"),
                                               ("voyage", "VOYAGE_API_KEY")])
def test_missing_key_fails_before_a_store_exists_with_one_message(tmp_path, monkeypatch, provider, env):
    for var in ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "VOYAGE_API_KEY", "MRL_EMBEDDER_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    config = {"embedder": {"provider": provider}, "store": {"path": str(tmp_path / "store")}}
    with pytest.raises(AuthenticationError, match=env) as info:
        MRLIndex.from_config(config)
    assert not (tmp_path / "store").exists()
    printed = _printed(info.value)
    assert printed.count("AuthenticationError: no API key") == 1, printed
    assert "direct cause" not in printed and "During handling" not in printed


def test_our_own_error_inside_a_request_is_not_chained_to_itself():
    bad = EmbeddingResponseError("expected 1 vectors, got 2", provider="scripted", model="m-1")
    with pytest.raises(EmbeddingResponseError) as info:
        Scripted([bad]).embed_documents(["a"])
    assert info.value.__cause__ is None
    assert _printed(info.value).count("EmbeddingResponseError: expected 1 vectors, got 2") == 1


@pytest.mark.parametrize("model", ["text-embedding-3-large", "gemini-embedding-001", "voyage-4"])
def test_local_provider_given_a_hosted_model_says_so_at_once(monkeypatch, model):
    def no_hub(*args, **kwargs):
        raise AssertionError("the model hub must not be asked")

    monkeypatch.setattr(local_module, "_load", no_hub)
    with pytest.raises(ConfigError, match=f"'{model}' is an? (OpenAI|Gemini|Voyage) model, but the provider is 'local'"):
        from_config({"provider": "local", "model": model})


def test_keyless_is_only_for_sdks_that_authenticate_otherwise(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(AuthenticationError):
        get_provider("openai", base_url="http://127.0.0.1:9/v1")  # a compatible server still takes some key
    assert get_provider("openai", base_url="http://127.0.0.1:9/v1", api_key="EMPTY").model
