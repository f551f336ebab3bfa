"""A canary API key through every path of the package, at DEBUG logging: it must appear nowhere.

tests/providers/test_secrets.py covers the providers alone; this file follows the key through what
sits on top of them: ``get_provider`` -> ``MRLIndex`` -> a store created with the provider's spec;
``MRLIndex.from_config`` from a TOML file, from the provider's env var and from
``MRL_EMBEDDER_API_KEY``; the command line (``index``, ``query``, ``info``, ``verify``); errors from
a loopback server that echoes the key in its error bodies (retried 5xx, 400, 401, 429).

Scanned: repr and str of every object met (and of their ``vars()``), every log record of every
logger (the SDKs' and httpx's included) with its arguments and exception text, everything printed
to stdout/stderr, exception texts with their tracebacks and chained causes, config dumps, store
stats and verify reports, and every byte of every file written under the test's directory
(manifest, SQLite with its WAL, vector and index files, the embedding cache) except the config file
the test itself wrote the key into. Pass: 0 occurrences.

The canary at the bottom proves the scan can fail: with a build whose provider repr shows the key,
the same scan must report it.
"""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path

import pytest

from mrl_retrievers import MRLIndex, MRLStore, get_provider, load_config
from mrl_retrievers.cli import main as cli
from mrl_retrievers.errors import (
    AuthenticationError,
    ProviderError,
    ProviderRequestError,
    ProviderServerError,
    RateLimitError,
)
from mrl_retrievers.providers import from_config
from mrl_retrievers.providers.base import RetryPolicy
from mrl_retrievers.providers.hosted import HostedProvider
from tests.providers.servers.fixtures import record_waits

CANARY = "sk-canary-reliability-5d1e93b7a2c4f0"
FAST = RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0)
PROVIDERS = {  # name: (server class name, model, dim, env var read by the provider, SDK module)
    "openai": ("OpenAIServer", "text-embedding-3-small", 64, "OPENAI_API_KEY", "openai"),
    "gemini": ("GeminiServer", "gemini-embedding-001", 128, "GEMINI_API_KEY", "google.genai"),
    "voyage": ("VoyageServer", "voyage-4", 256, "VOYAGE_API_KEY", "voyageai"),
}
KEY_ENV_VARS = ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "VOYAGE_API_KEY",
                "MRL_EMBEDDER_API_KEY", "MRL_STORE_API_KEY")
SDK_LOGGERS = ("", "mrl_retrievers", "openai", "httpx", "httpcore", "httpx2", "httpcore2", "google_genai", "google",
               "voyageai", "urllib3", "aiohttp", "requests")
TEXTS = ["cats purr on warm laps", "dogs bark at the mail", "matryoshka vectors nest", "prefixes carry meaning"]


