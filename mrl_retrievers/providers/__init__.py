"""The provider registry: one dispatch table from a name to a lazily imported class.

Example:
    >>> from mrl_retrievers.providers import get_provider
    >>> emb = get_provider("fake", dim=64)
    >>> emb.embed_query("hello").shape
    (64,)
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Mapping

from ..config import DEFAULT_PROVIDER, EmbedderSettings, Settings, load_config
from ..errors import ConfigError, MissingDependencyError, SpecMismatchError
from ..types import EmbeddingSpec
from .base import Provider, RetryPolicy, require
from .hosted import HostedProvider

_PACKAGE = __name__


@dataclass(frozen=True)
class _Entry:
    target: str  # "module:Class", module relative to this package unless it contains a dot
    sdk: str | None  # top-level module of the third-party SDK the class needs
    package: str | None  # its name on PyPI
    extra: str | None  # the mrl-retrievers extra that installs it


_REGISTRY: dict[str, _Entry] = {
    "openai": _Entry("openai:OpenAIProvider", "openai", "openai", "openai"),
    "gemini": _Entry("gemini:GeminiProvider", "google.genai", "google-genai", "gemini"),
    "voyage": _Entry("voyage:VoyageProvider", "voyageai", "voyageai", "voyage"),
    "jina": _Entry("jina:JinaProvider", "httpx", "httpx", "jina"),
    "local": _Entry("local:LocalProvider", "sentence_transformers", "sentence-transformers", "local"),
    "fake": _Entry("fake:FakeProvider", None, None, None),
}


def available() -> list[str]:
    """Registered provider names (whether or not their SDK is installed), sorted."""
    return sorted(_REGISTRY)


def register(name: str, target: str, *, sdk: str | None = None, package: str | None = None,
             extra: str | None = None) -> None:
    """Add a provider: ``target`` is ``"package.module:Class"`` (imported on first use)."""
    if not name or ":" not in target:
        raise ConfigError(f"register needs a name and a 'module:Class' target, got {name!r}, {target!r}")
    _REGISTRY[name] = _Entry(target, sdk, package, extra)


def provider_class(name: str) -> type[Provider]:
    """The class registered under ``name``, imported now.

    Raises:
        ConfigError: unknown name (the message lists the available ones).
        MissingDependencyError: the provider's SDK is not installed (names the extra).
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ConfigError(f"unknown embedding provider {name!r}; available: {', '.join(available())}")
    entry = _REGISTRY[name]
    module_name, _, class_name = entry.target.partition(":")
    if "." not in module_name:
        module_name = f"{_PACKAGE}.{module_name}"
    try:
        module = importlib.import_module(module_name)
    except MissingDependencyError:
        raise
    except ImportError as exc:
        missing = exc.name or ""
        if entry.sdk and (missing == entry.sdk or missing.split(".")[0] == entry.sdk.split(".")[0]
                          or missing.startswith(entry.sdk)):
            raise MissingDependencyError(entry.package or entry.sdk, entry.extra or name,
                                         f"needed by the {name!r} provider") from exc
        raise
    if entry.sdk:
        # Adapters build their SDK clients lazily; check the SDK now so a missing one fails at
        # get_provider, not at the first request.
        require(entry.sdk, package=entry.package or entry.sdk, extra=entry.extra or name,
                purpose=f"needed by the {name!r} provider")
    return getattr(module, class_name)


def get_provider(
    name: str,
    *,
    model: str | None = None,
    dim: int | None = None,
    api_key: Any = None,
    base_url: str | None = None,
    cache: Any = None,
    **options: Any,
) -> Provider:
    """Build a provider by registry name.

    Args:
        name: "openai", "gemini", "voyage", "jina", "local", "fake" or a registered name.
        model: model name (None = the provider's default model).
        dim: width of the returned vectors (None = the model's native width).
        api_key: a string or ``Secret``; None reads the provider's usual env var.
        base_url: a compatible endpoint or proxy (hosted providers only).
        cache: an ``EmbeddingCache`` or a path to one: texts already embedded with the same spec
            are not sent again.
        **options: provider options (timeout, max_retries, max_concurrency, batch_size, device...).

    Example:
        >>> get_provider("fake", dim=8).spec.dim
        8
    """
    cls = provider_class(name)
    kwargs: dict[str, Any] = dict(options)
    if model is not None:
        kwargs["model"] = model
    if dim is not None:
        kwargs["dim"] = dim
    if api_key is not None or base_url is not None:
        if not issubclass(cls, HostedProvider):
            raise ConfigError(f"the {name!r} provider takes no api_key or base_url (it runs locally)")
        kwargs["api_key"] = api_key
        kwargs["base_url"] = base_url
    try:
        provider = cls(**kwargs)
    except TypeError as exc:  # an option the class does not take: say which ones it does
        raise ConfigError(f"bad options for the {name!r} provider: {exc}") from None
    if cache is None:
        return provider
    from .cached import CachedProvider  # noqa: PLC0415 - keeps the cache's SQLite out of plain use

    return CachedProvider(provider, cache)


