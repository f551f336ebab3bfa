"""Loopback emulators of the hosted embedding APIs (OpenAI, Gemini, Voyage, Jina) for tests and benchmarks.

Each speaks its API's wire format on 127.0.0.1 so the real SDKs can be pointed at it, records every
request, and can be scripted to fail (see ``Fault``). Example::

    from mrl_retrievers.emulators import Fault, OpenAIServer

    with OpenAIServer(api_key="k") as server:
        server.faults.push(Fault.rate_limit(retry_after=1))
        ...  # OpenAI(api_key="k", base_url=server.base_url)
        server.requests[0].body["dimensions"]

Standalone (benchmarks): ``python -m mrl_retrievers.emulators.openai_server --port 8000 --latency-ms 100
--rpm 3000 --tpm 1000000`` (likewise ``gemini_server`` and ``voyage_server``).
"""

from __future__ import annotations

import importlib
from typing import Any

from ._base import Fault, FaultScript, LoopbackServer, RateLimiter, RecordedRequest, Reply, estimate_tokens
from ._base import text_vector, unit

# The API modules load on first use (PEP 562), so `python -m mrl_retrievers.emulators.openai_server`
# does not import its own module twice (runpy warns when the package pre-imports it).
_LAZY = {
    "OpenAIServer": "openai_server",
    "GeminiServer": "gemini_server",
    "GeminiModel": "gemini_server",
    "VoyageServer": "voyage_server",
    "VoyageModel": "voyage_server",
    "JinaServer": "jina_server",
    "JinaModel": "jina_server",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Fault",
    "FaultScript",
    "GeminiModel",
    "GeminiServer",
    "JinaModel",
    "JinaServer",
    "LoopbackServer",
    "OpenAIServer",
    "RateLimiter",
    "RecordedRequest",
    "Reply",
    "VoyageModel",
    "VoyageServer",
    "estimate_tokens",
    "text_vector",
    "unit",
]