class Leaks:
    """Collects every place the canary was seen."""

    def __init__(self) -> None:
        self.places: list[str] = []

    def text(self, where: str, value: object) -> None:
        text = value if isinstance(value, str) else repr(value)
        if CANARY in text:
            i = text.index(CANARY)
            self.places.append(f"{where}: ...{text[max(0, i - 80): i + 40]}...")

    def objects(self, **objects: object) -> None:
        for name, obj in objects.items():
            self.text(f"repr({name})", repr(obj))
            self.text(f"str({name})", str(obj))
            if hasattr(obj, "__dict__"):
                self.text(f"vars({name})", repr(vars(obj)))

    def exception(self, where: str, exc: BaseException) -> None:
        self.text(f"{where} (traceback)", "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        self.text(f"{where} (repr/str/args)", f"{exc!r} {exc} {exc.args!r}")
        chained, depth = exc, 0
        while chained is not None and depth < 10:  # what Python shows: __cause__, or __context__ unless suppressed
            self.text(f"{where} (chained {type(chained).__name__})", f"{chained!r} {chained}")
            chained = chained.__cause__ or (None if chained.__suppress_context__ else chained.__context__)
            depth += 1
        hidden, depth = exc, 0
        while hidden is not None and depth < 10:  # and what a debugger or a logging tool can still reach
            self.text(f"{where} (kept {type(hidden).__name__})", f"{hidden!r} {hidden}")
            hidden = hidden.__cause__ or hidden.__context__
            depth += 1

    def logs(self, records: list[logging.LogRecord]) -> None:
        for r in records:
            self.text(f"log {r.name}", f"{r.getMessage()} {r.args!r} {r.exc_text or ''}")
            if r.exc_info and r.exc_info[1] is not None:
                self.exception(f"log {r.name} exc_info", r.exc_info[1])

    def files(self, root: Path, skip: set[Path]) -> None:
        for path in sorted(root.rglob("*")):
            if path.is_file() and path not in skip and CANARY.encode() in path.read_bytes():
                self.places.append(f"file {path.relative_to(root)}")


@pytest.fixture
def debug_everything(caplog, monkeypatch):
    for var in KEY_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    for name in SDK_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _server(name: str, key: str):
    from mrl_retrievers import emulators as servers

    return getattr(servers, PROVIDERS[name][0])(api_key=key)


def _echo(server, status: int):
    """A fault whose error body and a response header repeat the key back (some gateways do).
    Regression (issue 13, failure 14): the header reached httpcore's DEBUG records and the SDK
    exception kept as ``__context__`` of ours."""
    from mrl_retrievers.emulators import Fault

    reply = server.error_reply(status, f"the key {CANARY} was refused by the upstream (status {status})")
    return Fault.http(status, body=reply.body, headers={"x-upstream-authorization": f"Bearer {CANARY}"})


def _toml(path: Path, name: str, server, store: Path, cache: Path, with_key: bool) -> Path:
    _, model, dim, _, _ = PROVIDERS[name]
    key_line = f'api_key = "{CANARY}"\n' if with_key else ""
    path.write_text(
        f'[embedder]\nprovider = "{name}"\nmodel = "{model}"\ndim = {dim}\n{key_line}base_url = "{server.base_url}"\n'
        f'cache = "{cache}"\nmax_retries = 0\ntimeout = 5\n\n[store]\npath = "{store}"\nprefix_dim = 32\nexact_below = 0\n'
        + (f'api_key = "{CANARY}"\n' if with_key else "")  # the Qdrant key: a local store must ignore it
    )
    return path


def run_everything(name: str, tmp_path: Path, monkeypatch, capsys) -> tuple[Leaks, list[object]]:
    """Drive the key through every path; return the leaks found outside logs/files and what was seen."""
    from mrl_retrievers.emulators import Fault

    _, model, dim, env_var, _ = PROVIDERS[name]
    leaks, seen = Leaks(), []
    with _server(name, CANARY) as server:
        # 1. get_provider(api_key=...) -> MRLIndex -> a store created with the provider's spec.
        emb = get_provider(name, model=model, dim=dim, api_key=CANARY, base_url=server.base_url, retry=FAST,
                           timeout=5.0, cache=tmp_path / "cache.sqlite")
        record_waits(emb.inner)
        index = MRLIndex(emb, tmp_path / "store-arg", exact_below=0)
        server.faults.push(Fault.rate_limit(retry_after=0))  # a retry, logged at DEBUG
        index.add_texts(TEXTS, metadatas=[{"i": i} for i in range(len(TEXTS))], ids=[f"t{i}" for i in range(len(TEXTS))])
        hits = index.query("purring cats", k=2)
        records = index.get(["t0"], include_vectors=True)
        for status, error in ((500, ProviderServerError), (400, ProviderRequestError), (401, AuthenticationError),
                              (429, RateLimitError)):
            server.faults.push(_echo(server, status), times=FAST.max_attempts)
            with pytest.raises(error) as info:
                index.add_texts([f"text for status {status}"])
            leaks.exception(f"add_texts error {status}", info.value)
            server.faults.clear()
        report = MRLStore.verify(tmp_path / "store-arg")
        leaks.objects(index=index, embedder=index.embedder, inner=index.embedder.inner, store=index.store,
                      cache=index.embedder.cache, spec=index.store.spec, manifest=index.store.manifest,
                      stats=index.store.stats(), report=report, hit=hits[0], record=records[0])
        leaks.text("spec.to_dict", json.dumps(index.store.spec.to_dict()))
        seen += [index, report]
        index.close()

        # 2. MRLIndex.from_config(TOML with the key), then the config dumps.
        toml = _toml(tmp_path / "with-key.toml", name, server, tmp_path / "store-toml", tmp_path / "cache.sqlite", True)
        settings = load_config(toml, env={})
        leaks.objects(settings=settings, embedder_settings=settings.embedder)
        leaks.text("settings.to_dict", json.dumps(settings.to_dict()))
        with MRLIndex.from_config(toml) as index:
            index.add_texts(TEXTS)
            leaks.objects(config_index=index, config_inner=index.embedder.inner)
            server.faults.push(_echo(server, 500))
            with pytest.raises(ProviderError) as info:
                index.query("a query that meets a 500")
            leaks.exception("query error", info.value)

        # 3. the key from the provider's env var, from MRL_EMBEDDER_API_KEY, and a store key from
        #    MRL_STORE_API_KEY (config without a key).
        bare = _toml(tmp_path / "no-key.toml", name, server, tmp_path / "store-env", tmp_path / "cache-env.sqlite", False)
        for variables in ((env_var,), ("MRL_EMBEDDER_API_KEY",), (env_var, "MRL_STORE_API_KEY")):
            label = "+".join(variables)
            for var in variables:
                monkeypatch.setenv(var, CANARY)
            settings = load_config(bare)
            leaks.objects(**{f"settings({label})": settings})
            leaks.text(f"settings({label}).to_dict", json.dumps(settings.to_dict()))
            provider = from_config(settings)
            leaks.objects(**{f"provider({label})": provider})
            with MRLIndex.from_config(bare) as index:
                index.add_texts(TEXTS[:2])
                leaks.objects(**{f"index({label})": index})
            for var in variables:
                monkeypatch.delenv(var)

        # 4. the command line (prints and exit codes), a failing query included.
        docs = tmp_path / "docs"
        docs.mkdir()
        (docs / "a.txt").write_text("\n\n".join(TEXTS))
        codes = [cli(["index", str(docs), "--config", str(toml), "-q"]),
                 cli(["query", "cats", "--config", str(toml), "--json"]),
                 cli(["info", str(tmp_path / "store-toml"), "--json"]),
                 cli(["verify", str(tmp_path / "store-toml")])]
        server.faults.push(_echo(server, 400))
        codes.append(cli(["query", "a question not in the cache", "--config", str(toml)]))
        assert codes == [0, 0, 0, 0, 2], codes
        captured = capsys.readouterr()
        leaks.text("stdout", captured.out)
        leaks.text("stderr", captured.err)
    leaks.files(tmp_path, skip={tmp_path / "with-key.toml"})
    return leaks, seen


def _scan(name, tmp_path, monkeypatch, capsys, caplog) -> tuple[list[str], list[str]]:
    """(leaks anywhere but third-party log records, leaks in third-party log records)."""
    pytest.importorskip(PROVIDERS[name][4])
    leaks, _ = run_everything(name, tmp_path, monkeypatch, capsys)
    assert caplog.records, "DEBUG logging was not captured"
    assert any(r.name.startswith("mrl_retrievers") for r in caplog.records)
    ours = [r for r in caplog.records if r.name.startswith("mrl_retrievers")]
    leaks.logs(ours)
    sdk = Leaks()
    sdk.logs([r for r in caplog.records if not r.name.startswith("mrl_retrievers")])
    return leaks.places, sdk.places


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_canary_key_appears_nowhere(name, tmp_path, monkeypatch, capsys, debug_everything):
    """Reprs, our logs, exceptions, dumps, prints and files: 0 occurrences, even when the server
    echoes the key in its error bodies."""
    places, _ = _scan(name, tmp_path, monkeypatch, capsys, debug_everything)
    assert not places, "\n".join(places)


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_canary_key_not_in_sdk_logs(name, tmp_path, monkeypatch, capsys, debug_everything):
    """The SDKs' own log records (openai, httpx, google-genai, voyageai) at DEBUG: 0 occurrences.
    Regression (F12 in the notes): voyageai logs API error bodies at INFO, key echoes included."""
    _, sdk_places = _scan(name, tmp_path, monkeypatch, capsys, debug_everything)
    assert not sdk_places, "\n".join(sdk_places)


def test_canary_a_key_shown_by_repr_is_caught(tmp_path, monkeypatch, capsys, debug_everything):
    """A deliberately broken build (the provider's repr shows its key) must be caught by the scan."""
    pytest.importorskip("openai")
    monkeypatch.setattr(HostedProvider, "__repr__",
                        lambda self: f"{type(self).__name__}(model={self.model!r}, key={self._api_key.get_secret_value()!r})")
    leaks, _ = run_everything("openai", tmp_path, monkeypatch, capsys)
    assert any(place.startswith(("repr(inner)", "repr(embedder)")) for place in leaks.places), leaks.places


def test_scan_sees_the_key_where_it_must_be(tmp_path):
    """The file scan is not vacuous: the config file the test wrote the key into is found."""
    (tmp_path / "mrl.toml").write_text(f'[embedder]\napi_key = "{CANARY}"\n')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "blob").write_bytes(b"\x00" + CANARY.encode() + b"\xff")
    leaks = Leaks()
    leaks.files(tmp_path, skip=set())
    assert sorted(leaks.places) == ["file mrl.toml", "file sub/blob"]