def from_config(source: Settings | EmbedderSettings | Mapping[str, Any] | str | os.PathLike[str] | None = None,
                **overrides: Any) -> Provider:
    """Build the provider an ``[embedder]`` block describes.

    Args:
        source: ``Settings``, ``EmbedderSettings``, a config mapping (with an ``embedder`` table,
            or the block itself), or a TOML path. None reads env vars only.
        **overrides: keyword arguments for ``get_provider`` that win over the config.
    """
    block = _embedder_block(source)
    kwargs: dict[str, Any] = dict(block.options)
    for field in ("timeout", "max_retries", "max_concurrency", "batch_size", "rotation"):
        value = getattr(block, field, None)
        if value is not None:
            kwargs[field] = value
    if block.cache is not None:
        kwargs["cache"] = block.cache
    kwargs.update(model=block.model, dim=block.dim, api_key=block.api_key, base_url=block.base_url)
    kwargs.update(overrides)
    return get_provider(block.provider or DEFAULT_PROVIDER, **kwargs)


# Spec ``extra`` entries that are constructor options, with their types (extras are strings).
_SPEC_OPTIONS: dict[str, dict[str, type]] = {"fake": {"seed": int, "decay": float}, "local": {"backend": str}}


def from_spec(spec: EmbeddingSpec, *, rotation: Any = None, **options: Any) -> Provider:
    """A provider that makes the vectors ``spec`` describes (e.g. a store's, to embed its queries).

    Args:
        spec: the ``EmbeddingSpec`` a store recorded.
        rotation: the fitted rotation (``.npy`` path or matrix) when ``spec.rotation`` names one;
            it is checked against the spec's checksum.
        **options: settings that do not change the vectors (``api_key``, ``base_url``, ``timeout``,
            ``device``, ``cache``...).

    Raises:
        ConfigError: the spec names a provider this package cannot build (a framework's own
            embedding class), or a rotation that was not given.
        SpecMismatchError: the provider built makes other vectors than the spec says.
    """
    if spec.provider not in _REGISTRY:
        raise ConfigError(
            f"vectors made by {spec.provider!r} (model {spec.model!r}) cannot be re-made by mrl-retrievers: "
            "embed queries with that same embedding class (e.g. through its framework)")
    kwargs: dict[str, Any] = {"model": spec.model, "dim": spec.dim, **options}
    for name, kind in _SPEC_OPTIONS.get(spec.provider, {}).items():
        if name in dict(spec.extra):
            kwargs[name] = kind(dict(spec.extra)[name])
    if spec.rotation is not None:
        if rotation is None:
            raise ConfigError(f"these vectors were made with a fitted rotation ({spec.rotation[:19]}...) that was not "
                              "found: set [embedder] rotation to the .npy file it was saved to")
        kwargs.update(rotation=rotation, rotation_checksum=spec.rotation)
    if spec.provider == "local":  # "" (not None) keeps a prompt-less spec prompt-less
        kwargs.update(query_prompt=spec.query_prompt or "", document_prompt=spec.document_prompt or "")
    provider = get_provider(spec.provider, **kwargs)
    if provider.spec != spec:
        provider.close()
        raise SpecMismatchError(f"the {spec.provider!r} provider built for {spec.model!r} makes other vectors than "
                                f"recorded: {'; '.join(spec.differences(provider.spec))}")
    return provider


def _embedder_block(source: Any) -> EmbedderSettings:
    if isinstance(source, EmbedderSettings):
        return source
    if isinstance(source, Settings):
        return source.embedder
    if isinstance(source, Mapping) and "embedder" not in source and "store" not in source:
        source = {"embedder": source}  # the block alone
    return load_config(source).embedder


__all__ = [
    "HostedProvider",
    "Provider",
    "RetryPolicy",
    "available",
    "from_config",
    "from_spec",
    "get_provider",
    "provider_class",
    "register",
]
