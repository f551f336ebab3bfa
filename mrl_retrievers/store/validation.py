"""Input validation shared by every store backend, so they reject the same input with the same errors."""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import DuplicateIdError, InvalidInputError


def check_ids(ids: Any, *, allow_duplicates: bool = False) -> list[str]:
    """A list of non-empty, UTF-8-encodable string ids (unique unless ``allow_duplicates``)."""
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence) and not hasattr(ids, "__iter__"):
        raise InvalidInputError(f"ids must be a list of strings, got {type(ids).__name__}")
    ids = list(ids)
    for i, id_ in enumerate(ids):
        if not isinstance(id_, str) or not id_:
            raise InvalidInputError(f"ids[{i}] must be a non-empty string, got {id_!r}")
        check_utf8(id_, f"ids[{i}]")
        if "\x00" in id_:
            # SQLite's JSON functions and C-string APIs cut strings at U+0000: "alice\x00x" would
            # address "alice". No id may depend on how a layer treats that character.
            raise InvalidInputError(f"ids[{i}] contains U+0000 (a NUL character), which ids may not hold: {id_!r}")
    if not allow_duplicates and len(set(ids)) != len(ids):
        seen, dup = set(), None
        for id_ in ids:
            if id_ in seen:
                dup = id_
                break
            seen.add(id_)
        raise DuplicateIdError(f"id {dup!r} appears more than once in one batch")
    return ids


def check_texts(texts: Any, n: int) -> list[str | None]:
    """``n`` texts (str or None each); None means no texts."""
    if texts is None:
        return [None] * n
    if isinstance(texts, (str, bytes)) or not hasattr(texts, "__iter__"):
        raise InvalidInputError(f"texts must be a list of strings (or None), got {type(texts).__name__}")
    texts = list(texts)
    if len(texts) != n:
        raise InvalidInputError(f"got {n} ids but {len(texts)} texts")
    for i, text in enumerate(texts):
        if text is not None and not isinstance(text, str):
            raise InvalidInputError(f"texts[{i}] must be a string or None, got {type(text).__name__}")
        if text is not None:
            check_utf8(text, f"texts[{i}]")
    return texts


def check_utf8(value: str, what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(f"{what} is not valid UTF-8 text (lone surrogate?)") from None


__all__ = ["check_ids", "check_texts", "check_utf8"]
