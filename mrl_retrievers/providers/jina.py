"""Jina AI embeddings (jina-embeddings-v4: text and images) over plain HTTP with ``httpx``.

Jina ships no Python SDK, so this adapter speaks the API itself: an ``httpx.Client`` for the sync
path and one ``httpx.AsyncClient`` per event loop (``ClientPool``) for the async path, both built
from the same pure request/response functions below. Wire format (Jina API docs; the loopback
emulator checks it field by field):

* ``POST {base}/embeddings`` with ``Authorization: Bearer KEY``;
* body ``{"model", "task": "retrieval.query" | "retrieval.passage", "dimensions", "embedding_type":
  "float", "truncate": true, "input": [...]}``; a multimodal model's inputs are ``{"text": ..}``
  or ``{"image": <http(s) URL or base64 bytes>}``, one text or one image each (no interleaving);
  another model's inputs are plain strings;
* ``dimensions`` is the Matryoshka width (128..2048 on v4), asked for directly; vectors come back
  as JSON floats and are renormalized after truncation like every provider's;
* answers ``{"model", "object": "list", "usage": {"total_tokens", "prompt_tokens"}, "data":
  [{"object": "embedding", "index", "embedding"}]}``; errors ``{"detail": ".."}``.

Example:
    >>> build_request("jina-embeddings-v4", ["a cat"], "query", 512, objects=True)["input"]
    [{'text': 'a cat'}]
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Sequence

import numpy as np

from ..config import Secret
from ..errors import AuthenticationError, EmbeddingResponseError, ProviderConnectionError, ProviderTimeoutError
from ..media import Image
from ._clients import ClientPool
from .base import Kind, error_for_status, make_error, parse_retry_after, require
from .hosted import HostedProvider
from .multimodal import item_tokens

PROVIDER = "jina"
DEFAULT_BASE_URL = "https://api.jina.ai/v1"
_PATH = "/embeddings"
_TASKS = {"query": "retrieval.query", "document": "retrieval.passage"}
_UNKNOWN_MODEL_BATCH = 128
# Inputs a request by default: images travel inline, so a request of 2048 (the API's cap) could
# carry hundreds of megabytes; batch_size= up to 2048 still works.
_DEFAULT_BATCH = 128
# Tokens an image costs at most (v4 reads up to 768 patches of 28x28 pixels), for token batching.
_IMAGE_TOKENS = 768


# --- pure request / response functions ---------------------------------------------------------


def encode_input(item: Any, *, objects: bool) -> Any:
    """One input: ``{"text": t}`` / ``{"image": url-or-base64}`` (multimodal models) or a plain string."""
    if isinstance(item, Image):
        return {"image": item.url if item.is_url else item.base64()}
    return {"text": item} if objects else item


def build_request(model: str, items: Sequence[Any], kind: Kind, request_dim: int | None, *,
                  objects: bool, truncate: bool = True) -> dict[str, Any]:
    """The JSON body of one ``POST /embeddings``."""
    body: dict[str, Any] = {"model": model, "task": _TASKS[kind]}
    if request_dim is not None:
        body["dimensions"] = request_dim
    body.update(embedding_type="float", truncate=truncate, input=[encode_input(i, objects=objects) for i in items])
    return body


def parse_response(raw: bytes, expected: int, model: str) -> np.ndarray:
    """The vectors of a 200 answer, ordered by ``index``, as a float32 matrix."""
    try:
        body = json.loads(raw)
    except ValueError as exc:  # incl. UnicodeDecodeError
        raise _bad(model, f"unreadable response: {exc}") from None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise _bad(model, "the response has no 'data' list")
    if len(data) != expected:
        raise _bad(model, f"expected {expected} vectors, got {len(data)}")
    indexes = [item.get("index") if isinstance(item, dict) else None for item in data]
    if sorted(i for i in indexes if isinstance(i, int) and not isinstance(i, bool)) != list(range(len(data))):
        raise _bad(model, f"embedding indexes are not 0..{len(data) - 1}: {indexes[:10]}")
    rows = [item.get("embedding") for _, item in sorted(zip(indexes, data), key=lambda pair: pair[0])]
    if any(not isinstance(r, list) for r in rows) or len({len(r) for r in rows}) > 1:
        raise _bad(model, "embeddings are not lists of one width")
    try:
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    except (TypeError, ValueError) as exc:
        raise _bad(model, f"embedding values are not numbers ({exc})") from None


def error_message(raw: bytes, status: int) -> str:
    """The ``detail`` of an error body (a string, or FastAPI's list of validation errors)."""
    try:
        detail = json.loads(raw).get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):
        detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    return str(detail) if detail else f"HTTP {status} with an unexpected body"


def _bad(model: str, message: str) -> EmbeddingResponseError:
    return make_error(EmbeddingResponseError, message, provider=PROVIDER, model=model)  # type: ignore[return-value]


# --- the provider ---------------------------------------------------------------------------------


