"""Pytest fixtures and helpers for the loopback provider servers.

Imported by ``tests/providers/conftest.py`` (``from tests.providers.servers.fixtures import *``).

* ``openai_server`` / ``gemini_server`` / ``voyage_server`` / ``jina_server``: a fresh emulator per
  test (key ``KEY``), stopped afterwards.
* ``hosted``: one ``HostedCase`` per hosted provider (parametrized), bundling its server, a provider
  factory pointed at it, and the vectors the server is expected to return, so one test body covers
  every SDK.
* ``record_waits(provider)``: replaces the provider's sleeps by recorders (retries in tests cost no
  time; the waited delays can be asserted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from mrl_retrievers.providers.base import RetryPolicy

from mrl_retrievers.emulators import GeminiServer, JinaServer, LoopbackServer, OpenAIServer, VoyageServer, unit

KEY = "test-key-0123456789"
GEMINI2_PREFIX = {"query": "task: search result | query: ", "document": "title: none | text: "}
GEMINI_TASK = {"query": "RETRIEVAL_QUERY", "document": "RETRIEVAL_DOCUMENT"}
JINA_TASK = {"query": "retrieval.query", "document": "retrieval.passage"}
# Tiny, deterministic retries: tests assert waits through record_waits, they never sleep.
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, jitter=0.5)

__all__ = [
    "FAST_RETRY", "GEMINI2_PREFIX", "GEMINI_TASK", "HOSTED_CASES", "HostedCase", "JINA_TASK", "KEY",
    "MULTIMODAL_CASES", "gemini_server", "hosted", "hosted_case", "jina_server", "multimodal", "openai_server",
    "record_waits", "voyage_server",
]


def _serve(server: LoopbackServer) -> Iterator[Any]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    yield from _serve(OpenAIServer(api_key=KEY, deployments={"my-embedder": "text-embedding-3-large"}))


@pytest.fixture
def gemini_server() -> Iterator[GeminiServer]:
    yield from _serve(GeminiServer(api_key=KEY))


@pytest.fixture
def voyage_server() -> Iterator[VoyageServer]:
    yield from _serve(VoyageServer(api_key=KEY))


@pytest.fixture
def jina_server() -> Iterator[JinaServer]:
    yield from _serve(JinaServer(api_key=KEY))


def record_waits(provider: Any) -> list[float]:
    """Make ``provider``'s retry sleeps (sync and async) record their delay instead of sleeping."""
    waits: list[float] = []

    async def asleep(delay: float) -> None:
        waits.append(delay)

    provider._sleep = waits.append
    provider._asleep = asleep
    return waits


@dataclass
class HostedCase:
    """One hosted provider wired to its emulator.

    Attributes:
        name: registry name; ``label``: test id (e.g. "gemini-2").
        server: the running emulator.
        model / dim: what the provider is built with.
        build: ``build(**options) -> provider`` pointed at the server with key ``KEY``.
        expected: ``expected(text, kind) -> unit vector`` the provider must return.
        marking: ``marking(request) -> list of markers`` found in one recorded request (task types,
            input types or prefixes), to check queries and documents are told apart on the wire.
        expected_input: multimodal cases: ``expected_input(parts, kind) -> unit vector`` for one
            input given as a tuple of parts (``str`` text, ``bytes`` image, ``("url", u)`` image URL).
    """

    name: str
    label: str
    server: LoopbackServer
    model: str
    dim: int
    build: Callable[..., Any]
    expected: Callable[[str, str], np.ndarray]
    marking: Callable[[Any], list[Any]] = field(repr=False, default=lambda req: [])
    expected_input: Callable[[tuple[Any, ...], str], np.ndarray] | None = field(repr=False, default=None)

    def provider(self, **options: Any) -> Any:
        options.setdefault("retry", FAST_RETRY)
        options.setdefault("timeout", 5.0)
        return self.build(**options)


def _openai_case(server: OpenAIServer) -> HostedCase:
    from mrl_retrievers.providers.openai import OpenAIProvider

    model, dim = "text-embedding-3-large", 256
    return HostedCase(
        "openai", "openai", server, model, dim,
        build=lambda **kw: OpenAIProvider(model=model, dim=dim, api_key=KEY, base_url=server.base_url, **kw),
        expected=lambda text, kind: server.expected_vector(text, model=model, dim=dim),
    )


