"""OpenAI embeddings, Azure OpenAI, and any OpenAI-compatible endpoint (vLLM, LiteLLM, proxies).

Request building and response parsing are pure functions shared by the sync and async paths; only
the transport (``OpenAI`` vs ``AsyncOpenAI``) differs. The width is asked for with ``dimensions``
where the model supports it (text-embedding-3-*), otherwise the native vector is truncated.

Example:
    >>> from mrl_retrievers.providers.openai import build_request
    >>> build_request("text-embedding-3-large", ["a cat"], 256)["dimensions"]
    256
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from ..config import Secret
from ..errors import AuthenticationError, ConfigError, EmbeddingResponseError, ProviderConnectionError
from ..errors import ProviderTimeoutError
from ._clients import ClientPool
from .base import Kind, error_for_status, make_error, parse_retry_after, require, resolve_api_key
from .hosted import HostedProvider

PROVIDER = "openai"
_PATH = "/embeddings"
# Used when the model is not in the table (compatible servers): a count any server takes.
_UNKNOWN_MODEL_BATCH = 128
# Texts a request by default for known models (the API takes up to 2048). Under a tokens-per-minute
# limit a request is admitted whole or not at all, so big requests waste the minute's budget: at
# tier 1 (1M tpm) 20k short texts took 127 s in ~1,300-text requests against 67 s in 512-text
# ones (the floor is ~62 s); with 4 requests in flight, throughput without a binding limit is the
# same. batch_size= up to 2048 still works.
_DEFAULT_BATCH = 512


# --- pure request / response functions ---------------------------------------------------------


def build_request(model: str, texts: Sequence[str], request_dim: int | None) -> dict[str, Any]:
    """Keyword arguments of ``client.embeddings.create`` for one batch.

    ``encoding_format="base64"`` is explicit: the SDK then hands back the raw little-endian float32
    payload, which we decode exactly with numpy (left implicit, the SDK also asks for base64 but
    decodes into Python float lists first).
    """
    request: dict[str, Any] = {"model": model, "input": list(texts), "encoding_format": "base64"}
    if request_dim is not None:
        request["dimensions"] = request_dim
    return request


def parse_response(response: Any, expected: int, model: str) -> np.ndarray:
    """The vectors of an embeddings response, in input order, as a float32 matrix.

    ``response`` is the SDK's response object or the decoded JSON body (a dict), as
    ``OpenAIProvider`` reads it. Accepts base64 strings and plain float lists (compatible servers
    may ignore ``encoding_format``); items are ordered by their ``index``, not by position.
    """
    data = _field(response, "data")
    if not isinstance(data, list):
        raise _bad(model, f"the response has no 'data' list (got {type(response).__name__})")
    indexes = [_field(item, "index") for item in data]
    if sorted(i for i in indexes if isinstance(i, int) and not isinstance(i, bool)) != list(range(len(data))):
        raise _bad(model, f"embedding indexes are not 0..{len(data) - 1}: {indexes[:10]}")
    if len(data) != expected:
        raise _bad(model, f"expected {expected} vectors, got {len(data)}")
    ordered = [item for _, item in sorted(zip(indexes, data), key=lambda pair: pair[0])]
    rows = [decode_embedding(_field(item, "embedding"), model) for item in ordered]
    if len({row.shape[0] for row in rows}) > 1:
        raise _bad(model, f"vectors of different widths in one response: {sorted({r.shape[0] for r in rows})}")
    return np.stack(rows) if rows else np.empty((0, 0), dtype=np.float32)


def load_body(raw: bytes, model: str) -> Any:
    """The JSON body of a 200 answer (what ``parse_response`` reads); unreadable -> typed error."""
    try:
        return json.loads(raw)
    except ValueError as exc:  # incl. UnicodeDecodeError
        raise _bad(model, f"unreadable response: {exc}") from None


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def decode_embedding(value: Any, model: str) -> np.ndarray:
    """One embedding: base64 little-endian float32, or a list of numbers."""
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError as exc:
            raise _bad(model, f"an embedding is not valid base64 ({exc})") from None
        if len(raw) % 4:
            raise _bad(model, f"a base64 embedding has {len(raw)} bytes, not a multiple of 4")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    try:
        return np.asarray(value, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise _bad(model, f"an embedding is not a list of numbers ({exc})") from None


def _bad(model: str, message: str) -> EmbeddingResponseError:
    return make_error(EmbeddingResponseError, message, provider=PROVIDER, model=model)  # type: ignore[return-value]


# --- the provider ---------------------------------------------------------------------------------


class OpenAIProvider(HostedProvider):
    """OpenAI embeddings through the official ``openai`` SDK (sync and async clients).

    Args:
        model: model name, or the deployment name on Azure (default: text-embedding-3-small).
        dim: the width wanted (default: the model's native width). text-embedding-3-* are asked for
            it with ``dimensions``; other models are truncated and renormalized.
        api_key: a string or ``Secret``; else ``OPENAI_API_KEY`` (Azure: ``AZURE_OPENAI_API_KEY``).
        base_url: any OpenAI-compatible endpoint, ending in ``/v1`` (Azure's v1 API too:
            ``https://RESOURCE.openai.azure.com/openai/v1/``).
        azure_endpoint / api_version: Azure OpenAI's deployment API (``AzureOpenAI``); ``model`` is
            then the deployment name.
        azure_ad_token_provider: Entra ID token callable for Azure (instead of a key).
        native_dim / native_shortening: for deployments or compatible models the table does not
            know: their native width, and whether they accept ``dimensions``.
        organization / project / default_headers: passed to the SDK client.
        **options: ``timeout``, ``max_retries``, ``max_concurrency``, ``batch_size``,
            ``max_batch_tokens``, ``retry``, ``seed`` (see ``HostedProvider``).

    Example:
        >>> emb = OpenAIProvider(model="text-embedding-3-large", dim=256, api_key="sk-...")  # doctest: +SKIP
        >>> emb.embed_query("hello").shape  # doctest: +SKIP
        (256,)
    """

    name: ClassVar[str] = PROVIDER
    api_label: ClassVar[str] = "OpenAI"
    api_key_env: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)

    def __init__(
        self,
        *,
        model: str | None = None,
        dim: int | None = None,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        azure_endpoint: str | None = None,
        api_version: str | None = None,
        azure_ad_token_provider: Callable[[], str] | None = None,
        native_dim: int | None = None,
        native_shortening: bool | None = None,
        organization: str | None = None,
        project: str | None = None,
        default_headers: dict[str, str] | None = None,
        **options: Any,
    ) -> None:
        # Fail at construction, not at the first request, when the SDK is missing.
        require("openai", package="openai", extra="openai", purpose="the OpenAI embeddings provider")
        if base_url is not None and azure_endpoint is not None:
            raise ConfigError("pass either base_url or azure_endpoint, not both (they are two ways to name the host)")
        self.azure = azure_endpoint is not None or api_version is not None or azure_ad_token_provider is not None
        if self.azure and (api_version or os.environ.get("OPENAI_API_VERSION")) is None:
            raise ConfigError("Azure OpenAI needs api_version= (e.g. '2024-10-21') or OPENAI_API_VERSION")
        if self.azure and api_key is None:
            api_key = resolve_api_key(None, ("AZURE_OPENAI_API_KEY", "OPENAI_API_KEY"))
        model, width, _ = self._setup_model(model, dim, options, native_dim=native_dim, native_shortening=native_shortening,
                                            batch_limit=None, batch_default=_UNKNOWN_MODEL_BATCH,
                                            batch_preferred=_DEFAULT_BATCH)
        super().__init__(model=model, dim=width.dim, api_key=api_key, base_url=base_url,
                         response_dim=width.response_dim, keyless=azure_ad_token_provider is not None, **options)
        self.azure_endpoint = azure_endpoint
        self.api_version = api_version
        self._token_provider = azure_ad_token_provider
        self._client_options = {"organization": organization, "project": project, "default_headers": default_headers}
        self._clients = ClientPool(lambda: self._make_client(asynchronous=False),
                                   lambda: self._make_client(asynchronous=True), lambda client: client.close())

    # -- one request each way ------------------------------------------------------------------------
    # The request goes through the SDK's generic ``post`` (its documented way to call an endpoint
    # with a raw answer): same URL building (Azure deployments included), auth, timeout and
    # status -> exception mapping as ``embeddings.create``, without the per-item request transform
    # and pydantic response models, which cost ~4 s of client CPU per 20k texts (profiled), more
    # than the rest of the client path together. ``parse_response`` checks the JSON the same way it checks the SDK's objects.
    def _embed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        raw = self._client().post(_PATH, body=build_request(self.model, texts, self.request_dim), cast_to=bytes)
        return parse_response(load_body(raw, self.model), len(texts), self.model)

    async def _aembed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        client = self._async_client()
        raw = await client.post(_PATH, body=build_request(self.model, texts, self.request_dim), cast_to=bytes)
        return parse_response(load_body(raw, self.model), len(texts), self.model)

    def _classify(self, exc: BaseException) -> Any:
        sdk = require("openai", package="openai", extra="openai")
        kw = {"provider": self.name, "model": self.model}
        if isinstance(exc, sdk.APIStatusError):
            body = exc.body if isinstance(exc.body, dict) else {}
            message = str(body.get("message") or exc.message)
            return error_for_status(exc.status_code, message, retry_after=parse_retry_after(exc.response.headers), **kw)
        if isinstance(exc, sdk.APITimeoutError):
            return make_error(ProviderTimeoutError, f"no answer within {self.timeout:g}s", retryable=True, **kw)
        if isinstance(exc, sdk.APIConnectionError):
            cause = exc.__cause__ or exc
            return make_error(ProviderConnectionError, f"cannot reach the provider: {cause}", retryable=True, **kw)
        if isinstance(exc, (sdk.APIResponseValidationError, ValueError)):  # incl. malformed JSON bodies
            return make_error(EmbeddingResponseError, f"unreadable response: {exc}", **kw)
        return super()._classify(exc)

    # -- clients ------------------------------------------------------------------------------------------
    def _client(self) -> Any:
        return self._clients.sync()

    def _async_client(self) -> Any:
        return self._clients.for_running_loop()

    def _make_client(self, *, asynchronous: bool) -> Any:
        sdk = require("openai", package="openai", extra="openai", purpose="the OpenAI embeddings provider")
        kwargs: dict[str, Any] = {k: v for k, v in self._client_options.items() if v is not None}
        # max_retries=0: base.py's RetryPolicy is the only retry loop (the SDK would retry twice more).
        kwargs.update(timeout=self.timeout, max_retries=0)
        key = self._api_key.get_secret_value() if self._api_key else None
        if self.azure:
            if key is None and self._token_provider is None:
                raise self._missing_key("AZURE_OPENAI_API_KEY")
            kwargs.update(api_key=key, api_version=self.api_version, azure_ad_token_provider=self._token_provider)
            if self.azure_endpoint is not None:
                kwargs["azure_endpoint"] = self.azure_endpoint
            else:
                kwargs["base_url"] = self.base_url
            return (sdk.AsyncAzureOpenAI if asynchronous else sdk.AzureOpenAI)(**kwargs)
        if key is None:
            raise self._missing_key("OPENAI_API_KEY")
        kwargs.update(api_key=key, base_url=self.base_url)
        return (sdk.AsyncOpenAI if asynchronous else sdk.OpenAI)(**kwargs)

    def _missing_key(self, env_var: str) -> AuthenticationError:
        return make_error(  # type: ignore[return-value]
            AuthenticationError,
            f"no API key: pass api_key= or set {env_var} (a keyless compatible server takes any value, "
            "e.g. api_key='EMPTY')", provider=self.name, model=self.model)

    def close(self) -> None:
        self._clients.close()

    async def aclose(self) -> None:
        await self._clients.aclose()


__all__ = ["OpenAIProvider", "build_request", "decode_embedding", "load_body", "parse_response"]
