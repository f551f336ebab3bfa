"""Gemini embeddings through ``google-genai``: the Developer API (API key) or Vertex AI (passed through).

Request building and response parsing are pure functions shared by the sync and async paths. Three
upstream quirks shape this module:

* gemini-embedding-2 takes **no task type**: queries and documents are marked by prompt prefixes in
  the text (``task: search result | query: ...`` / ``title: none | text: ...``); gemini-embedding-001
  takes ``task_type`` RETRIEVAL_QUERY / RETRIEVAL_DOCUMENT.
* google-genai merges a plain list of strings into ONE Content for gemini-embedding-2 (one vector
  for the whole list, ``t_contents`` in the SDK): every text is wrapped in its own ``Content``.
* gemini-embedding-001 vectors are unit length only at 3072; shorter ones are renormalized (by
  ``Provider._finish``, as every provider's are).

gemini-embedding-2 is multimodal: an image travels as an ``inline_data`` part (``mime_type``
image/png or image/jpeg, base64 ``data``; no URLs on the Developer API), at most 6 images in one
``Content``, and texts and images interleave in one ``Content`` (one embedding). The prompt prefix
goes before the first text part of an input; an image-only input carries no prefix (as Google's
image examples send it).

Example:
    >>> req = build_request("gemini-embedding-2", ["a cat"], "query", 768)
    >>> req.texts, req.task_type
    (['task: search result | query: a cat'], None)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from ..config import Secret
from ..errors import AuthenticationError, EmbeddingResponseError, ProviderConnectionError
from ..errors import ProviderTimeoutError
from ..media import Content, Image
from ._clients import ClientPool
from .base import Kind, error_for_status, make_error, parse_retry_after, require
from .hosted import HostedProvider
from .models import ModelInfo, lookup
from .multimodal import item_tokens

PROVIDER = "gemini"
_QUERY_PREFIX = "task: search result | query: "
_DOCUMENT_PREFIX = "title: none | text: "
_TASK_TYPES = {"query": "RETRIEVAL_QUERY", "document": "RETRIEVAL_DOCUMENT"}
_MAX_BATCH = 100  # batchEmbedContents takes at most 100 requests


# --- pure request / response functions ---------------------------------------------------------


@dataclass(frozen=True)
class GeminiRequest:
    """One batch as data: the (possibly prefixed) inputs, the task type and the width to ask for.

    ``texts`` holds one input each: a ``str``, or for multimodal models an ``Image`` or ``Content``.
    """

    model: str
    texts: list[Any]
    task_type: str | None
    output_dimensionality: int | None


@dataclass(frozen=True)
class Marking:
    """How queries and documents are told apart: a task type, or a text prefix per side."""

    kind: str  # "task_type" | "prefix"
    query: str
    document: str


def marking_for(model: str, info: ModelInfo | None) -> Marking:
    """The marking of ``model``: from the table, else google-genai's own rule for which models are
    the multimodal (prefix-prompted) generation: 'gemini' in the id, not 001 or exp."""
    if info is not None and info.marking in ("task_type", "prefix"):
        return Marking(info.marking, info.query_marker or "", info.document_marker or "")
    model_id = model.rsplit("/", 1)[-1]
    if "gemini" in model_id and not model_id.startswith(("gemini-embedding-001", "gemini-embedding-exp")):
        return Marking("prefix", _QUERY_PREFIX, _DOCUMENT_PREFIX)
    return Marking("task_type", _TASK_TYPES["query"], _TASK_TYPES["document"])


def build_request(
    model: str, texts: Sequence[str], kind: Kind, request_dim: int | None, marking: Marking | None = None
) -> GeminiRequest:
    """The batch to send: prefixes or a task type for ``kind``, and the width to ask for."""
    marking = marking or marking_for(model, lookup(PROVIDER, model))
    marker = marking.query if kind == "query" else marking.document
    if marking.kind == "prefix":
        return GeminiRequest(model, [_prefixed(marker, t) for t in texts], None, request_dim)
    return GeminiRequest(model, list(texts), marker, request_dim)


def _prefixed(marker: str, item: Any) -> Any:
    if isinstance(item, str):
        return marker + item
    if isinstance(item, Content) and item.texts:
        first = next(i for i, p in enumerate(item.parts) if isinstance(p, str))
        parts = list(item.parts)
        parts[first] = marker + parts[first]
        return Content(tuple(parts))
    return item  # an image alone: no prefix


def sdk_arguments(request: GeminiRequest, types: Any) -> dict[str, Any]:
    """Keyword arguments of ``client.models.embed_content`` (``types`` is ``google.genai.types``).

    Each text is its own ``Content``: a plain list of strings is merged into one embedding by the
    SDK for gemini-embedding-2.
    """
    contents = [types.Content(role="user", parts=[_part(p, types) for p in _parts(t)]) for t in request.texts]
    config = types.EmbedContentConfig(task_type=request.task_type,
                                      output_dimensionality=request.output_dimensionality)
    return {"model": request.model, "contents": contents, "config": config}


def _parts(item: Any) -> tuple[Any, ...]:
    return item.parts if isinstance(item, Content) else (item,)


def _part(part: str | Image, types: Any) -> Any:
    """A text part, or an image as ``inline_data`` (its bytes; the SDK base64-encodes them)."""
    if isinstance(part, str):
        return types.Part(text=part)
    return types.Part(inline_data=types.Blob(data=part.data, mime_type=part.media_type))


def parse_response(response: Any, expected: int, model: str) -> np.ndarray:
    """The vectors of an ``EmbedContentResponse``, in order, as a float32 matrix."""
    embeddings = getattr(response, "embeddings", None)
    if not isinstance(embeddings, list):
        raise _bad(model, "the response has no 'embeddings' list")
    if len(embeddings) != expected:
        raise _bad(model, f"expected {expected} vectors, got {len(embeddings)}")
    rows = [getattr(e, "values", None) for e in embeddings]
    if any(not isinstance(r, list) for r in rows):
        raise _bad(model, "an embedding has no 'values' list")
    if len({len(r) for r in rows}) > 1:
        raise _bad(model, f"vectors of different widths in one response: {sorted({len(r) for r in rows})}")
    try:
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    except (TypeError, ValueError) as exc:
        raise _bad(model, f"embedding values are not numbers ({exc})") from None


def retry_info_delay(details: Any) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail (``"retryDelay": "31s"``) of an error body.

    Gemini states how long to back off there, not in a Retry-After header.
    """
    error = details.get("error", details) if isinstance(details, dict) else {}
    for item in error.get("details", []) if isinstance(error, dict) else []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = re.fullmatch(r"\s*([0-9.]+)s\s*", str(item.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def _error_reason(details: Any) -> str | None:
    error = details.get("error", details) if isinstance(details, dict) else {}
    for item in error.get("details", []) if isinstance(error, dict) else []:
        if isinstance(item, dict) and item.get("reason"):
            return str(item["reason"])
    return None


def _bad(model: str, message: str) -> EmbeddingResponseError:
    return make_error(EmbeddingResponseError, message, provider=PROVIDER, model=model)  # type: ignore[return-value]


# --- the provider ---------------------------------------------------------------------------------


class GeminiProvider(HostedProvider):
    """Gemini embeddings through the official ``google-genai`` SDK.

    Args:
        model: default gemini-embedding-001.
        dim: width wanted (128..3072); asked for with ``output_dimensionality``.
        api_key: a string or ``Secret``; else ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY``.
        base_url: the API host (the SDK adds ``/v1/models/...``), e.g. a regional host or proxy.
        vertexai / project / location: Vertex AI mode, passed to ``genai.Client`` as is (Application
            Default Credentials are then used when no key is given).
        api_version: the API version path segment (the SDK's default: ``v1``).
        native_dim / native_shortening: for models the table does not know.
        **options: ``timeout``, ``max_retries``, ``max_concurrency``, ``batch_size``, ``retry``,
            ``seed`` (see ``HostedProvider``).

    Example:
        >>> emb = GeminiProvider(model="gemini-embedding-001", dim=768, api_key="...")  # doctest: +SKIP
        >>> emb.embed_documents(["a", "b"]).shape  # doctest: +SKIP
        (2, 768)
    """

    name: ClassVar[str] = PROVIDER
    api_label: ClassVar[str] = "Gemini"
    api_key_env: ClassVar[tuple[str, ...]] = ("GEMINI_API_KEY", "GOOGLE_API_KEY")

    def __init__(
        self,
        *,
        model: str | None = None,
        dim: int | None = None,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        vertexai: bool = False,
        project: str | None = None,
        location: str | None = None,
        api_version: str | None = None,
        native_dim: int | None = None,
        native_shortening: bool | None = None,
        **options: Any,
    ) -> None:
        # Fail at construction, not at the first request, when the SDK is missing.
        require("google.genai", package="google-genai", extra="gemini", purpose="the Gemini provider")
        model, width, info = self._setup_model(model, dim, options, native_dim=native_dim, native_shortening=native_shortening,
                                               batch_limit=_MAX_BATCH, batch_default=_MAX_BATCH,
                                               table_beside_native_dim=True, token_cap=False)
        self.marking = marking_for(model, info)
        super().__init__(model=model, dim=width.dim, api_key=api_key, base_url=base_url,
                         response_dim=width.response_dim, query_prompt=self.marking.query,
                         document_prompt=self.marking.document, keyless=bool(vertexai), **options)
        self.vertexai = bool(vertexai)
        self.project, self.location, self.api_version = project, location, api_version
        # google-genai keeps one aiohttp session per client, bound to the loop that opened it.
        self._clients = ClientPool(self._make_client, self._make_client, lambda client: client.aio.aclose())

    # -- one request each way ------------------------------------------------------------------------
    def _embed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        request = build_request(self.model, texts, kind, self.request_dim, self.marking)
        client = self._client()
        response = client.models.embed_content(**sdk_arguments(request, self._types()))
        return parse_response(response, len(texts), self.model)

    async def _aembed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        request = build_request(self.model, texts, kind, self.request_dim, self.marking)
        client = self._async_client()
        response = await client.aio.models.embed_content(**sdk_arguments(request, self._types()))
        return parse_response(response, len(texts), self.model)

    def _estimate_tokens(self, text: Any) -> int:
        # Gemini bills an image like a generative prompt does: 258 tokens for each 768x768 tile.
        if isinstance(text, str):
            return super()._estimate_tokens(text)
        return item_tokens(text, super()._estimate_tokens, lambda image: 258 * max(1, -(-(image.pixels() or 1) // 589_824)))

    def _classify(self, exc: BaseException) -> Any:
        errors = require("google.genai.errors", package="google-genai", extra="gemini")
        kw = {"provider": self.name, "model": self.model}
        if isinstance(exc, errors.APIError):
            headers = getattr(getattr(exc, "response", None), "headers", None)
            retry_after = parse_retry_after(headers) or retry_info_delay(exc.details)
            message = str(exc.message or exc.status or exc)
            if exc.code == 400 and _error_reason(exc.details) == "API_KEY_INVALID":
                # Gemini answers a wrong key with 400 INVALID_ARGUMENT, not 401.
                return make_error(AuthenticationError, f"{message} (check the API key)", status=400, **kw)
            return error_for_status(int(exc.code or 0), message, retry_after=retry_after, **kw)
        kind = _transport_failure(exc)
        if kind == "timeout":
            return make_error(ProviderTimeoutError, f"no answer within {self.timeout:g}s", retryable=True, **kw)
        if kind == "connection":
            return make_error(ProviderConnectionError, f"cannot reach the provider: {exc}", retryable=True, **kw)
        if kind == "response":
            return make_error(EmbeddingResponseError, f"unreadable response: {exc}", **kw)
        return super()._classify(exc)

    # -- clients ------------------------------------------------------------------------------------------
    def _types(self) -> Any:
        return require("google.genai.types", package="google-genai", extra="gemini")

    def _client(self) -> Any:
        return self._clients.sync()

    def _async_client(self) -> Any:
        return self._clients.for_running_loop()

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for ``genai.Client`` except the key and ``http_options`` (for tests)."""
        if not self.vertexai:
            return {}
        return {k: v for k, v in (("vertexai", True), ("project", self.project), ("location", self.location))
                if v is not None}

    def _make_client(self) -> Any:
        genai = require("google.genai", package="google-genai", extra="gemini", purpose="the Gemini provider")
        types = self._types()
        key = self._api_key.get_secret_value() if self._api_key else None
        if key is None and not self.vertexai:
            raise make_error(AuthenticationError, "no API key: pass api_key= or set GEMINI_API_KEY "
                             "(or GOOGLE_API_KEY)", provider=self.name, model=self.model)
        # HttpRetryOptions(attempts=1): no tenacity retries, and it also turns off the SDK's
        # implicit 1-10 s sleep-and-retry on aiohttp connection errors; base.py's policy is the
        # only one. The timeout is in milliseconds.
        http = types.HttpOptions(base_url=self.base_url, api_version=self.api_version,
                                 timeout=int(self.timeout * 1000),
                                 retry_options=types.HttpRetryOptions(attempts=1))
        return genai.Client(api_key=key, http_options=http, **self.client_options())

    def close(self) -> None:
        self._clients.close()

    async def aclose(self) -> None:
        await self._clients.aclose()


def _transport_failure(exc: BaseException) -> str | None:
    """'timeout', 'connection' or 'response' for the HTTP stacks google-genai uses, else None."""
    for module, timeout, connection in (("httpx2", "TimeoutException", "TransportError"),
                                        ("httpx", "TimeoutException", "TransportError"),
                                        ("aiohttp", "ServerTimeoutError", "ClientError")):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        if isinstance(exc, getattr(mod, timeout)):
            return "timeout"
        if isinstance(exc, getattr(mod, connection)):
            return "connection"
    if isinstance(exc, json.JSONDecodeError) or type(exc).__name__ == "ValidationError":
        return "response"  # a 200 whose body is not JSON, or not the expected shape (pydantic)
    return None


__all__ = ["GeminiProvider", "GeminiRequest", "Marking", "build_request", "marking_for", "parse_response",
           "retry_info_delay", "sdk_arguments"]
