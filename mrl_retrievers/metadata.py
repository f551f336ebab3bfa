"""Item metadata: validate it, and serialize it to the one canonical JSON text the store keeps.

Metadata is a JSON object. Nested objects and lists are stored and returned as given; filters
address top-level keys (see ``mrl_retrievers.filters``). Everything JSON cannot carry is rejected
here, before anything is written, with an ``InvalidMetadataError`` naming the key path.

Accepted: ``dict`` (any ``Mapping``) with ``str`` keys, ``list``, ``tuple`` (stored as a list),
``str``, ``int`` (signed 64-bit), finite ``float``, ``bool``, ``None``, and numpy scalars
(``np.int64``, ``np.float32``, ``np.bool_``...; converted with ``.item()``, since arrays of results
are where users' numbers usually come from).

Rejected: non-string keys at any depth (``json.dumps`` would silently turn ``1`` into ``"1"``),
bytes, sets, NaN/inf, ints outside signed 64-bit (SQLite's JSON functions cannot hold them),
strings that are not valid Unicode (lone surrogates), strings containing U+0000 (SQLite's
``json_extract`` cuts strings there, so a filter would see another value than the one stored),
nesting deeper than ``MAX_METADATA_DEPTH``, and a serialized size over ``MAX_METADATA_BYTES``.

Reserved: top-level keys starting with ``mrl_`` belong to the package. ``mrl_modality``,
``mrl_source`` and ``mrl_media_type`` say what an image item is (``mrl_retrievers.media``); they are
checked here, at every add, and any other ``mrl_*`` key is refused.

The text is canonical (sorted keys, no spaces, non-ASCII kept as UTF-8): the filter compiler
relies on keys being stored unescaped, so that a JSON path label finds them.

Example:
    >>> dump_metadata({"year": 2024, "tags": ("a", "b"), "é": None})
    '{"tags":["a","b"],"year":2024,"é":null}'
    >>> load_metadata('{"year":2024}')
    {'year': 2024}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import InvalidMetadataError
from .json_values import json_scalar, json_text, short as _short, unwrap_numpy
from .media import check_reserved

MAX_METADATA_BYTES = 1 << 20  # 1 MiB of UTF-8 JSON per item
MAX_METADATA_DEPTH = 32  # the top-level object is depth 1

__all__ = [
    "MAX_METADATA_BYTES",
    "MAX_METADATA_DEPTH",
    "dump_metadata",
    "load_metadata",
    "validate_metadatas",
]


def dump_metadata(md: Mapping[str, Any] | None, *, where: str = "metadata") -> str:
    """Validate one item's metadata and return its canonical JSON text (``None`` -> ``"{}"``).

    Raises:
        InvalidMetadataError: naming the key path (``where`` is its root) and the offending value.
    """
    if md is None:
        return "{}"
    if not isinstance(md, Mapping):
        raise InvalidMetadataError(
            f"{where}: metadata must be a dict (a JSON object), got {type(md).__name__}: {_short(md)}"
        )
    clean = _clean(md, where, 1)
    check_reserved(clean, where)
    text = json.dumps(clean, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    size = len(text.encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise InvalidMetadataError(
            f"{where}: metadata is {size:,} bytes as JSON; the limit is {MAX_METADATA_BYTES:,} "
            "(MAX_METADATA_BYTES). Keep large payloads elsewhere and store a reference."
        )
    return text


def load_metadata(text: str | None) -> dict[str, Any]:
    """Parse metadata text written by ``dump_metadata`` (``None`` -> ``{}``).

    Raises:
        InvalidMetadataError: the text is not JSON, holds NaN/Infinity, or is not an object.
    """
    if text is None:
        return {}
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (TypeError, ValueError) as exc:
        raise InvalidMetadataError(f"stored metadata is not valid JSON ({exc}): {_short(text)}") from None
    if not isinstance(value, dict):
        raise InvalidMetadataError(f"stored metadata is not a JSON object: {_short(text)}")
    return value


def validate_metadatas(metadatas: Iterable[Mapping[str, Any] | None] | None, n: int) -> list[str]:
    """Validate a batch: exactly ``n`` metadatas (or ``None`` for all empty); return their texts.

    Raises:
        InvalidMetadataError: wrong count or container, or a bad item (the message names its index).
    """
    if metadatas is None:
        return ["{}"] * n
    if isinstance(metadatas, (str, bytes, Mapping)) or not isinstance(metadatas, Iterable):
        raise InvalidMetadataError(
            f"metadatas must be a list with one dict (or None) per item, got {type(metadatas).__name__}"
        )
    items = list(metadatas)
    if len(items) != n:
        raise InvalidMetadataError(f"got {len(items)} metadatas for {n} items; pass one per item (or None)")
    return [dump_metadata(md, where=f"metadatas[{i}]") for i, md in enumerate(items)]


# --- validation ------------------------------------------------------------------------------


def _clean(value: Any, where: str, depth: int) -> Any:
    """Return a plain-JSON copy of ``value`` (dict/list/str/int/float/bool/None) or raise."""
    value = unwrap_numpy(value)
    if isinstance(value, str):
        return _check_text(value, where)
    if value is None or isinstance(value, (bool, int, float)):
        return json_scalar(value, where, InvalidMetadataError)
    if isinstance(value, (Mapping, list, tuple)):
        if depth > MAX_METADATA_DEPTH:
            raise InvalidMetadataError(
                f"{where}: nested deeper than {MAX_METADATA_DEPTH} levels (or a container holds itself)"
            )
        if isinstance(value, Mapping):
            return {_check_key(k, where): _clean(v, f"{where}[{k!r}]", depth + 1) for k, v in value.items()}
        return [_clean(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    raise InvalidMetadataError(f"{where}: {_type_hint(value)}")


def _check_key(key: Any, where: str) -> str:
    if not isinstance(key, str):
        raise InvalidMetadataError(
            f"{where}: key {key!r} is a {type(key).__name__}; JSON object keys must be strings "
            "(convert it with str() if that is what you mean)"
        )
    return _check_text(key, f"{where} key {key!r}")


def _check_text(text: str, where: str) -> str:
    if len(text) > MAX_METADATA_BYTES:  # cheap early exit: each char is at least one byte
        raise InvalidMetadataError(
            f"{where}: a string of {len(text):,} characters exceeds MAX_METADATA_BYTES ({MAX_METADATA_BYTES:,})"
        )
    return json_text(text, where, InvalidMetadataError)


def _type_hint(value: Any) -> str:
    name = type(value).__name__
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"{name} is not JSON; decode it to str (or base64-encode it) first"
    if isinstance(value, (set, frozenset)):
        return f"{name} is not JSON; use a (sorted) list"
    return f"{name} is not a JSON type ({_short(value)}); use dict, list, str, int, float, bool or None"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
