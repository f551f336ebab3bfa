"""What a JSON value the store can hold is: the rules written once (issue 17).

Metadata is stored as JSON text in SQLite (and as Qdrant payload), and filters compare against it,
so the metadata validator (``metadata``), the filter parser (``filters``) and the LlamaIndex filter
translator all apply the same scalar rules, from here:

- integers within signed 64-bit (SQLite's JSON functions cannot hold more);
- finite floats (JSON has no NaN or infinity);
- strings that are valid Unicode (no lone surrogates: they cannot be encoded as UTF-8) and hold no
  U+0000 (SQLite's ``json_extract`` cuts strings there, so a filter would see another value);
- ``None`` and ``bool`` as they are; numpy scalars unwrapped with ``.item()`` first.

Each caller passes the exception class its contract names (``InvalidMetadataError``,
``FilterError``, ``UnsupportedFilterError``); ``where`` is the path the message starts with.
Stdlib only: no numpy import (numpy scalars are recognised by duck typing).

    >>> json_scalar(3, "metadata['n']", ValueError)
    3
    >>> json_scalar(float("nan"), "metadata['f']", ValueError)
    Traceback (most recent call last):
    ...
    ValueError: metadata['f']: nan is not a JSON number (NaN/inf are not allowed)
"""

from __future__ import annotations

import math
from typing import Any, Callable

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

Error = Callable[[str], Exception]


def json_scalar(value: Any, where: str, error: Error) -> Any:
    """``value`` (None, bool, int, float or str) as its plain type, if the store can hold it; else ``error``."""
    if value is None or isinstance(value, bool):  # bool first: it is an int subclass
        return value
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise error(f"{where}: integer {value} is outside signed 64-bit, which metadata cannot hold; "
                        "store it as a string")
        return int(value)  # plain int: IntEnum & co. must not change the canonical text
    if isinstance(value, float):
        if not math.isfinite(value):
            raise error(f"{where}: {value!r} is not a JSON number (NaN/inf are not allowed)")
        return float(value)
    if isinstance(value, str):
        return json_text(value, where, error)
    raise error(f"{where}: {type(value).__name__} is not a JSON scalar: {short(value)}")


def json_text(text: str, where: str, error: Error) -> str:
    """``text`` as a plain ``str`` if it is valid Unicode without U+0000; else ``error``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise error(f"{where}: string {short(text)} is not valid Unicode ({exc.reason} at {exc.start})") from None
    if "\x00" in text:
        raise error(f"{where}: string {short(text)} contains U+0000, which SQLite's JSON functions truncate at")
    return str(text)


def unwrap_numpy(value: Any) -> Any:
    """A numpy scalar (or 0-d array) as the Python value it holds; anything else unchanged."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages (a megabyte is cut before repr)."""
    if isinstance(value, (str, bytes)) and len(value) > limit:
        value = value[:limit]
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["INT64_MAX", "INT64_MIN", "json_scalar", "json_text", "short", "unwrap_numpy"]
