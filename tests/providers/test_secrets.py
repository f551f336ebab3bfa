"""A canary key through every code path, at DEBUG logging: it must appear nowhere.

Checked: reprs and strs of providers and specs, log records and anything printed (all loggers, the
SDKs' own included), exception texts with their tracebacks and chained causes, config dumps,
pickling, and every file written (cache database with its WAL, rotation files).
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import traceback
from pathlib import Path

import numpy as np
import pytest

from mrl_retrievers.config import Secret, load_config
from mrl_retrievers.errors import AuthenticationError, MRLError
from mrl_retrievers.providers import from_config, get_provider
from mrl_retrievers.providers.base import RetryPolicy

CANARY = "sk-canary-7f3a9c2e1b8d4f60a5e7"
FAST = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0)
ENV_VARS = {"openai": "OPENAI_API_KEY", "gemini": "GEMINI_API_KEY", "voyage": "VOYAGE_API_KEY",
            "jina": "JINA_API_KEY"}
MODELS = {"openai": ("text-embedding-3-small", 64), "gemini": ("gemini-embedding-001", 128),
          "voyage": ("voyage-4", 256), "jina": ("jina-embeddings-v4", 256)}


def _server(name: str, key: str):
    servers = pytest.importorskip("mrl_retrievers.emulators")
    cls = {"openai": servers.OpenAIServer, "gemini": servers.GeminiServer, "voyage": servers.VoyageServer,
           "jina": servers.JinaServer}[name]
    return cls(api_key=key)


def _assert_clean(*things: object) -> None:
    for thing in things:
        text = thing if isinstance(thing, str) else repr(thing)
        assert CANARY not in text, f"canary leaked in: {text[:300]}"


def _exception_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) + repr(exc) + str(exc)


@pytest.fixture
def debug_logs(caplog):
    caplog.set_level(logging.DEBUG)  # root: the SDKs' loggers (openai, httpx, google_genai...) too
    return caplog


def _files_text(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


@pytest.mark.parametrize("name", ["openai", "gemini", "voyage", "jina"])
@pytest.mark.parametrize("source", ["argument", "env"])
def test_canary_never_leaks_from_hosted_providers(name, source, tmp_path, monkeypatch, debug_logs, capfd):
    pytest.importorskip({"openai": "openai", "gemini": "google.genai", "voyage": "voyageai", "jina": "httpx"}[name])
    from mrl_retrievers.emulators import Fault

    for var in ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "VOYAGE_API_KEY", "JINA_API_KEY",
                "JINAAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    model, dim = MODELS[name]
    cache = tmp_path / "cache.sqlite"
    with _server(name, CANARY) as server:
        kwargs = dict(model=model, dim=dim, base_url=server.base_url, retry=FAST, timeout=5.0, cache=cache)
        if source == "env":
            monkeypatch.setenv(ENV_VARS[name], CANARY)
        else:
            kwargs["api_key"] = CANARY
        emb = get_provider(name, **kwargs)
        server.faults.push(Fault.rate_limit(retry_after=0))  # a retry, logged at DEBUG
        vectors = emb.embed_documents(["first text", "second text"])
        asyncio.run(emb.aembed_query("a query"))
        assert vectors.shape == (2, dim)
        _assert_clean(emb, str(emb), emb.inner, emb.spec, json.dumps(emb.spec.to_dict()))
        with pytest.raises((TypeError, pickle.PicklingError, AttributeError)):
            pickle.dumps(emb.inner)
        emb.close()

    # The wrong key: the server refuses it; our error and its traceback must not show ours.
    with _server(name, "the-right-key") as server:
        kwargs = dict(model=model, dim=dim, base_url=server.base_url, retry=FAST, timeout=5.0)
        if source == "argument":
            kwargs["api_key"] = CANARY
        bad = get_provider(name, **kwargs)
        with pytest.raises(AuthenticationError) as info:
            bad.embed_documents(["x"])
        _assert_clean(_exception_text(info.value))
        with pytest.raises(AuthenticationError) as ainfo:
            asyncio.run(bad.aembed_documents(["x"]))
        _assert_clean(_exception_text(ainfo.value))
        bad.close()

    _assert_clean("\n".join(f"{r.name}: {r.getMessage()} {r.args!r}" for r in debug_logs.records))
    captured = capfd.readouterr()
    _assert_clean(captured.out, captured.err)
    assert CANARY.encode() not in _files_text(tmp_path)


def test_canary_in_config_dumps_and_errors(tmp_path, monkeypatch):
    path = tmp_path / "mrl.toml"
    path.write_text(f'[embedder]\nprovider = "fake"\ndim = 8\napi_key = "{CANARY}"\n')
    settings = load_config(path, env={})
    assert isinstance(settings.embedder.api_key, Secret)
    _assert_clean(settings, settings.embedder, str(settings.embedder), settings.to_dict(),
                  json.dumps(settings.to_dict()))
    with pytest.raises(MRLError) as info:  # the fake provider refuses a key: the message hides it
        from_config(settings)
    _assert_clean(_exception_text(info.value))
    monkeypatch.setenv("MRL_EMBEDDER_API_KEY", CANARY)
    _assert_clean(load_config({}).to_dict(), load_config({}))
    with pytest.raises(TypeError):
        pickle.dumps(settings)


def test_canary_through_scripted_retries_at_debug(debug_logs):
    """Error texts that echo the key (some APIs do) are scrubbed in logs and in the final error."""
    from tests.providers.test_base import HTTPFail, Scripted

    p = Scripted([HTTPFail(500, f"upstream said key={CANARY}")] * 2 + [HTTPFail(401, f"bad key {CANARY}")],
                 api_key=CANARY)
    with pytest.raises(AuthenticationError) as info:
        p.embed_documents(["a"])
    _assert_clean(_exception_text(info.value), p, str(p))
    messages = [r.getMessage() for r in debug_logs.records]
    assert any("retrying" in m for m in messages)  # the retries were logged...
    _assert_clean("\n".join(messages))  # ...without the key


def test_local_files_written_hold_no_key(tmp_path):
    emb = get_provider("fake", dim=8, cache=tmp_path / "c.sqlite")
    emb.embed_documents([CANARY[:3] + " text"])
    emb.close()
    assert CANARY.encode() not in _files_text(tmp_path)
    assert np.isfinite(np.zeros(1)).all()