def _gemini_case(server: GeminiServer, model: str) -> HostedCase:
    from mrl_retrievers.providers.gemini import GeminiProvider

    dim = 768

    def expected(text: str, kind: str) -> np.ndarray:
        if model == "gemini-embedding-2":
            return unit(server.expected_vector(GEMINI2_PREFIX[kind] + text, model=model, dim=dim))
        return unit(server.expected_vector(text, model=model, dim=dim, task_type=GEMINI_TASK[kind]))

    def expected_input(parts: tuple[Any, ...], kind: str) -> np.ndarray:
        from mrl_retrievers.emulators.gemini_server import image_identity  # noqa: PLC0415

        texts = [i for i, p in enumerate(parts) if isinstance(p, str)]
        pieces = [(GEMINI2_PREFIX[kind] if texts and i == texts[0] else "") + p if isinstance(p, str)
                  else image_identity(p) for i, p in enumerate(parts)]
        return unit(server.expected_vector("\n".join(pieces), model=model, dim=dim))

    def marking(req: Any) -> list[Any]:
        items = req.body["requests"]
        if model == "gemini-embedding-2":
            texts = [next((p["text"] for p in i["content"]["parts"] if "text" in p), "") for i in items]
            return [next((p for p in GEMINI2_PREFIX.values() if t.startswith(p)), None) for t in texts if t]
        return [i.get("taskType") for i in items]

    label = "gemini-2" if model == "gemini-embedding-2" else "gemini-001"
    return HostedCase(
        "gemini", label, server, model, dim,
        build=lambda **kw: GeminiProvider(model=model, dim=dim, api_key=KEY, base_url=server.base_url, **kw),
        expected=expected, marking=marking, expected_input=expected_input if model == "gemini-embedding-2" else None,
    )


def _voyage_case(server: VoyageServer) -> HostedCase:
    from mrl_retrievers.providers.voyage import VoyageProvider

    model, dim = "voyage-4", 512
    return HostedCase(
        "voyage", "voyage", server, model, dim,
        build=lambda **kw: VoyageProvider(model=model, dim=dim, api_key=KEY, base_url=server.base_url, **kw),
        expected=lambda text, kind: server.expected_vector(text, model=model, dim=dim, input_type=kind),
        marking=lambda req: [req.body["input_type"]],
    )


def _voyage_multimodal_case(server: VoyageServer) -> HostedCase:
    from mrl_retrievers.providers.voyage import VoyageProvider

    model, dim = "voyage-multimodal-3.5", 512

    def expected_input(parts: tuple[Any, ...], kind: str) -> np.ndarray:
        return server.expected_vector(server.multimodal_identity(*parts), model=model, dim=dim, input_type=kind)

    return HostedCase(
        "voyage", "voyage-mm", server, model, dim,
        build=lambda **kw: VoyageProvider(model=model, dim=dim, api_key=KEY, base_url=server.base_url, **kw),
        expected=lambda text, kind: expected_input((text,), kind),
        marking=lambda req: [req.body["input_type"]], expected_input=expected_input,
    )


def _jina_case(server: JinaServer) -> HostedCase:
    from mrl_retrievers.providers.jina import JinaProvider

    model, dim = "jina-embeddings-v4", 512

    def expected_input(parts: tuple[Any, ...], kind: str) -> np.ndarray:
        (part,) = parts  # Jina takes one text or one image per input
        identity = part if isinstance(part, str) else "url:" + part[1] if isinstance(part, tuple) \
            else server.image_identity(part)
        return unit(server.expected_vector(identity, model=model, dim=dim, task=JINA_TASK[kind]))

    return HostedCase(
        "jina", "jina", server, model, dim,
        build=lambda **kw: JinaProvider(model=model, dim=dim, api_key=KEY, base_url=server.base_url, **kw),
        expected=lambda text, kind: expected_input((text,), kind),
        marking=lambda req: [req.body["task"]], expected_input=expected_input,
    )


HOSTED_CASES = ("openai", "gemini-001", "gemini-2", "voyage", "voyage-mm", "jina")
# The hosted cases whose model takes images (each has ``expected_input``).
MULTIMODAL_CASES = ("gemini-2", "voyage-mm", "jina")


def hosted_case(label: str) -> Iterator[HostedCase]:
    """Start the emulator of ``label`` and yield its case (for fixtures and direct use)."""
    if label == "openai":
        server: LoopbackServer = OpenAIServer(api_key=KEY)
        make: Callable[[Any], HostedCase] = _openai_case
    elif label.startswith("gemini"):
        server = GeminiServer(api_key=KEY)
        model = "gemini-embedding-2" if label == "gemini-2" else "gemini-embedding-001"
        make = lambda s: _gemini_case(s, model)  # noqa: E731
    elif label == "jina":
        server = JinaServer(api_key=KEY)
        make = _jina_case
    else:
        server = VoyageServer(api_key=KEY)
        make = _voyage_multimodal_case if label == "voyage-mm" else _voyage_case
    for running in _serve(server):
        yield make(running)


@pytest.fixture(params=HOSTED_CASES)
def hosted(request: pytest.FixtureRequest) -> Iterator[HostedCase]:
    """Each hosted provider in turn, wired to a fresh emulator."""
    yield from hosted_case(request.param)


@pytest.fixture(params=MULTIMODAL_CASES)
def multimodal(request: pytest.FixtureRequest) -> Iterator[HostedCase]:
    """Each hosted multimodal model in turn, wired to a fresh emulator."""
    yield from hosted_case(request.param)
