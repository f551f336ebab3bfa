"""The one config schema: TOML file or mapping + environment + overrides -> typed settings.

Each block is a frozen dataclass. Each issue that adds a setting extends the block here and the
commented example in ``EXAMPLE_TOML`` (which a test parses, so it never drifts from the schema).

Precedence, lowest first: dataclass defaults < TOML file / mapping < ``MRL_<BLOCK>_<FIELD>``
environment variables (e.g. ``MRL_STORE_PATH``) < explicit ``overrides`` (CLI flags).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .checks import positive_int
from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


class Secret:
    """A string that never shows itself: not in repr, str, logs, config dumps or JSON.

    Example:
        >>> key = Secret("sk-123")
        >>> repr(key)
        "Secret('**********')"
        >>> key.get_secret_value()
        'sk-123'
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise ConfigError("a secret must be a string")
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self):  # refuse pickling: a pickled secret is a leaked secret
        raise TypeError("Secret values cannot be pickled or serialized")

    def __bool__(self) -> bool:
        return bool(self._value)


DTYPES = ("float16", "float32")
BACKENDS = ("local", "qdrant")
# The provider of a new store when [embedder] provider is unset: offline, no key.
DEFAULT_PROVIDER = "local"
# The coarse width when [store] prefix_dim is unset (or the full width, when the vectors are narrower).
DEFAULT_PREFIX_DIM = 128


@dataclass(frozen=True)
class StoreSettings:
    """The ``[store]`` block.

    Search defaults left as ``None`` come from the store's manifest, where they were recorded by
    measurement (or by ``tune``). ``prefix_dim`` left unset is 128, or the full width of narrower
    vectors (see ``prefix_dim_for``); set, it must fit the vectors or creating the store fails.
    """

    backend: str = "local"
    path: str | None = None
    prefix_dim: int | None = None
    dtype: str = "float16"
    shortlist: int | None = None
    ef: int | None = None
    exact_below: int | None = None
    funnel_dim: int | None = None
    # recall@10 searches aim for: the store calibrates its per-query effort (issue 15). None: 0.99,
    # unless shortlist or ef is set (then those fix the effort).
    target_recall: float | None = None
    # qdrant backend (issue 9): url (server/cluster) or path (qdrant-client local mode, tests only);
    # neither = an in-memory local-mode collection. quantization: None | "int8" (prefix vectors).
    url: str | None = None
    api_key: Secret | None = None
    collection: str | None = None
    quantization: str | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"[store] backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"[store] dtype must be one of {DTYPES}, got {self.dtype!r}")
        for name in ("prefix_dim", "shortlist", "ef", "funnel_dim"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, positive_int(f"[store] {name}", getattr(self, name), error=ConfigError))
        if self.exact_below is not None:
            object.__setattr__(self, "exact_below", positive_int("[store] exact_below", self.exact_below, minimum=0, error=ConfigError))
        if self.target_recall is not None and (isinstance(self.target_recall, bool) or not isinstance(self.target_recall, (int, float))
                                               or not 0 < self.target_recall <= 1):
            raise ConfigError(f"[store] target_recall must be a number in (0, 1], got {self.target_recall!r}")
        if self.quantization not in (None, "int8"):
            raise ConfigError(f"[store] quantization must be \"int8\" or unset, got {self.quantization!r}")
        if self.url is not None and self.path is not None and self.backend == "qdrant":
            raise ConfigError("[store] a qdrant store takes url (a server) or path (local mode), not both")
        if self.prefix_dim is not None and self.funnel_dim is not None and not self.prefix_dim < self.funnel_dim:
            raise ConfigError(f"[store] funnel_dim ({self.funnel_dim}) must be wider than prefix_dim ({self.prefix_dim})")

    def prefix_dim_for(self, full_dim: int) -> int:
        """The coarse width of a new store of ``full_dim``-wide vectors.

        Unset: ``DEFAULT_PREFIX_DIM``, or ``full_dim`` when the vectors are narrower (tiny test
        embeddings). Set: used as is, and a width the vectors do not have is an error, never clamped.
        """
        if self.prefix_dim is None:
            return min(DEFAULT_PREFIX_DIM, full_dim)
        if self.prefix_dim > full_dim:
            raise ConfigError(f"[store] prefix_dim = {self.prefix_dim} is wider than the vectors ({full_dim} dims): "
                              f"set prefix_dim to at most {full_dim}, or leave it unset")
        return self.prefix_dim


