"""A loopback emulator of the Jina AI embeddings API (jina-embeddings-v4 and v3).

Speaks, per Jina's API docs:

* ``POST /v1/embeddings`` with ``Authorization: Bearer KEY`` (401 ``{"detail"}`` otherwise);
* body ``{"model", "input", "task"?, "dimensions"?, "embedding_type"?: "float" | "base64" |
  "binary" | "ubinary", "normalized"?, "truncate"?}``; an input is a string, ``{"text": ..}`` or,
  for jina-embeddings-v4, ``{"image": <http(s) URL, base64 bytes or a data URL>}`` (PNG, JPEG,
  WebP, GIF); at most 2048 inputs; ``dimensions`` within the model's Matryoshka range (128..2048 on
  v4, 32..1024 on v3); ``task`` from the model's adapters (it changes the vector);
* a text over the model's context is refused unless ``truncate`` is true;
* answers ``{"model", "object": "list", "usage": {"total_tokens", "prompt_tokens"}, "data":
  [{"object": "embedding", "index", "embedding"}]}``. The vector is the truncated prefix of a unit
  vector: unit length only when ``normalized`` is true (so a client that truncates must
  renormalize); ``base64`` is little-endian float32; images cost ceil(pixels / 784) tokens, at most
  768 (v4 reads 28x28 patches);
* schema errors are 422 with FastAPI's ``{"detail": [{"loc", "msg", "type"}]}``, other refusals 400
  ``{"detail": ".."}``.

Run standalone: ``python -m mrl_retrievers.emulators.jina_server --port 8003``.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._base import Fault, LoopbackServer, RecordedRequest, Reply, estimate_tokens, mutate_vectors, serve_main
from ._base import text_vector, unit
from ._images import BadImage, b64decode, decode, decode_data_url, url_identity

MAX_INPUTS = 2048
EMBEDDING_TYPES = ("float", "base64", "binary", "ubinary")
PATCH_PIXELS, MAX_IMAGE_TOKENS = 28 * 28, 768


@dataclass(frozen=True)
class JinaModel:
    native: int
    min_dim: int
    tasks: tuple[str, ...]
    context_tokens: int
    images: bool


JINA_MODELS: dict[str, JinaModel] = {
    "jina-embeddings-v4": JinaModel(2048, 128, ("retrieval.query", "retrieval.passage", "text-matching",
                                                "code.query", "code.passage"), 32_768, True),
    "jina-embeddings-v3": JinaModel(1024, 32, ("retrieval.query", "retrieval.passage", "separation",
                                               "classification", "text-matching"), 8_192, False),
}


class _Invalid(Exception):
    def __init__(self, reply: Reply) -> None:
        self.reply = reply


@dataclass(frozen=True)
class _Input:
    identity: str  # the text, "image:<sha256>" or "url:<url>": what the vector is drawn from
    tokens: int


class JinaServer(LoopbackServer):
    """Jina AI embeddings emulator.

    Args:
        models: extra or replacement entries ``{name: JinaModel(...)}``.
        **kwargs: see ``LoopbackServer``.
    """

    provider = "jina"

    def __init__(self, *, models: dict[str, JinaModel] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.models = {**JINA_MODELS, **(models or {})}

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def expected_vector(self, identity: str, *, model: str, dim: int | None = None, task: str | None = None,
                        normalized: bool = False) -> np.ndarray:
        """The vector this server returns for an input (a text, or ``image_identity(bytes)``)."""
        info = self.models[model]
        full = text_vector(identity, info.native, salt=f"{model}|{task or ''}")
        prefix = full[: dim or info.native]
        return unit(prefix) if normalized else prefix.copy()

    @staticmethod
    def image_identity(data: bytes) -> str:
        import hashlib  # noqa: PLC0415

        return "image:" + hashlib.sha256(data).hexdigest()

    # -- hooks ------------------------------------------------------------------------------------
    def texts_of(self, req: RecordedRequest) -> list[str]:
        try:
            return [i.identity for i in self._inputs(req.body, self.models.get(req.body.get("model")))]
        except (_Invalid, AttributeError):
            return []

    def count_tokens(self, req: RecordedRequest) -> int:
        try:
            return sum(i.tokens for i in self._inputs(req.body, self.models.get(req.body.get("model"))))
        except (_Invalid, AttributeError):
            return 1

    def authenticate(self, req: RecordedRequest) -> Reply | None:
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[len("Bearer "):] != self.api_key:
            return self.error_reply(401, "Invalid API key. Please get your free API key at https://jina.ai/embeddings/")
        return None

    def error_reply(self, status: int, message: str, **extra: Any) -> Reply:
        return Reply(status, {"detail": message})

    def respond(self, req: RecordedRequest, fault: Fault | None) -> Reply:
        try:
            model, info = self._route(req)
            body = req.body
            inputs = self._inputs(body, info)
            dim, task, kind, normalized = self._options(body, info)
        except _Invalid as bad:
            return bad.reply
        vectors = [self.expected_vector(i.identity, model=model, dim=dim, task=task, normalized=normalized)
                   for i in inputs]
        vectors = mutate_vectors(vectors, fault)
        data = [{"object": "embedding", "index": i, "embedding": _encode(v, kind)} for i, v in enumerate(vectors)]
        tokens = sum(i.tokens for i in inputs)
        return Reply(200, {"model": model, "object": "list", "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
                           "data": data})

    # -- validation ---------------------------------------------------------------------------------
    def _route(self, req: RecordedRequest) -> tuple[str, JinaModel]:
        if req.method != "POST" or req.path != "/v1/embeddings":
            raise _Invalid(self.error_reply(404, "Not Found"))
        if not isinstance(req.body, dict):
            raise _Invalid(_schema_error(["body"], "Input should be a valid dictionary or object"))
        model = req.body.get("model")
        if model not in self.models:
            raise _Invalid(self.error_reply(400, f"Model '{model}' not found. Available models: {sorted(self.models)}"))
        return model, self.models[model]

    def _inputs(self, body: dict[str, Any], info: JinaModel | None) -> list[_Input]:
        raw = body.get("input")
        items = [raw] if isinstance(raw, (str, dict)) else raw
        if not isinstance(items, list) or not items:
            raise _Invalid(_schema_error(["body", "input"], "Input should be a non-empty list"))
        if len(items) > MAX_INPUTS:
            raise _Invalid(self.error_reply(400, f"Too many inputs: {len(items)}; the limit is {MAX_INPUTS}"))
        return [self._input(i, item, info, body.get("truncate", False)) for i, item in enumerate(items)]

    def _input(self, i: int, item: Any, info: JinaModel | None, truncate: Any) -> _Input:
        if isinstance(item, dict) and set(item) == {"text"}:
            item = item["text"]
        if isinstance(item, str):
            tokens = estimate_tokens(item)
            if info is not None and tokens > info.context_tokens:
                if truncate is not True:
                    raise _Invalid(self.error_reply(400, (
                        f"Input {i} has {tokens} tokens, above the model's {info.context_tokens}; set truncate "
                        "to true to cut it")))
                item, tokens = item[: info.context_tokens * 4], info.context_tokens
            return _Input(item, tokens)
        if not (isinstance(item, dict) and set(item) == {"image"} and isinstance(item["image"], str)):
            raise _Invalid(_schema_error(["body", "input", i], "Input should be a string, {'text': str} or "
                                                                "{'image': str}"))
        if info is not None and not info.images:
            raise _Invalid(self.error_reply(400, "This model does not support image input; use jina-embeddings-v4"))
        try:
            return _image_input(item["image"])
        except BadImage as exc:
            raise _Invalid(self.error_reply(400, f"Invalid image at input {i}: {exc}")) from None

    def _options(self, body: dict[str, Any], info: JinaModel) -> tuple[int, str | None, str, bool]:
        dims = body.get("dimensions")
        if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int)):
            raise _Invalid(_schema_error(["body", "dimensions"], "Input should be a valid integer"))
        if dims is not None and not info.min_dim <= dims <= info.native:
            raise _Invalid(self.error_reply(400, (
                f"dimensions must be between {info.min_dim} and {info.native} for this model, got {dims}")))
        task = body.get("task")
        if task is not None and task not in info.tasks:
            raise _Invalid(self.error_reply(400, f"Invalid task '{task}'. Supported tasks: {', '.join(info.tasks)}"))
        kind = body.get("embedding_type", "float")
        if kind not in EMBEDDING_TYPES:
            raise _Invalid(self.error_reply(400, f"embedding_type must be one of {', '.join(EMBEDDING_TYPES)}"))
        for flag in ("normalized", "truncate", "late_chunking", "return_multivector"):
            if flag in body and not isinstance(body[flag], bool):
                raise _Invalid(_schema_error(["body", flag], "Input should be a valid boolean"))
        return dims or info.native, task, kind, body.get("normalized") is True


def _image_input(value: str) -> _Input:
    if value.startswith(("http://", "https://")):
        return _Input(url_identity(value), MAX_IMAGE_TOKENS)
    if value.startswith("data:"):
        _declared, image = decode_data_url(value)
    else:
        image = decode(b64decode(value))
    return _Input(image.identity, min(MAX_IMAGE_TOKENS, math.ceil(image.pixels / PATCH_PIXELS)))


def _schema_error(loc: list[Any], msg: str) -> Reply:
    return Reply(422, {"detail": [{"loc": loc, "msg": msg, "type": "value_error"}]})


def _encode(vec: np.ndarray, kind: str) -> Any:
    if kind == "float":
        return [float(x) for x in vec]
    if kind == "base64":
        return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")
    packed = np.packbits(vec > 0)
    values = packed if kind == "ubinary" else (packed.astype(np.int16) - 128).astype(np.int8)
    return [int(x) for x in values]


if __name__ == "__main__":
    serve_main(JinaServer)