class JinaProvider(HostedProvider):
    """Jina AI embeddings: jina-embeddings-v4 (text and images, Matryoshka 128..2048).

    Args:
        model: default jina-embeddings-v4.
        dim: the width wanted (128..2048 on v4), asked for with ``dimensions``.
        api_key: a string or ``Secret``; else ``JINA_API_KEY`` (or ``JINAAI_API_KEY``).
        base_url: the API root ending in ``/v1`` (default ``https://api.jina.ai/v1``).
        truncate: let the API cut over-long texts instead of refusing them.
        native_dim / native_shortening: for models the table does not know.
        **options: ``timeout``, ``max_retries``, ``max_concurrency``, ``batch_size``,
            ``max_batch_tokens``, ``retry``, ``seed`` (see ``HostedProvider``).

    Example:
        >>> emb = JinaProvider(dim=512, api_key="...")  # doctest: +SKIP
        >>> emb.embed_inputs(["a red chart", "chart.png"]).shape  # doctest: +SKIP
        (2, 512)
    """

    name: ClassVar[str] = PROVIDER
    api_label: ClassVar[str] = "Jina"
    api_key_env: ClassVar[tuple[str, ...]] = ("JINA_API_KEY", "JINAAI_API_KEY")

    def __init__(
        self,
        *,
        model: str | None = None,
        dim: int | None = None,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        truncate: bool = True,
        native_dim: int | None = None,
        native_shortening: bool | None = None,
        **options: Any,
    ) -> None:
        require("httpx", package="httpx", extra="jina", purpose="the Jina provider")
        model, width, _ = self._setup_model(model, dim, options, native_dim=native_dim, native_shortening=native_shortening,
                                            batch_limit=None, batch_default=_UNKNOWN_MODEL_BATCH,
                                            batch_preferred=_DEFAULT_BATCH)
        super().__init__(model=model, dim=width.dim, api_key=api_key, base_url=base_url or DEFAULT_BASE_URL,
                         response_dim=width.response_dim, query_prompt=_TASKS["query"],
                         document_prompt=_TASKS["document"], **options)
        self.truncate = bool(truncate)
        self._clients = ClientPool(lambda: self._make_client(asynchronous=False),
                                   lambda: self._make_client(asynchronous=True), lambda client: client.aclose())

    # -- one request each way ------------------------------------------------------------------------
    def _request(self, items: list[Any], kind: Kind) -> dict[str, Any]:
        return build_request(self.model, items, kind, self.request_dim, objects="image" in self.modalities,
                             truncate=self.truncate)

    def _embed_batch(self, texts: list[Any], kind: Kind) -> np.ndarray:
        response = self._client().post(_PATH, json=self._request(texts, kind))
        response.raise_for_status()
        return parse_response(response.content, len(texts), self.model)

    async def _aembed_batch(self, texts: list[Any], kind: Kind) -> np.ndarray:
        response = await self._clients.for_running_loop().post(_PATH, json=self._request(texts, kind))
        response.raise_for_status()
        return parse_response(response.content, len(texts), self.model)

    def _estimate_tokens(self, text: Any) -> int:
        if isinstance(text, str):
            return super()._estimate_tokens(text)
        return item_tokens(text, super()._estimate_tokens, lambda image: _IMAGE_TOKENS)

    def _classify(self, exc: BaseException) -> Any:
        httpx = require("httpx", package="httpx", extra="jina")
        kw = {"provider": self.name, "model": self.model}
        if isinstance(exc, httpx.HTTPStatusError):
            response = exc.response
            message = error_message(response.content, response.status_code)
            return error_for_status(response.status_code, message, retry_after=parse_retry_after(response.headers), **kw)
        if isinstance(exc, httpx.TimeoutException):
            return make_error(ProviderTimeoutError, f"no answer within {self.timeout:g}s", retryable=True, **kw)
        if isinstance(exc, httpx.TransportError):
            return make_error(ProviderConnectionError, f"cannot reach the provider: {exc}", retryable=True, **kw)
        return super()._classify(exc)

    # -- clients ------------------------------------------------------------------------------------------
    def _client(self) -> Any:
        return self._clients.sync()

    def _make_client(self, *, asynchronous: bool) -> Any:
        httpx = require("httpx", package="httpx", extra="jina", purpose="the Jina provider")
        if self._api_key is None:
            raise make_error(AuthenticationError, "no API key: pass api_key= or set JINA_API_KEY",
                             provider=self.name, model=self.model)
        headers = {"Authorization": f"Bearer {self._api_key.get_secret_value()}", "Accept": "application/json"}
        cls = httpx.AsyncClient if asynchronous else httpx.Client
        return cls(base_url=str(self.base_url).rstrip("/"), headers=headers, timeout=self.timeout)

    def close(self) -> None:
        self._clients.close()

    async def aclose(self) -> None:
        await self._clients.aclose()


__all__ = ["DEFAULT_BASE_URL", "JinaProvider", "build_request", "encode_input", "error_message", "parse_response"]