@dataclass(frozen=True)
class EmbedderSettings:
    """The ``[embedder]`` block: which provider, model and width, and how to call it.

    ``api_key`` left unset makes the provider read its usual env var (OPENAI_API_KEY,
    GEMINI_API_KEY / GOOGLE_API_KEY, VOYAGE_API_KEY, JINA_API_KEY) when it is built; that value is
    never stored here, so dumps cannot leak it. A multimodal model (voyage-multimodal-3.5,
    gemini-embedding-2, jina-embeddings-v4, or fake) is selected the same way, by ``model``; the
    provider then takes images too, and its ``EmbeddingSpec`` records ``modalities``. Provider-specific settings (``device``, ``query_prompt``,
    ``native_dim``, ``vertexai``...) go in the ``options`` table.

    ``provider``, ``model``, ``dim`` and ``rotation`` left unset are taken from the store when it
    exists (its manifest records how its vectors were made); for a new store the provider defaults
    to ``DEFAULT_PROVIDER`` and the others to the provider's defaults.
    """

    provider: str | None = None
    model: str | None = None
    dim: int | None = None
    api_key: Secret | None = None
    base_url: str | None = None
    timeout: float | None = None  # seconds per request (provider default: 60)
    max_retries: int | None = None  # retries after the first attempt (provider default: 4)
    max_concurrency: int | None = None  # requests in flight at once (provider default: 4)
    batch_size: int | None = None  # most texts per request (default: the model's limit)
    cache: str | None = None  # path of the on-disk embedding cache (SQLite); unset = no cache
    rotation: str | None = None  # local only: .npy file of a fitted PCA rotation
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.provider is not None and (not isinstance(self.provider, str) or not self.provider):
            raise ConfigError(f"[embedder] provider must be a non-empty string, got {self.provider!r}")
        for name in ("dim", "max_concurrency", "batch_size"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, positive_int(f"[embedder] {name}", getattr(self, name), error=ConfigError))
        if self.max_retries is not None:
            object.__setattr__(self, "max_retries", positive_int("[embedder] max_retries", self.max_retries, minimum=0,
                                                                  error=ConfigError))
        if self.timeout is not None and (
            isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or not self.timeout > 0
        ):
            raise ConfigError(f"[embedder] timeout must be a positive number of seconds, got {self.timeout!r}")
        if not isinstance(self.options, Mapping):
            raise ConfigError(f"[embedder] options must be a table, got {self.options!r}")
        leaked = sorted(k for k in self.options if "key" in str(k).lower() or "secret" in str(k).lower())
        if leaked:  # a key in the options table would be dumped in clear text
            raise ConfigError(f"[embedder] options {leaked} look like secrets: use api_key (or its env var)")


@dataclass(frozen=True)
class Settings:
    embedder: EmbedderSettings = field(default_factory=EmbedderSettings)
    store: StoreSettings = field(default_factory=StoreSettings)

    def __post_init__(self) -> None:
        dim = self.embedder.dim
        if dim is None:
            return  # the width is known when the provider is built; the store checks it then
        if self.store.prefix_dim is not None and self.store.prefix_dim > dim:
            raise ConfigError(f"[store] prefix_dim = {self.store.prefix_dim} is wider than [embedder] dim = {dim}: "
                              f"set prefix_dim to at most {dim}, or leave it unset")
        if self.store.funnel_dim is not None and self.store.funnel_dim >= dim:
            raise ConfigError(f"[store] funnel_dim = {self.store.funnel_dim} must be narrower than [embedder] dim = {dim}")

    def to_dict(self) -> dict[str, Any]:
        """A dump safe to print or log: secrets are masked."""
        return {
            block.name: {
                f.name: _dump_value(getattr(getattr(self, block.name), f.name))
                for f in dataclasses.fields(getattr(self, block.name))
            }
            for block in dataclasses.fields(self)
        }


_BLOCKS: dict[str, type] = {"embedder": EmbedderSettings, "store": StoreSettings}
_SECRET_FIELDS = {"api_key"}


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Read settings from a TOML file or a mapping, then env vars, then overrides.

    Example:
        >>> load_config({"store": {"path": "idx", "prefix_dim": 64}}).store.prefix_dim
        64
    """
    env = os.environ if env is None else env
    raw = _read_source(source)
    unknown_blocks = set(raw) - set(_BLOCKS)
    if unknown_blocks:
        raise ConfigError(f"unknown config blocks {sorted(unknown_blocks)}; known: {sorted(_BLOCKS)}")
    blocks = {}
    for name, cls in _BLOCKS.items():
        block = raw.get(name, {}) or {}
        if not isinstance(block, Mapping):
            raise ConfigError(f"[{name}] must be a table of settings, got {block!r}")
        values = dict(block)
        values.update(_from_env(name, cls, env))
        values.update(dict((overrides or {}).get(name, {}) or {}))
        blocks[name] = _build_block(name, cls, values)
    return Settings(**blocks)


def _read_source(source: Any) -> dict[str, Any]:
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return {k: dict(v) if isinstance(v, Mapping) else v for k, v in source.items()}
    path = Path(source)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _from_env(block: str, cls: type, env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = f"MRL_{block.upper()}_{f.name.upper()}"
        if key in env and f.name != "options":
            out[f.name] = env[key]
    return out


def _build_block(block: str, cls: type, values: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(f"unknown settings in [{block}]: {sorted(unknown)}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    coerced = {name: _coerce(block, name, _held_type(hints[name]), value) for name, value in values.items()}
    try:
        return cls(**coerced)
    except TypeError as exc:  # pragma: no cover - defensive: dataclass signature mismatch
        raise ConfigError(f"[{block}]: {exc}") from None


def _held_type(annotation: Any) -> type | None:
    """The class a field holds, Optional aside: ``int | None`` -> int, ``dict[str, Any]`` -> dict;
    None for anything else (a union of several types, ``Any``, ``Literal``): no coercion."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        held = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(held) != 1:
            return None
        annotation = held[0]
    base = typing.get_origin(annotation) or annotation
    return base if isinstance(base, type) else None


