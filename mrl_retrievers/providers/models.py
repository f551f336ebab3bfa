"""The known-models table: widths, limits, normalization and query/document marking per model.

Adapters read it to validate a width before any request, to pick the width to ask the API for, and
to batch within the API's limits. A model missing from the table still works when the caller states
the width (``dim=``); an Azure deployment name can state ``native_dim=`` as well.

Example:
    >>> resolve_width("voyage", "voyage-4", None)
    Width(dim=1024, request_dim=1024, response_dim=1024)
    >>> resolve_width("local", "all-MiniLM-L6-v2", 128).response_dim
    384
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..checks import positive_int
from ..errors import ConfigError, UnsupportedDimensionError

Marking = Literal["none", "task_type", "input_type", "prefix", "task"]
Normalization = Literal["always", "native_only", "never"]


@dataclass(frozen=True)
class ModelInfo:
    """What we know about one model.

    Attributes:
        provider / name: registry name and the model's canonical name.
        native_dim: the width returned when no width is asked for.
        min_dim / max_dim: the range of widths that may be asked for (``dims`` narrows it).
        dims: the only widths allowed, when the API takes a fixed set (Voyage), else None.
        native_shortening: the API returns the asked width itself (OpenAI ``dimensions``, Gemini
            ``output_dimensionality``, Voyage ``output_dimension``); else we truncate.
        normalization: whether the API's vectors are unit length ("native_only": only at
            ``native_dim``). We renormalize regardless; this documents why it matters.
        mrl: trained with Matryoshka loss (prefixes are meaningful without a rotation).
        max_batch / max_batch_tokens / max_text_tokens: request limits (None = not documented).
        marking: how queries and documents are told apart ("task_type", "input_type" or a text
            "prefix"); ``query_marker`` / ``document_marker`` are the values.
        layer_norm: apply layer normalization before truncation (nomic-embed-text-v1.5).
        aliases: other names that mean this model (hub ids, short names).
        modalities: what the model embeds into its one space: ("text",) or ("image", "text").
        interleaved: one input may mix texts and images into one vector.
        image_types: the image media types the API takes.
        image_urls: the API fetches http(s) image URLs itself (else images travel as bytes).
        max_images_per_input: most images in one input (None = no documented limit).
    """

    provider: str
    name: str
    native_dim: int
    min_dim: int = 1
    max_dim: int | None = None
    dims: tuple[int, ...] | None = None
    native_shortening: bool = False
    normalization: Normalization = "always"
    mrl: bool = True
    max_batch: int = 128
    max_batch_tokens: int | None = None
    max_text_tokens: int | None = None
    marking: Marking = "none"
    query_marker: str | None = None
    document_marker: str | None = None
    layer_norm: bool = False
    aliases: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ("text",)
    interleaved: bool = False
    image_types: tuple[str, ...] = ()
    image_urls: bool = False
    max_images_per_input: int | None = None

    @property
    def widest(self) -> int:
        return self.max_dim if self.max_dim is not None else self.native_dim

    def allows(self, dim: int) -> bool:
        if self.dims is not None:
            return dim in self.dims
        return self.min_dim <= dim <= self.widest

    def describe_widths(self) -> str:
        if self.dims is not None:
            return "{" + ", ".join(map(str, self.dims)) + "}"
        return f"{self.min_dim}..{self.widest}"


_OPENAI_LIMITS = dict(max_batch=2048, max_batch_tokens=300_000, max_text_tokens=8192)
_ALL_IMAGES = ("image/png", "image/jpeg", "image/webp", "image/gif")
# Voyage multimodal (docs): text, image_url or image_base64 segments, interleaved; PNG, JPEG, WebP
# and GIF; 1000 inputs, 32k tokens an input and 320k a request, images at 560 pixels a token.
_VOYAGE_MM = dict(max_batch=1000, max_batch_tokens=320_000, max_text_tokens=32_000, marking="input_type",
                  query_marker="query", document_marker="document", modalities=("image", "text"),
                  interleaved=True, image_types=_ALL_IMAGES, image_urls=True)
_VOYAGE_DIMS = (256, 512, 1024, 2048)
_GEMINI2_QUERY = "task: search result | query: "
_GEMINI2_DOCUMENT = "title: none | text: "
_MXBAI_QUERY = "Represent this sentence for searching relevant passages: "
_QWEN3_QUERY = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"


def _voyage(name: str, batch_tokens: int) -> ModelInfo:
    return ModelInfo(
        "voyage", name, native_dim=1024, max_dim=2048, dims=_VOYAGE_DIMS, native_shortening=True,
        max_batch=1000, max_batch_tokens=batch_tokens, max_text_tokens=32_000,
        marking="input_type", query_marker="query", document_marker="document",
    )


MODELS: tuple[ModelInfo, ...] = (
    # --- OpenAI: `dimensions` on text-embedding-3 only; ada-002 answers 400 when it is sent.
    ModelInfo("openai", "text-embedding-3-small", 1536, native_shortening=True, **_OPENAI_LIMITS),
    ModelInfo("openai", "text-embedding-3-large", 3072, native_shortening=True, **_OPENAI_LIMITS),
    ModelInfo("openai", "text-embedding-ada-002", 1536, mrl=False, **_OPENAI_LIMITS),
    # --- Gemini: 001 is unit length only at 3072; 2 takes no task type, wants prompt prefixes.
    ModelInfo("gemini", "gemini-embedding-001", 3072, min_dim=128, native_shortening=True,
              normalization="native_only", max_batch=100, max_text_tokens=2048, marking="task_type",
              query_marker="RETRIEVAL_QUERY", document_marker="RETRIEVAL_DOCUMENT"),
    # gemini-embedding-2 is multimodal (docs): PNG and JPEG as inline bytes, at most 6 images a
    # prompt (one Content = one embedding), interleaved with text.
    ModelInfo("gemini", "gemini-embedding-2", 3072, min_dim=128, native_shortening=True,
              max_batch=100, max_text_tokens=8192, marking="prefix",
              query_marker=_GEMINI2_QUERY, document_marker=_GEMINI2_DOCUMENT,
              modalities=("image", "text"), interleaved=True, image_types=("image/png", "image/jpeg"),
              max_images_per_input=6),
    # --- Voyage: output_dimension in a fixed set; token caps per request differ by size.
    _voyage("voyage-4", 320_000),
    _voyage("voyage-4-large", 120_000),
    _voyage("voyage-4-lite", 1_000_000),
    _voyage("voyage-3.5", 320_000),
    _voyage("voyage-3.5-lite", 1_000_000),
    _voyage("voyage-3-large", 120_000),
    _voyage("voyage-code-3", 120_000),
    _voyage("voyage-context-3", 120_000),
    ModelInfo("voyage", "voyage-multimodal-3.5", 1024, max_dim=2048, dims=_VOYAGE_DIMS, native_shortening=True,
              **_VOYAGE_MM),
    ModelInfo("voyage", "voyage-multimodal-3", 1024, mrl=False, **_VOYAGE_MM),
    # --- Jina (docs): v4 takes {"text"} and {"image": URL or base64} inputs, `dimensions` 128..2048
    # (Matryoshka), `task` retrieval.query / retrieval.passage; one text or one image per input.
    ModelInfo("jina", "jina-embeddings-v4", 2048, min_dim=128, native_shortening=True, max_batch=2048,
              max_text_tokens=32_768, marking="task", query_marker="retrieval.query",
              document_marker="retrieval.passage", modalities=("image", "text"), image_types=_ALL_IMAGES,
              image_urls=True),
    # --- local (sentence-transformers): we always truncate then renormalize ourselves.
    ModelInfo("local", "all-MiniLM-L6-v2", 384, mrl=False, max_batch=64, max_text_tokens=256,
              aliases=("sentence-transformers/all-MiniLM-L6-v2",)),
    ModelInfo("local", "nomic-embed-text-v1.5", 768, min_dim=64, max_batch=32, max_text_tokens=8192,
              marking="prefix", query_marker="search_query: ", document_marker="search_document: ",
              layer_norm=True, aliases=("nomic-ai/nomic-embed-text-v1.5",)),
    ModelInfo("local", "mxbai-embed-large-v1", 1024, min_dim=64, max_batch=32, max_text_tokens=512,
              marking="prefix", query_marker=_MXBAI_QUERY, aliases=("mixedbread-ai/mxbai-embed-large-v1",)),
    ModelInfo("local", "embeddinggemma-300m", 768, dims=(128, 256, 512, 768), max_batch=32,
              max_text_tokens=2048, marking="prefix", query_marker=_GEMINI2_QUERY,
              document_marker=_GEMINI2_DOCUMENT, aliases=("google/embeddinggemma-300m", "EmbeddingGemma")),
    ModelInfo("local", "snowflake-arctic-embed-m-v1.5", 768, min_dim=128, max_batch=32, max_text_tokens=512,
              marking="prefix", query_marker=_MXBAI_QUERY,
              aliases=("Snowflake/snowflake-arctic-embed-m-v1.5",)),
    ModelInfo("local", "static-retrieval-mrl-en-v1", 1024, min_dim=32, max_batch=1024,
              aliases=("sentence-transformers/static-retrieval-mrl-en-v1",)),
    ModelInfo("local", "Qwen3-Embedding-0.6B", 1024, min_dim=32, max_batch=16, max_text_tokens=32_768,
              marking="prefix", query_marker=_QWEN3_QUERY, aliases=("Qwen/Qwen3-Embedding-0.6B",)),
    ModelInfo("local", "Qwen3-Embedding-4B", 2560, min_dim=32, max_batch=8, max_text_tokens=32_768,
              marking="prefix", query_marker=_QWEN3_QUERY, aliases=("Qwen/Qwen3-Embedding-4B",)),
    ModelInfo("local", "Qwen3-Embedding-8B", 4096, min_dim=32, max_batch=8, max_text_tokens=32_768,
              marking="prefix", query_marker=_QWEN3_QUERY, aliases=("Qwen/Qwen3-Embedding-8B",)),
)

DEFAULT_MODELS: dict[str, str] = {
    "openai": "text-embedding-3-small",
    "gemini": "gemini-embedding-001",
    "voyage": "voyage-4",
    "jina": "jina-embeddings-v4",
    "local": "all-MiniLM-L6-v2",
}


def _norm_name(name: str) -> str:
    name = name.strip().lower()
    return name[len("models/"):] if name.startswith("models/") else name  # Gemini's resource form


_INDEX: dict[tuple[str, str], ModelInfo] = {}
for _info in MODELS:
    for _alias in (_info.name, *_info.aliases):
        _INDEX[(_info.provider, _norm_name(_alias))] = _info


def lookup(provider: str, model: str) -> ModelInfo | None:
    """The table row for ``model`` of ``provider`` (case-insensitive, hub ids and aliases too).

    For ``local`` a path whose last component is a known name matches as well.
    """
    found = _INDEX.get((provider, _norm_name(model)))
    if found is None and provider == "local":
        last = model.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        found = _INDEX.get((provider, _norm_name(last)))
    return found


def models_for(provider: str) -> list[ModelInfo]:
    """Every known model of ``provider``, in table order."""
    return [info for info in MODELS if info.provider == provider]


@dataclass(frozen=True)
class Width:
    """The widths one provider instance works with.

    Attributes:
        dim: the width returned to the caller.
        request_dim: the width to ask the API for, or None to send no width parameter.
        response_dim: the width the API must answer with (checked), or None when unknown (any
            width >= ``dim`` is then accepted and truncated).
    """

    dim: int
    request_dim: int | None
    response_dim: int | None


def resolve_width(
    provider: str,
    model: str,
    dim: int | None,
    *,
    native_dim: int | None = None,
    native_shortening: bool | None = None,
) -> Width:
    """Validate ``dim`` for ``model`` and decide what to request and what to expect back.

    Args:
        provider / model: as given to the registry.
        dim: the wanted width; None means the model's native width.
        native_dim: the model's native width, for models the table does not know (Azure
            deployments, vLLM models); overrides the table.
        native_shortening: whether the API can shorten natively, for unknown models (default
            False: we truncate).

    Raises:
        UnsupportedDimensionError: the model cannot produce ``dim`` (before any request).
        ConfigError: an unknown model and no width to go by.
    """
    if dim is not None:
        dim = positive_int("dim", dim, error=ConfigError)
    info = lookup(provider, model)
    if info is None or native_dim is not None:
        return _resolve_unknown(provider, model, dim, info, native_dim, native_shortening)
    dim = info.native_dim if dim is None else dim
    if not info.allows(dim):
        raise UnsupportedDimensionError(
            f"{model} cannot produce {dim}-wide vectors; allowed widths: {info.describe_widths()}"
            f"{_nearest_hint(info, dim)}",
            provider=provider, model=model,
        )
    if info.native_shortening:
        return Width(dim=dim, request_dim=dim, response_dim=dim)
    return Width(dim=dim, request_dim=None, response_dim=info.native_dim)


def _resolve_unknown(
    provider: str,
    model: str,
    dim: int | None,
    info: ModelInfo | None,
    native_dim: int | None,
    native_shortening: bool | None,
) -> Width:
    if native_dim is not None:
        native_dim = positive_int("native_dim", native_dim, error=ConfigError)
    if dim is None and native_dim is None:
        known = ", ".join(i.name for i in models_for(provider)) or "none"
        raise ConfigError(
            f"unknown {provider} model {model!r}: pass dim= (the width it returns) to use it; "
            f"known {provider} models: {known}"
        )
    dim = native_dim if dim is None else dim
    if native_dim is not None and dim > native_dim:
        raise UnsupportedDimensionError(
            f"dim {dim} is wider than native_dim {native_dim}", provider=provider, model=model
        )
    shorten = info.native_shortening if (native_shortening is None and info is not None) else bool(native_shortening)
    if shorten:
        return Width(dim=dim, request_dim=dim, response_dim=dim)
    return Width(dim=dim, request_dim=None, response_dim=native_dim)


def _nearest_hint(info: ModelInfo, dim: int) -> str:
    if info.dims is None:
        return ""
    nearest = min(info.dims, key=lambda d: (abs(d - dim), d))
    return f" (nearest: {nearest}; or ask for a wider one and let the store keep a {dim}-wide prefix)"


__all__ = [
    "DEFAULT_MODELS",
    "MODELS",
    "ModelInfo",
    "Width",
    "lookup",
    "models_for",
    "resolve_width",
]
