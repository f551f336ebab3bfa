"""A loopback emulator of the Voyage AI embeddings API.

Speaks, per FACTS.md:

* ``POST /v1/embeddings`` with ``Authorization: Bearer KEY``;
* body ``{"input", "model", "input_type": "query"|"document"|null, "truncation": bool,
  "output_dtype": null|"float"|"int8"|"uint8"|"binary"|"ubinary", "output_dimension": int|null,
  "encoding_format": null|"base64"}`` (the SDK sends unset options as null);
* ``output_dimension`` in {256, 512, 1024, 2048} on the flexible models, nothing else on the
  fixed-width ones; at most 1000 texts; a per-model token cap per request; ``input_type`` changes
  the vector (the real API prepends a retrieval prompt);
* answers ``{"object":"list","data":[{"object":"embedding","embedding":..,"index":i}],"model",
  "usage":{"total_tokens"}}`` with unit vectors; base64 is little-endian float32 (or the raw
  int8/uint8 bytes for the integer dtypes);
* errors ``{"detail": ".."}``; the SDK maps 400/401/422/429 from the body and 500/502/503/504 by status;
* ``POST /v1/multimodalembeddings`` for voyage-multimodal-3.5 and -3 (interleaved text and image
  segments): see ``voyage_multimodal.py``. Each endpoint refuses the other's models.

Run standalone: ``python -m mrl_retrievers.emulators.voyage_server --port 8002 --tpm 1000000``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._base import Fault, LoopbackServer, RecordedRequest, Reply, encode_base64, estimate_tokens, mutate_vectors
from ._base import serve_main, text_vector, unit
from . import voyage_multimodal as mm

MAX_INPUTS = 1000
FLEXIBLE_DIMS = (256, 512, 1024, 2048)


@dataclass(frozen=True)
class VoyageModel:
    default_dim: int
    allowed_dims: tuple[int, ...] | None  # None: one fixed width
    max_tokens_per_request: int
    context_tokens: int = 32_000


VOYAGE_MODELS: dict[str, VoyageModel] = {
    "voyage-4-large": VoyageModel(1024, FLEXIBLE_DIMS, 120_000),
    "voyage-4": VoyageModel(1024, FLEXIBLE_DIMS, 320_000),
    "voyage-4-lite": VoyageModel(1024, FLEXIBLE_DIMS, 1_000_000),
    "voyage-3-large": VoyageModel(1024, FLEXIBLE_DIMS, 120_000),
    "voyage-3.5": VoyageModel(1024, FLEXIBLE_DIMS, 320_000),
    "voyage-3.5-lite": VoyageModel(1024, FLEXIBLE_DIMS, 1_000_000),
    "voyage-code-3": VoyageModel(1024, FLEXIBLE_DIMS, 120_000),
    "voyage-3": VoyageModel(1024, None, 320_000),
    "voyage-3-lite": VoyageModel(512, None, 1_000_000),
    "voyage-finance-2": VoyageModel(1024, None, 120_000),
    "voyage-law-2": VoyageModel(1024, None, 120_000, context_tokens=16_000),
    "voyage-multilingual-2": VoyageModel(1024, None, 120_000),
    "voyage-code-2": VoyageModel(1536, None, 120_000, context_tokens=16_000),
}
VOYAGE_MULTIMODAL_MODELS: dict[str, VoyageModel] = {
    "voyage-multimodal-3.5": VoyageModel(1024, FLEXIBLE_DIMS, mm.REQUEST_TOKENS),
    "voyage-multimodal-3": VoyageModel(1024, None, mm.REQUEST_TOKENS),
}

DTYPES = (None, "float", "int8", "uint8", "binary", "ubinary")


class _Invalid(Exception):
    def __init__(self, reply: Reply) -> None:
        self.reply = reply


class VoyageServer(LoopbackServer):
    """Voyage AI embeddings emulator.

    Args:
        models: extra or replacement entries ``{name: VoyageModel(...)}``.
        **kwargs: see ``LoopbackServer``.
    """

    provider = "voyage"

    def __init__(self, *, models: dict[str, VoyageModel] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.models = {**VOYAGE_MODELS, **(models or {})}
        self.multimodal_models = dict(VOYAGE_MULTIMODAL_MODELS)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def expected_vector(self, text: str, *, model: str, dim: int | None = None, input_type: str | None = None
                        ) -> np.ndarray:
        """The float vector this server returns for ``text`` (unit length); for a multimodal model,
        ``text`` is an input's identity (``multimodal_identity``)."""
        info = self.models.get(model) or self.multimodal_models[model]
        full_width = max(info.allowed_dims) if info.allowed_dims else info.default_dim
        full = text_vector(text, full_width, salt=f"{model}|{input_type or ''}")
        return unit(full[: dim or info.default_dim])

    # -- hooks ------------------------------------------------------------------------------------
    @staticmethod
    def multimodal_identity(*parts: str | bytes) -> str:
        """The identity of one multimodal input given its parts in order (a ``str`` is text, ``bytes``
        an image, ``("url", u)`` an image URL): what ``expected_vector`` takes for it."""
        import hashlib  # noqa: PLC0415

        pieces = []
        for part in parts:
            if isinstance(part, str):
                pieces.append("text:" + part)
            elif isinstance(part, tuple):
                pieces.append("url:" + part[1])
            else:
                pieces.append("image:" + hashlib.sha256(part).hexdigest())
        return "\x1f".join(pieces)

    def texts_of(self, req: RecordedRequest) -> list[str]:
        if req.path == mm.MULTIMODAL_PATH:  # one identity per input: what was paid for
            try:
                return [mm.identity(segments) for segments in mm.parse_inputs(req.body, estimate_tokens)]
            except (mm.Refused, AttributeError, TypeError):
                return []
        body = req.body if isinstance(req.body, dict) else {}
        raw = body.get("input")
        if isinstance(raw, str):
            return [raw]
        return [t for t in raw if isinstance(t, str)] if isinstance(raw, list) else []

    def authenticate(self, req: RecordedRequest) -> Reply | None:
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return self.error_reply(401, "No API key provided. Please pass your API key in the Authorization header.")
        if auth[len("Bearer "):] != self.api_key:
            return self.error_reply(401, "Provided API key is invalid.")
        return None

    def error_reply(self, status: int, message: str, **extra: Any) -> Reply:
        return Reply(status, {"detail": message})

    def count_tokens(self, req: RecordedRequest) -> int:
        if req.path == mm.MULTIMODAL_PATH:
            try:
                return sum(s.tokens for segments in mm.parse_inputs(req.body, estimate_tokens) for s in segments)
            except (mm.Refused, AttributeError, TypeError):
                return 1
        return super().count_tokens(req)

    def respond(self, req: RecordedRequest, fault: Fault | None) -> Reply:
        if req.path == mm.MULTIMODAL_PATH and req.method == "POST":
            return self._respond_multimodal(req, fault)
        try:
            model = self._route(req)
            texts, dims, dtype, encoding = self._validate(req.body, model)
        except _Invalid as bad:
            return bad.reply
        input_type = req.body.get("input_type")
        vectors = [self.expected_vector(t, model=model, dim=dims, input_type=input_type) for t in texts]
        vectors = mutate_vectors(vectors, fault)
        data = [{"object": "embedding", "embedding": _encode(v, dtype, encoding), "index": i}
                for i, v in enumerate(vectors)]
        tokens = sum(estimate_tokens(t) for t in texts)
        return Reply(200, {"object": "list", "data": data, "model": model, "usage": {"total_tokens": tokens}})

    def _respond_multimodal(self, req: RecordedRequest, fault: Fault | None) -> Reply:
        body = req.body
        if not isinstance(body, dict):
            return self.error_reply(422, "Request body is not valid JSON.")
        model = body.get("model")
        if model not in self.multimodal_models:
            return self.error_reply(400, (
                f"Model {model} is not supported by the multimodal embeddings endpoint. Supported models are "
                f"{sorted(self.multimodal_models)}."))
        info = self.multimodal_models[model]
        try:
            parsed = mm.parse_inputs(body, estimate_tokens)
            _, dims, dtype, encoding = self._validate({**body, "input": ["x"]}, model, info)
        except mm.Refused as bad:
            return self.error_reply(400, str(bad))
        except _Invalid as bad:
            return bad.reply
        input_type = body.get("input_type")
        vectors = [self.expected_vector(mm.identity(s), model=model, dim=dims, input_type=input_type) for s in parsed]
        vectors = mutate_vectors(vectors, fault)
        data = [{"object": "embedding", "embedding": _encode(v, dtype, encoding), "index": i}
                for i, v in enumerate(vectors)]
        return Reply(200, {"object": "list", "data": data, "model": model, "usage": mm.usage(parsed)})

    # -- validation ---------------------------------------------------------------------------------
    def _route(self, req: RecordedRequest) -> str:
        if req.method != "POST" or req.path != "/v1/embeddings":
            raise _Invalid(self.error_reply(404, "Not Found"))
        body = req.body
        if not isinstance(body, dict):
            raise _Invalid(self.error_reply(422, "Request body is not valid JSON."))
        model = body.get("model")
        if model in self.multimodal_models:
            raise _Invalid(self.error_reply(400, (
                f"Model {model} is a multimodal model: use the multimodal embeddings endpoint "
                f"({mm.MULTIMODAL_PATH}).")))
        if model not in self.models:
            raise _Invalid(self.error_reply(400, (
                f"Model {model} is not supported. Supported models are {sorted(self.models)}.")))
        return model

    def _validate(self, body: dict[str, Any], model: str, info: VoyageModel | None = None
                  ) -> tuple[list[str], int, str | None, str | None]:
        info = info or self.models[model]
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise _Invalid(self.error_reply(400, "Input should be a string or a non-empty list of strings."))
        if len(texts) > MAX_INPUTS:
            raise _Invalid(self.error_reply(400, (
                f"The batch size limit is {MAX_INPUTS}. Your batch size is {len(texts)}.")))
        if body.get("input_type") not in (None, "query", "document"):
            raise _Invalid(self.error_reply(400, (
                f"Value '{body.get('input_type')}' supplied for argument 'input_type' is not valid. "
                "Supported values are: None, 'query', 'document'.")))
        texts = self._truncate(texts, info, body.get("truncation", True))
        tokens = sum(estimate_tokens(t) for t in texts)
        if tokens > info.max_tokens_per_request:
            raise _Invalid(self.error_reply(400, (
                f"Request to model '{model}' failed. The max allowed tokens per submitted batch is "
                f"{info.max_tokens_per_request}. Your batch has {tokens} tokens after truncation. "
                "Please lower the number of tokens in the batch.")))
        dtype, encoding = body.get("output_dtype"), body.get("encoding_format")
        if dtype not in DTYPES:
            raise _Invalid(self.error_reply(400, f"Value '{dtype}' supplied for argument 'output_dtype' is not valid."))
        if encoding not in (None, "base64"):
            raise _Invalid(self.error_reply(400, (
                f"Value '{encoding}' supplied for argument 'encoding_format' is not valid. "
                "Supported values are: None, 'base64'.")))
        return texts, self._dimension(body.get("output_dimension"), model, info), dtype, encoding

    def _dimension(self, dims: Any, model: str, info: VoyageModel) -> int:
        if dims is None:
            return info.default_dim
        allowed = info.allowed_dims or ()
        if dims not in allowed:
            supported = ", ".join(map(str, allowed)) if allowed else f"None (the model {model} has a fixed width)"
            raise _Invalid(self.error_reply(400, (
                f"Value '{dims}' supplied for argument 'output_dimension' is not valid for model {model}. "
                f"Supported values are: {supported}.")))
        return dims

    def _truncate(self, texts: list[str], info: VoyageModel, truncation: Any) -> list[str]:
        over = [i for i, t in enumerate(texts) if estimate_tokens(t) > info.context_tokens]
        if over and truncation is False:
            raise _Invalid(self.error_reply(400, (
                f"Input {over[0]} exceeds the context length of {info.context_tokens} tokens and truncation "
                "is disabled.")))
        return [t[: info.context_tokens * 4] if i in over else t for i, t in enumerate(texts)]


def _encode(vec: np.ndarray, dtype: str | None, encoding: str | None) -> Any:
    """A vector in the requested dtype, as a JSON list or base64 (the integer dtypes as raw bytes)."""
    if dtype in (None, "float"):
        return encode_base64(vec) if encoding == "base64" else [float(x) for x in vec]
    if dtype in ("int8", "uint8"):
        scaled = np.clip(np.round(vec * 127 / max(1e-9, float(np.abs(vec).max()))), -128, 127)
        values = scaled.astype(np.int8) if dtype == "int8" else (scaled + 128).astype(np.uint8)
    else:  # binary / ubinary: one bit a dimension, 8 dims a byte (binary is offset to int8)
        packed = np.packbits(vec > 0)
        values = packed if dtype == "ubinary" else (packed.astype(np.int16) - 128).astype(np.int8)
    if encoding == "base64":
        return base64.b64encode(values.tobytes()).decode("ascii")
    return [int(x) for x in values]


if __name__ == "__main__":
    serve_main(VoyageServer)
