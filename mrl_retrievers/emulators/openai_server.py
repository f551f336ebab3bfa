"""A loopback emulator of the OpenAI embeddings API (and Azure OpenAI's flavour of it).

Speaks, per FACTS.md:

* ``POST /v1/embeddings`` with ``Authorization: Bearer KEY``;
* Azure: ``POST /openai/deployments/{deployment}/embeddings?api-version=..`` and the v1 route
  ``POST /openai/v1/embeddings``, both with the ``api-key`` header; a deployment maps to a model;
* body ``{"model", "input": str | [str] | [int] | [[int]], "dimensions"?, "encoding_format"?, "user"?}``;
* limits: 2048 inputs, 8192 tokens an input, 300k tokens a request, no empty strings;
  ``dimensions`` only on text-embedding-3-* (1..native); ada-002 answers the real 400 message;
* answers ``{"object":"list","data":[{"object":"embedding","index":i,"embedding":[..]|"b64"}],
  "model","usage":{"prompt_tokens","total_tokens"}}``, unit vectors (shortened ones too);
* errors ``{"error":{"message","type","param","code"}}`` (Azure: ``{"error":{"code","message"}}``).

Tokens are estimated (~4 bytes a token), not counted with tiktoken.

Run standalone: ``python -m mrl_retrievers.emulators.openai_server --port 8000 --latency-ms 100``.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np

from ._base import Fault, LoopbackServer, RecordedRequest, Reply, encode_base64, estimate_tokens, mutate_vectors
from ._base import serve_main, text_vectors

MAX_INPUTS = 2048
MAX_TOKENS_PER_INPUT = 8192
MAX_TOKENS_PER_REQUEST = 300_000

# model -> (native width, accepts `dimensions`)
OPENAI_MODELS: dict[str, tuple[int, bool]] = {
    "text-embedding-3-small": (1536, True),
    "text-embedding-3-large": (3072, True),
    "text-embedding-ada-002": (1536, False),
}

_INVALID_INPUT = "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."


class _Invalid(Exception):
    def __init__(self, reply: Reply) -> None:
        self.reply = reply


class OpenAIServer(LoopbackServer):
    """OpenAI / Azure OpenAI embeddings emulator.

    Args:
        models: extra or replacement entries ``{name: (native_dim, accepts_dimensions)}``.
        deployments: Azure deployment name -> model (every model name is also a deployment).
        **kwargs: see ``LoopbackServer``.
    """

    provider = "openai"

    def __init__(
        self,
        *,
        models: dict[str, tuple[int, bool]] | None = None,
        deployments: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.models = {**OPENAI_MODELS, **(models or {})}
        self.deployments = dict(deployments or {})
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def azure_endpoint(self) -> str:
        """What to pass as ``AzureOpenAI(azure_endpoint=...)``."""
        return self.url

    def expected_vector(self, text: str, *, model: str, dim: int | None = None) -> np.ndarray:
        """The vector this server returns for ``text`` (unit length, ``dim`` wide)."""
        native, _ = self.models[model]
        return text_vectors([text], native, salt=model, width=dim or native)[0]

    # -- hooks ------------------------------------------------------------------------------------
    def texts_of(self, req: RecordedRequest) -> list[str]:
        body = req.body if isinstance(req.body, dict) else {}
        raw = body.get("input")
        if isinstance(raw, str):
            return [raw]
        if isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw):
            return [" ".join(map(str, raw))]  # one token array = one input
        if isinstance(raw, list):
            return [t if isinstance(t, str) else " ".join(map(str, t)) for t in raw if isinstance(t, (str, list))]
        return []

    def authenticate(self, req: RecordedRequest) -> Reply | None:
        if self._is_azure(req):
            given = req.headers.get("api-key") or _bearer(req)
            if given == self.api_key:
                return None
            return Reply(401, {"error": {"code": "401", "message": (
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
                "valid key for an active subscription and use a correct regional API endpoint for your resource.")}})
        given = _bearer(req)
        if given is None:
            return self.error_reply(401, (
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."))
        if given != self.api_key:
            # The real API echoes a masked key: first 3 and last 4 characters.
            masked = given[:3] + "*" * max(0, len(given) - 7) + given[-4:] if len(given) > 7 else "***"
            return self.error_reply(401, f"Incorrect API key provided: {masked}. You can find your API key at "
                                         "https://platform.openai.com/account/api-keys.", code="invalid_api_key")
        return None

    def error_reply(self, status: int, message: str, **extra: Any) -> Reply:
        kinds = {429: "requests", 500: "server_error", 503: "server_error"}
        error = {"message": message, "type": extra.get("type", kinds.get(status, "invalid_request_error")),
                 "param": extra.get("param"), "code": extra.get("code")}
        if status == 429 and error["code"] is None:
            error["code"] = "rate_limit_exceeded"
        return Reply(status, {"error": error}, {"x-request-id": f"req_{next(self._ids)}"})

    def respond(self, req: RecordedRequest, fault: Fault | None) -> Reply:
        try:
            model = self._route(req)
            texts, dims, encoding = self._validate(req, model)
        except _Invalid as bad:
            return bad.reply
        native, _ = self.models[model]
        matrix = text_vectors(texts, native, salt=model, width=dims or native)
        vectors = mutate_vectors(list(matrix), fault) if fault is not None else matrix
        tokens = sum(estimate_tokens(t) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        headers = {"x-request-id": f"req_{next(self._ids)}", "openai-processing-ms": "1"}
        if encoding == "base64":
            return Reply(200, _base64_body(vectors, model, usage), headers)
        data = [{"object": "embedding", "index": i, "embedding": [float(x) for x in v]} for i, v in enumerate(vectors)]
        return Reply(200, {"object": "list", "data": data, "model": model, "usage": usage}, headers)

    # -- validation ---------------------------------------------------------------------------------
    def _is_azure(self, req: RecordedRequest) -> bool:
        return req.path.startswith("/openai/")

    def _route(self, req: RecordedRequest) -> str:
        """The model a request addresses, from the path (Azure deployment) or the body."""
        body = req.body
        if req.method != "POST":
            raise _Invalid(self.error_reply(405, f"Invalid method for URL ({req.method} {req.path})"))
        if not isinstance(body, dict):
            raise _Invalid(self.error_reply(400, (
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                "your HTTP library correctly. The OpenAI API expects a JSON payload.)")))
        parts = req.path.strip("/").split("/")
        if req.path == "/v1/embeddings" or req.path == "/openai/v1/embeddings":
            model = body.get("model")
        elif len(parts) == 4 and parts[:2] == ["openai", "deployments"] and parts[3] == "embeddings":
            if "api-version" not in req.query:
                raise _Invalid(Reply(404, {"error": {"code": "404", "message": "Resource not found"}}))
            model = self.deployments.get(parts[2], parts[2])
            if model not in self.models:
                raise _Invalid(Reply(404, {"error": {"code": "DeploymentNotFound", "message": (
                    "The API deployment for this resource does not exist. If you created the deployment "
                    "within the last 5 minutes, please wait a moment and try again.")}}))
        else:
            raise _Invalid(self.error_reply(404, f"Invalid URL ({req.method} {req.path})"))
        if not model:
            raise _Invalid(self.error_reply(400, "you must provide a model parameter"))
        if model not in self.models:
            raise _Invalid(self.error_reply(404, (
                f"The model `{model}` does not exist or you do not have access to it."), code="model_not_found"))
        return model

    def _validate(self, req: RecordedRequest, model: str) -> tuple[list[str], int | None, str]:
        body = req.body
        raw = body.get("input")
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            raise _Invalid(self.error_reply(400, _INVALID_INPUT))
        if len(raw) > MAX_INPUTS:
            raise _Invalid(self.error_reply(400, (
                f"Too many inputs. The max number of inputs is {MAX_INPUTS}. We recommend sending inputs in "
                "batches of 2048 or fewer."), param="input"))
        if any(t == "" or t == [] or not isinstance(t, (str, int, list)) for t in raw):
            raise _Invalid(self.error_reply(400, _INVALID_INPUT))
        texts = self.texts_of(req)
        counts = [len(t.split()) if not isinstance(r, str) else estimate_tokens(t) for t, r in zip(texts, raw)]
        longest = max(counts)
        if longest > MAX_TOKENS_PER_INPUT:
            raise _Invalid(self.error_reply(400, (
                f"This model's maximum context length is {MAX_TOKENS_PER_INPUT} tokens, however you requested "
                f"{longest} tokens ({longest} in your prompt; 0 for the completion). Please reduce your prompt; "
                "or completion length.")))
        if sum(counts) > MAX_TOKENS_PER_REQUEST:
            raise _Invalid(self.error_reply(400, (
                f"Requested {sum(counts)} tokens, max {MAX_TOKENS_PER_REQUEST} tokens per request"),
                type="max_tokens_per_request"))
        return texts, self._dimensions(body, model), self._encoding(body)

    def _dimensions(self, body: dict[str, Any], model: str) -> int | None:
        dims = body.get("dimensions")
        if dims is None:
            return None
        native, shortens = self.models[model]
        if not shortens:
            raise _Invalid(self.error_reply(400, "This model does not support specifying dimensions."))
        if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
            raise _Invalid(self.error_reply(400, (
                f"Invalid value for 'dimensions' = {dims}. Must be a positive integer."), param="dimensions"))
        if dims > native:
            raise _Invalid(self.error_reply(400, (
                f"Invalid value for 'dimensions' = {dims}. Must be less than or equal to {native}."),
                param="dimensions"))
        return dims

    def _encoding(self, body: dict[str, Any]) -> str:
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise _Invalid(self.error_reply(400, (
                f"Invalid value: '{encoding}'. Supported values are: 'float' and 'base64'."),
                param="encoding_format", code="invalid_value"))
        return encoding


def _base64_body(vectors: Any, model: str, usage: dict[str, int]) -> bytes:
    """The JSON of a base64 answer, byte for byte what ``json.dumps`` makes of
    ``{"object": "list", "data": [{"object": "embedding", "index": i, "embedding": b64}, ..],
    "model", "usage"}``, built by joining: base64 text needs no escaping, and ``json.dumps`` would
    scan every character of every vector (~22 us a 1024-wide vector, a quarter of the
    emulator's CPU at benchmark sizes)."""
    items = ", ".join(f'{{"object": "embedding", "index": {i}, "embedding": "{encode_base64(v)}"}}'
                      for i, v in enumerate(vectors))
    tail = f'], "model": {json.dumps(model)}, "usage": {json.dumps(usage)}}}'
    return ('{"object": "list", "data": [' + items + tail).encode("ascii")


def _bearer(req: RecordedRequest) -> str | None:
    auth = req.headers.get("authorization", "")
    return auth[len("Bearer "):] if auth.startswith("Bearer ") else None


if __name__ == "__main__":
    serve_main(OpenAIServer)