def _coerce(block: str, name: str, held: type | None, value: Any) -> Any:
    """Env vars arrive as strings; TOML gives real types. Convert to the class the field holds."""
    if value is None:
        return None
    if name in _SECRET_FIELDS:
        return value if isinstance(value, Secret) else Secret(str(value))
    if held is float and not isinstance(value, bool):
        try:
            return float(str(value).strip()) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"[{block}] {name} must be a number, got {value!r}") from None
    if held is int and not isinstance(value, bool):
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip())
        except ValueError:
            raise ConfigError(f"[{block}] {name} must be an integer, got {value!r}") from None
    if held is dict and not isinstance(value, Mapping):
        raise ConfigError(f"[{block}] {name} must be a table, got {value!r}")
    if held is str and not isinstance(value, str):
        raise ConfigError(f"[{block}] {name} must be a string, got {value!r}")
    return value


def _dump_value(value: Any) -> Any:
    if isinstance(value, Secret):
        return "**********"
    return value


def write_example(path: str | os.PathLike[str] = "mrl.toml", *, overwrite: bool = False) -> Path:
    """Write ``EXAMPLE_TOML`` (the commented reference config) to ``path``; what ``init`` does.

    Raises:
        ConfigError: ``path`` exists and ``overwrite`` is False (nothing is changed).
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise ConfigError(f"{target} already exists; keep it, or overwrite it with --force (overwrite=True)")
    if target.exists() and not target.is_file():
        raise ConfigError(f"{target} exists and is not a file")
    target.write_text(EXAMPLE_TOML, encoding="utf-8")
    return target


EXAMPLE_TOML = """\
# mrl.toml: one file configures the embedder and the store.
# Environment variables MRL_<BLOCK>_<FIELD> (e.g. MRL_STORE_PATH) override it; CLI flags override both.

[embedder]
provider = "local"          # "openai" | "gemini" | "voyage" | "jina" | "local" | "fake" (unset: an existing store's)
# model = "text-embedding-3-large"   # default: the provider's default (local: all-MiniLM-L6-v2, offline)
#                           # images too: "voyage-multimodal-3.5", "gemini-embedding-2", "jina-embeddings-v4"
# dim = 1024                # the full width to request (the store keeps it all); default: native
# api_key: leave unset to read the provider's usual env var (OPENAI_API_KEY, GEMINI_API_KEY or
#          GOOGLE_API_KEY, VOYAGE_API_KEY, JINA_API_KEY); MRL_EMBEDDER_API_KEY also works. Never commit a key.
# base_url = "http://127.0.0.1:8000/v1"   # any compatible endpoint or proxy
# timeout = 60              # seconds per request
# max_retries = 4           # retries after the first attempt (backoff + jitter, honours Retry-After)
# max_concurrency = 4       # requests in flight at once
# batch_size = 128          # most texts per request (capped by the model's limit)
# cache = "mrl-cache.sqlite"   # embedding cache: a re-run never pays twice for a text
# rotation = "rotation.npy" # local, non-MRL models: fitted PCA rotation applied before truncation
# [embedder.options]        # provider-specific settings
# device = "cpu"            # local: torch device
# native_dim = 3072         # an Azure deployment or unknown model: its native width

[store]
backend = "local"           # "local" (on-disk MRLStore) | "qdrant"
path = "mrl-index"          # directory of the local store
prefix_dim = 128            # width of the coarse (HNSW) index, at most dim; change later with `reindex`
dtype = "float16"           # full vectors on disk: "float16" | "float32"
# target_recall = 0.99      # recall@10 searches aim for: each query's effort adapts to it (calibrated
#                           # by the store as it grows); 1.0 = exact. Setting shortlist/ef fixes the effort instead
# shortlist = 200           # candidates reranked at full width (default: recorded in the manifest)
# ef = 400                  # HNSW search breadth (default: recorded in the manifest)
# exact_below = 2048        # stores smaller than this are searched exactly
# funnel_dim = 512          # optional intermediate rerank width
# --- backend = "qdrant": the same store on a Qdrant server or cluster (pip install 'mrl-retrievers[qdrant]')
# url = "http://qdrant.internal:6333"   # a server or cluster; leave path unset
# api_key: set MRL_STORE_API_KEY in the environment; never commit a key
# collection = "docs"       # the collection (an alias QdrantStore manages); default "mrl"
# quantization = "int8"     # scalar-quantize the prefix vectors held in RAM (full vectors stay on disk)
# (path = "qdrant-data" without url uses qdrant-client's local mode: brute force, for tests only)
"""

__all__ = [
    "DEFAULT_PREFIX_DIM",
    "DEFAULT_PROVIDER",
    "EXAMPLE_TOML",
    "EmbedderSettings",
    "Secret",
    "Settings",
    "StoreSettings",
    "load_config",
    "write_example",
]
