"""Voyage AI embeddings through the official ``voyageai`` SDK.

Request building and response parsing are pure functions shared by the sync (``voyageai.Client``,
over requests) and async (``voyageai.AsyncClient``, over aiohttp) paths. The width is asked for with
``output_dimension``, which the API takes only from a fixed set ({256, 512, 1024, 2048} on the
flexible models): any other width is refused at construction, before any request. Queries and
documents are marked with ``input_type``.

Upstream quirks handled here: the SDK's ``max_retries`` counts total attempts, never retries a 500,
and ignores Retry-After, so it is held to one attempt and base.py's policy does the retrying.

Multimodal models (voyage-multimodal-3.5, -3) take texts, images and interleaved text + image
inputs through ``/v1/multimodalembeddings`` (``voyage_multimodal.py``): every batch of such a model
goes there, texts too.

Example:
    >>> build_request("voyage-4", ["a cat"], "query", 512)["output_dimension"]
    512
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar, Sequence

import numpy as np

from ..config import Secret
from ..errors import AuthenticationError, EmbeddingResponseError, ProviderConnectionError
from ..errors import ProviderError, ProviderTimeoutError
from . import voyage_multimodal
from .base import Kind, error_for_status, make_error, parse_retry_after, require
from .hosted import HostedProvider
from .multimodal import image_transport, split_where

PROVIDER = "voyage"
_MAX_BATCH = 1000  # texts a request
_INPUT_TYPES = {"query": "query", "document": "document"}


# --- pure request / response functions ---------------------------------------------------------


def build_request(
    model: str, texts: Sequence[str], kind: Kind, request_dim: int | None, *, truncation: bool = True
) -> dict[str, Any]:
    """Keyword arguments of ``Client.embed`` / ``AsyncClient.embed`` for one batch.

    ``output_dtype`` stays unset (float); the SDK asks for base64 and decodes it itself.
    """
    return {
        "texts": list(texts),
        "model": model,
        "input_type": _INPUT_TYPES[kind],
        "truncation": truncation,
        "output_dimension": request_dim,
    }


def parse_response(response: Any, expected: int, model: str) -> np.ndarray:
    """The vectors of an ``EmbeddingsObject``, in input order, as a float32 matrix."""
    rows = getattr(response, "embeddings", None)
    if not isinstance(rows, list):
        raise _bad(model, "the response has no 'embeddings' list")
    if len(rows) != expected:
        raise _bad(model, f"expected {expected} vectors, got {len(rows)}")
    widths = {len(r) for r in rows if isinstance(r, (list, tuple))}
    if len(widths) > 1 or (rows and not widths):
        raise _bad(model, f"vectors of different widths or types in one response: {sorted(widths)}")
    try:
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    except (TypeError, ValueError) as exc:
        raise _bad(model, f"embedding values are not numbers ({exc})") from None


def _bad(model: str, message: str) -> EmbeddingResponseError:
    return make_error(EmbeddingResponseError, message, provider=PROVIDER, model=model)  # type: ignore[return-value]


# --- the provider ---------------------------------------------------------------------------------


class VoyageProvider(HostedProvider):
    """Voyage AI embeddings (voyage-4, voyage-3.5, voyage-code-3, ... and fixed-width models).

    Args:
        model: default voyage-4.
        dim: one of the model's allowed widths (flexible models: 256, 512, 1024, 2048); anything
            else raises ``UnsupportedDimensionError`` here, before any request.
        api_key: a string or ``Secret``; else ``VOYAGE_API_KEY``.
        base_url: the API root ending in ``/v1`` (a proxy or a test server).
        truncation: let the API truncate over-long texts (its default) instead of refusing them.
        native_dim / native_shortening: for models the table does not know.
        **options: ``timeout``, ``max_retries``, ``max_concurrency``, ``batch_size``,
            ``max_batch_tokens``, ``retry``, ``seed`` (see ``HostedProvider``).

    Example:
        >>> emb = VoyageProvider(model="voyage-4", dim=512, api_key="...")  # doctest: +SKIP
        >>> emb.embed_query("hello").shape  # doctest: +SKIP
        (512,)
    """

    name: ClassVar[str] = PROVIDER
    api_label: ClassVar[str] = "Voyage"
    api_key_env: ClassVar[tuple[str, ...]] = ("VOYAGE_API_KEY",)
    #: an input may not mix image URLs and image bytes (one request takes one or the other)
    one_image_transport: ClassVar[bool] = True

    def __init__(
        self,
        *,
        model: str | None = None,
        dim: int | None = None,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        truncation: bool = True,
        native_dim: int | None = None,
        native_shortening: bool | None = None,
        **options: Any,
    ) -> None:
        # Fail at construction, not at the first request, when the SDK is missing.
        require("voyageai", package="voyageai", extra="voyage", purpose="the Voyage provider")
        model, width, _ = self._setup_model(model, dim, options, native_dim=native_dim, native_shortening=native_shortening,
                                            batch_limit=_MAX_BATCH, batch_default=_MAX_BATCH, table_beside_native_dim=True)
        super().__init__(model=model, dim=width.dim, api_key=api_key, base_url=base_url,
                         response_dim=width.response_dim, query_prompt=_INPUT_TYPES["query"],
                         document_prompt=_INPUT_TYPES["document"], **options)
        self.truncation = bool(truncation)
        self.multimodal = "image" in self.modalities
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()

    # -- one request each way ------------------------------------------------------------------------
    def _embed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        if self.multimodal:
            request = voyage_multimodal.build_request(self.model, texts, kind, self.request_dim,
                                                      truncation=self.truncation)
            return parse_response(self._client("sync").multimodal_embed(**request), len(texts), self.model)
        request = build_request(self.model, texts, kind, self.request_dim, truncation=self.truncation)
        return parse_response(self._client("sync").embed(**request), len(texts), self.model)

    async def _aembed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        if self.multimodal:
            request = voyage_multimodal.build_request(self.model, texts, kind, self.request_dim,
                                                      truncation=self.truncation)
            response = await self._client("async").multimodal_embed(**request)
        else:
            request = build_request(self.model, texts, kind, self.request_dim, truncation=self.truncation)
            response = await self._client("async").embed(**request)
        return parse_response(response, len(texts), self.model)

    def _split(self, texts: list[Any]) -> list[np.ndarray]:
        # One request carries image URLs or image bytes, never both: cut where that changes.
        batches = super()._split(texts)
        return split_where(texts, batches, image_transport) if self.multimodal else batches

    def _estimate_tokens(self, text: Any) -> int:
        if isinstance(text, str):
            return super()._estimate_tokens(text)
        return voyage_multimodal.estimate_tokens(text, super()._estimate_tokens)

    def _classify(self, exc: BaseException) -> Any:
        error = require("voyageai.error", package="voyageai", extra="voyage")
        kw = {"provider": self.name, "model": self.model}
        if not isinstance(exc, error.VoyageError):
            return super()._classify(exc)
        if isinstance(exc, error.Timeout):
            return make_error(ProviderTimeoutError, f"no answer within {self.timeout:g}s", retryable=True, **kw)
        if isinstance(exc, error.APIConnectionError):
            cause = exc.__cause__ or exc
            return make_error(ProviderConnectionError, f"cannot reach the provider: {cause}", retryable=True, **kw)
        status = exc.http_status
        message = str(exc.user_message or type(exc).__name__)
        if status is not None and 200 <= int(status) < 300:  # a 2xx whose body is not JSON
            return make_error(EmbeddingResponseError, f"unreadable response: {message}", status=status, **kw)
        if status is not None:
            if isinstance(exc, error.APIError) and int(status) < 500:
                # 4xx without a {"detail"} body: the SDK packs the raw body and headers into the message.
                message = f"HTTP {status} with an unexpected body"
            return error_for_status(int(status), message, retry_after=parse_retry_after(exc.headers), **kw)
        cls = AuthenticationError if isinstance(exc, error.AuthenticationError) else ProviderError
        return make_error(cls, message, **kw)

    # -- clients ------------------------------------------------------------------------------------------
    def _client(self, flavour: str) -> Any:
        # Neither client holds a connection bound to an event loop (the async one opens an aiohttp
        # session per request), so one of each serves every thread and loop.
        with self._clients_lock:
            client = self._clients.get(flavour)
            if client is None:
                client = self._clients[flavour] = self._make_client(flavour == "async")
            return client

    def _make_client(self, asynchronous: bool) -> Any:
        sdk = require("voyageai", package="voyageai", extra="voyage", purpose="the Voyage provider")
        if self._api_key is None:
            raise make_error(AuthenticationError, "no API key: pass api_key= or set VOYAGE_API_KEY",
                             provider=self.name, model=self.model)
        # max_retries=1 means ONE attempt in voyageai (it counts attempts, not retries).
        cls = sdk.AsyncClient if asynchronous else sdk.Client
        return cls(api_key=self._api_key.get_secret_value(), max_retries=1, timeout=self.timeout,
                   base_url=self.base_url)

    def close(self) -> None:
        with self._clients_lock:
            self._clients.clear()


__all__ = ["VoyageProvider", "build_request", "parse_response"]
