"""Input validation shared by every store backend, so they reject the same input with the same errors."""

from __future__ import annotations

from typing import Any, Sequence

from ..checks import positive_int
from ..errors import DuplicateIdError, InvalidInputError
from ..mrl import check_width
from ..types import EmbeddingSpec
from .defaults import (
    DEFAULT_EF,
    DEFAULT_EF_CONSTRUCTION,
    DEFAULT_EXACT_BELOW,
    DEFAULT_M,
    DEFAULT_SEGMENT_ROWS,
    DEFAULT_SHORTLIST,
    DEFAULT_TARGET_RECALL,
    MAX_EF_CONSTRUCTION,
    MAX_M,
)
from .effort import check_target


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



def check_k(k: Any) -> int:
    return positive_int("k", k)


def check_create_args(*, full_dim, prefix_dim, dtype, spec, exact_below, shortlist, ef, funnel_dim, M, ef_construction,
                      segment_rows=None, target_recall=None) -> dict[str, Any]:
    """create()'s settings checked and completed with the defaults (the local store writes them into
    its manifest, the Qdrant store into its collection's metadata)."""
    full_dim = positive_int("full_dim", full_dim, maximum=65536)
    prefix_dim = check_width("prefix_dim", prefix_dim, full_dim=full_dim)
    if dtype not in ("float16", "float32"):
        raise InvalidInputError(f"dtype must be 'float16' or 'float32', got {dtype!r}")
    if spec is not None and not isinstance(spec, EmbeddingSpec):
        raise InvalidInputError(f"spec must be an EmbeddingSpec, got {type(spec).__name__}")
    if spec is not None and spec.dim != full_dim:
        raise InvalidInputError(f"spec.dim ({spec.dim}) differs from full_dim ({full_dim})")
    if funnel_dim is not None and not prefix_dim < check_width("funnel_dim", funnel_dim, full_dim=full_dim) < full_dim:
        raise InvalidInputError(f"funnel_dim must lie strictly between prefix_dim ({prefix_dim}) and full_dim ({full_dim})")
    values = {"exact_below": exact_below, "shortlist": shortlist, "ef": ef, "M": M, "ef_construction": ef_construction,
              "segment_rows": segment_rows}
    maxima = {"M": MAX_M, "ef_construction": MAX_EF_CONSTRUCTION}
    for name, value in values.items():
        if value is None:
            continue
        values[name] = value = positive_int(name, value, minimum=0 if name == "exact_below" else 2 if name == "M" else 1)
        if value > maxima.get(name, value):
            raise InvalidInputError(f"{name} must be at most {maxima[name]} (what the coarse-index file format holds), got {value!r}")
    exact_below, shortlist, ef, M, ef_construction, segment_rows = values.values()  # as plain ints
    if target_recall is not None:
        target_recall = check_target(target_recall)
    elif shortlist is None and ef is None:
        target_recall = DEFAULT_TARGET_RECALL  # an explicit shortlist/ef is the expert's fixed effort
    return dict(
        full_dim=full_dim, prefix_dim=prefix_dim, dtype=dtype, spec=spec, funnel_dim=funnel_dim,
        shortlist=shortlist or DEFAULT_SHORTLIST, ef=ef or DEFAULT_EF,
        exact_below=DEFAULT_EXACT_BELOW if exact_below is None else exact_below,
        M=M or DEFAULT_M, ef_construction=ef_construction or DEFAULT_EF_CONSTRUCTION,
        segment_rows=segment_rows or DEFAULT_SEGMENT_ROWS, target_recall=target_recall,
    )


__all__ = ["check_create_args", "check_ids", "check_k", "check_texts", "check_utf8"]
