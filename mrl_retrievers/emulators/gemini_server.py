"""A loopback emulator of the Gemini Developer API's embedding methods.

Speaks, per FACTS.md:

* ``POST /{v1|v1beta}/models/{model}:batchEmbedContents`` (what google-genai sends) and
  ``:embedContent``; the key in the ``x-goog-api-key`` header (or ``?key=``);
* body ``{"requests": [{"model": "models/..", "content": {"parts": [{"text": ..}], "role": "user"},
  "taskType"?, "title"?, "outputDimensionality"?}]}``, at most 100 items, each item's model equal to
  the URL's; answers ``{"embeddings": [{"values": [..]}]}``, one embedding per *item*: an item whose
  content has several parts is embedded as ONE text (the trap google-genai sets for
  gemini-embedding-2 when given a plain list of strings: it merges them into one Content);
* gemini-embedding-001: 128..3072 wide, only 3072 is unit length (shorter outputs are raw prefixes,
  NOT normalized, as the real API does); task type changes the vector;
* gemini-embedding-2: 128..3072, unit at every width; no task type (the server records it but the
  vector ignores it: the prompt prefixes in the text are what matter);
* over-long inputs are truncated silently (the API's autoTruncate default);
* gemini-embedding-2 is multimodal: a part is ``{"text"}``, ``{"inline_data": {"mime_type",
  "data"}}`` (camelCase ``inlineData`` / ``mimeType`` too: proto JSON takes both; google-genai sends
  snake_case and URL-safe base64, which proto JSON also takes) or ``{"file_data": {"file_uri",
  "mime_type"}}`` for a Files API upload; images PNG or JPEG, at most 6 in one content; text and
  images in one content give ONE embedding, drawn from the parts in order. Text-only models refuse
  image parts with 400 INVALID_ARGUMENT;
* errors ``{"error": {"code", "message", "status"[, "details"]}}``; a missing key is 403
  PERMISSION_DENIED, a wrong key 400 INVALID_ARGUMENT with reason API_KEY_INVALID (as the real API
  does: not 401); 429 RESOURCE_EXHAUSTED carries the delay in a ``google.rpc.RetryInfo`` detail
  (``retryDelay``), not in a Retry-After header.

Run standalone: ``python -m mrl_retrievers.emulators.gemini_server --port 8001 --rpm 60``.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._base import Fault, LoopbackServer, RecordedRequest, Reply, mutate_vectors, serve_main, text_vector, unit
from ._images import BadImage, decode

MAX_IMAGES_PER_CONTENT = 6
FILES_API = "https://generativelanguage.googleapis.com/v1beta/files/"

MAX_BATCH = 100


@dataclass(frozen=True)
class GeminiModel:
    native: int
    min_dim: int = 128
    normalized_below_native: bool = True
    task_types: bool = True
    image_types: tuple[str, ...] = ()  # empty: text only


GEMINI_MODELS: dict[str, GeminiModel] = {
    "gemini-embedding-001": GeminiModel(3072, normalized_below_native=False),
    "gemini-embedding-2": GeminiModel(3072, task_types=False, image_types=("image/png", "image/jpeg")),
    "gemini-embedding-2-preview": GeminiModel(3072, task_types=False, image_types=("image/png", "image/jpeg")),
    "text-embedding-004": GeminiModel(768, min_dim=1),
}

TASK_TYPES = {
    "TASK_TYPE_UNSPECIFIED", "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY",
    "CLASSIFICATION", "CLUSTERING", "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY",
}

STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED",
    503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}

_PATH = re.compile(r"^/(v1|v1beta)/models/([^/:]+):(batchEmbedContents|embedContent)$")


class _Invalid(Exception):
    def __init__(self, reply: Reply) -> None:
        self.reply = reply


class GeminiServer(LoopbackServer):
    """Gemini Developer API embeddings emulator.

    Args:
        models: extra or replacement entries ``{name: GeminiModel(...)}``.
        **kwargs: see ``LoopbackServer``.
    """

    provider = "gemini"

    def __init__(self, *, models: dict[str, GeminiModel] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.models = {**GEMINI_MODELS, **(models or {})}

    @property
    def base_url(self) -> str:
        # google-genai takes the host; it adds /{api_version}/models/... itself.
        return self.url

    def expected_vector(self, text: str, *, model: str, dim: int | None = None, task_type: str | None = None
                        ) -> np.ndarray:
        """The vector this server returns (NOT unit length for gemini-embedding-001 below 3072)."""
        info = self.models[model]
        full = text_vector(text, info.native, salt=_salt(model, task_type if info.task_types else None))
        width = dim or info.native
        if width == info.native or info.normalized_below_native:
            return unit(full[:width])
        return full[:width].copy()

    # -- hooks ------------------------------------------------------------------------------------
    def texts_of(self, req: RecordedRequest) -> list[str]:
        return [_content_text(item.get("content")) for item in _items(req)]

    def authenticate(self, req: RecordedRequest) -> Reply | None:
        given = req.headers.get("x-goog-api-key") or req.query.get("key")
        if not given:
            return self.error_reply(403, (
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API."))
        if given != self.api_key:
            return self.error_reply(400, "API key not valid. Please pass a valid API key.", details=[{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}])
        return None

    def error_reply(self, status: int, message: str, **extra: Any) -> Reply:
        error: dict[str, Any] = {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}
        if extra.get("details"):
            error["details"] = extra["details"]
        return Reply(status, {"error": error})

    def fault_reply(self, fault: Fault) -> Reply:
        if fault.status == 429 and fault.retry_delay is not None and fault.body is None:
            reply = self._exhausted(fault.retry_delay)
            reply.headers.update(dict(fault.headers))
            return reply
        return super().fault_reply(fault)

    def rate_limit_reply(self, wait: float) -> Reply:
        return self._exhausted(wait)

    def _exhausted(self, delay: float) -> Reply:
        return self.error_reply(429, (
            f"You exceeded your current quota, please check your plan and billing details. Please retry in "
            f"{delay:.3f}s."), details=[{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                          "retryDelay": f"{delay:g}s"}])

    def respond(self, req: RecordedRequest, fault: Fault | None) -> Reply:
        try:
            model, method = self._route(req)
            items = self._validate(req, model, method)
        except _Invalid as bad:
            return bad.reply
        vectors = [
            self.expected_vector(_content_text(item["content"]), model=model,
                                 dim=item.get("outputDimensionality"), task_type=item.get("taskType"))
            for item in items
        ]
        vectors = mutate_vectors(vectors, fault)
        if method == "embedContent":
            return Reply(200, {"embedding": {"values": [float(x) for x in vectors[0]]} if vectors else {}})
        return Reply(200, {"embeddings": [{"values": [float(x) for x in v]} for v in vectors]})

    # -- validation ---------------------------------------------------------------------------------
    def _route(self, req: RecordedRequest) -> tuple[str, str]:
        match = _PATH.match(req.path)
        if req.method != "POST" or match is None:
            raise _Invalid(Reply(404, b"<!DOCTYPE html><title>Error 404 (Not Found)!!1</title>"))
        _, model, method = match.groups()
        if model not in self.models:
            raise _Invalid(self.error_reply(404, (
                f"models/{model} is not found for API version {match.group(1)}, or is not supported for "
                f"{method}. Call ListModels to see the list of available models and their supported methods.")))
        if not isinstance(req.body, dict):
            raise _Invalid(self.error_reply(400, "Invalid JSON payload received."))
        return model, method

    def _validate(self, req: RecordedRequest, model: str, method: str) -> list[dict[str, Any]]:
        items = _items(req)
        where = "BatchEmbedContentsRequest.requests" if method == "batchEmbedContents" else "EmbedContentRequest"
        if method == "batchEmbedContents" and not items:
            raise _Invalid(self.error_reply(400, f"* {where}: contents is not specified\n"))
        if len(items) > MAX_BATCH:
            raise _Invalid(self.error_reply(400, f"* {where}: at most {MAX_BATCH} requests can be in one batch\n"))
        info = self.models[model]
        for i, item in enumerate(items):
            if method == "batchEmbedContents" and item.get("model") != f"models/{model}":
                raise _Invalid(self.error_reply(400, (
                    f"Model in request {i} ({item.get('model')}) does not match the model in the URL "
                    f"(models/{model}).")))
            content = item.get("content")
            if not isinstance(content, dict) or not content.get("parts"):
                raise _Invalid(self.error_reply(
                    400, f"* {where}[{i}].content.parts: contents.parts must not be empty\n"))
            try:
                _check_parts(content["parts"], info, model)
            except BadImage as bad:
                raise _Invalid(self.error_reply(400, f"* {where}[{i}].content.parts: {bad}\n")) from None
            task = item.get("taskType")
            if task is not None and task not in TASK_TYPES:
                raise _Invalid(self.error_reply(400, (
                    f"Invalid value at 'requests[{i}].task_type' (type.googleapis.com/google.ai.generativelanguage."
                    f"v1beta.TaskType), \"{task}\"")))
            dims = item.get("outputDimensionality")
            if dims is not None and (not isinstance(dims, int) or not info.min_dim <= dims <= info.native):
                raise _Invalid(self.error_reply(400, (
                    f"* {where}[{i}].output_dimensionality: must be between {info.min_dim} and {info.native}, "
                    f"got {dims}\n")))
        return items


def _items(req: RecordedRequest) -> list[dict[str, Any]]:
    body = req.body if isinstance(req.body, dict) else {}
    if "requests" in body:
        return [r for r in body["requests"] if isinstance(r, dict)] if isinstance(body["requests"], list) else []
    if "content" in body:  # :embedContent carries one item at the top level
        return [body]
    return []


def _content_text(content: Any) -> str:
    """One identity per Content: several parts are embedded together, as the real API does (texts
    by their text, images by the sha256 of their bytes, in order)."""
    parts = content.get("parts", []) if isinstance(content, dict) else []
    return "\n".join(_part_identity(p) for p in parts if isinstance(p, dict))


def image_identity(data: bytes) -> str:
    """What an image part stands for in ``_content_text`` (and so in ``expected_vector``)."""
    import hashlib  # noqa: PLC0415

    return "image:" + hashlib.sha256(data).hexdigest()


def _part_identity(part: dict[str, Any]) -> str:
    blob = _field(part, "inline_data")
    if isinstance(blob, dict):
        try:
            return image_identity(_proto_bytes(_field(blob, "data")))
        except BadImage:
            return "image:invalid"
    files = _field(part, "file_data")
    if isinstance(files, dict):
        return "file:" + str(_field(files, "file_uri"))
    return part.get("text", "")


def _field(obj: dict[str, Any], snake: str) -> Any:
    """A proto JSON field by its snake_case or lowerCamelCase name (the API takes both)."""
    head, *rest = snake.split("_")
    return obj.get(snake, obj.get(head + "".join(w.title() for w in rest)))


def _proto_bytes(value: Any) -> bytes:
    """Proto JSON ``bytes``: standard or URL-safe base64, padded or not."""
    if not isinstance(value, str) or not value:
        raise BadImage("inline_data.data must be a non-empty base64 string")
    text = value.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise BadImage("inline_data.data is not valid base64") from None


def _check_parts(parts: Any, info: GeminiModel, model: str) -> None:
    """Each part is a text, an inline image or a Files API file, and the model takes it."""
    images = 0
    for j, part in enumerate(parts if isinstance(parts, list) else []):
        if not isinstance(part, dict):
            raise BadImage(f"part {j} is not an object")
        if "text" in part:
            continue
        blob, files = _field(part, "inline_data"), _field(part, "file_data")
        if blob is None and files is None:
            raise BadImage(f"part {j} has no text, inline_data or file_data")
        if not info.image_types:
            raise BadImage(f"{model} does not support multimodal input (part {j} is not text)")
        images += 1
        mime = _field(blob if blob is not None else files, "mime_type")
        if mime not in info.image_types:
            raise BadImage(f"part {j}: mime type {mime!r} is not supported; supported: {', '.join(info.image_types)}")
        if files is not None:
            if not str(_field(files, "file_uri")).startswith(FILES_API):
                raise BadImage(f"part {j}: file_data.file_uri must name a file uploaded with the Files API")
            continue
        decoded = decode(_proto_bytes(_field(blob, "data")))
        if decoded.media_type != mime:
            raise BadImage(f"part {j}: the data is {decoded.media_type}, not {mime}")
    if images > MAX_IMAGES_PER_CONTENT:
        raise BadImage(f"at most {MAX_IMAGES_PER_CONTENT} images per content, got {images}")


def _salt(model: str, task_type: str | None) -> str:
    return f"{model}|{task_type or ''}"


if __name__ == "__main__":
    serve_main(GeminiServer)
