"""Matryoshka maths: validate, normalize, truncate and renormalize vectors (numpy only).

An MRL vector keeps most of its meaning in its first dimensions. A *prefix* of width ``d`` is the
first ``d`` numbers, renormalized to unit length so that inner product equals cosine similarity.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .checks import positive_int
from .errors import DimensionMismatchError, InvalidInputError, InvalidVectorError

# Rows whose norm is below this are treated as all-zero: they have no direction to compare.
_MIN_NORM = 1e-12

# numpy >= 2 has a row-wise dot product ufunc; einsum is the same sum, a little slower, before that.
_row_dots = getattr(np, "vecdot", None) or (lambda a, b: np.einsum("...i,...i->...", a, b))


def as_matrix(vectors: Any, dim: int, *, what: str = "vectors") -> np.ndarray:
    """Validate a batch of vectors and return it as a C-contiguous float32 (n, dim) array.

    Raises:
        InvalidVectorError: not numeric, NaN/inf, or an all-zero row (the row index is named).
        DimensionMismatchError: the width is not ``dim``.
    """
    try:
        arr = np.asarray(vectors)
    except (TypeError, ValueError) as exc:  # ragged lists
        raise InvalidVectorError(f"{what} must be a 2-D numeric array: {exc}") from None
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, dim)
    if arr.ndim != 2:
        raise InvalidVectorError(f"{what} must be 2-D (n, {dim}), got shape {arr.shape}")
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InvalidVectorError(f"{what} must be numeric, got dtype {arr.dtype}")
    if arr.shape[1] != dim:
        raise DimensionMismatchError(f"{what} have width {arr.shape[1]}, expected {dim}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    # A NaN or an infinity anywhere in a row makes its norm non-finite, so the element-wise scan
    # only runs when some norm is.
    norms = row_norms(arr)
    if not np.isfinite(norms).all():
        finite = np.isfinite(arr).all(axis=1)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise InvalidVectorError(f"{what} row {bad} contains NaN or infinity")
        bad = int(np.flatnonzero(~np.isfinite(norms))[0])
        raise InvalidVectorError(f"{what} row {bad} is too large: its length does not fit in float32")
    if (norms < _MIN_NORM).any():
        bad = int(np.flatnonzero(norms < _MIN_NORM)[0])
        raise InvalidVectorError(f"{what} row {bad} is all zeros (it has no direction)")
    return arr


def as_vector(vector: Any, dim: int, *, what: str = "query vector") -> np.ndarray:
    """Validate one vector; return it as float32 (dim,)."""
    arr = np.asarray(vector) if not isinstance(vector, np.ndarray) else vector
    if arr.ndim != 1:
        raise InvalidVectorError(f"{what} must be 1-D ({dim},), got shape {arr.shape}")
    return as_matrix(arr.reshape(1, -1), dim, what=what)[0]


def unit_vector(vector: Any, dim: int, *, what: str = "query vector") -> np.ndarray:
    """``normalize(as_vector(vector, dim))``: the same checks, errors and bits, with the norm
    computed once. A search's first step: a float32 vector of the right width (what embedding
    providers and numpy hand over) takes a path of a few numpy calls (~4 us against ~30 us);
    anything else, and any vector that fails a check, goes through the full checks."""
    if type(vector) is np.ndarray and vector.dtype == np.float32 and vector.shape == (dim,) and vector.flags.c_contiguous:
        rows = vector.reshape(1, dim)
        with np.errstate(over="ignore"):
            norms = np.sqrt(_row_dots(rows, rows))
        norm = float(norms[0])
        # NaN/inf anywhere makes the norm non-finite; overflow and tiny norms take the full path.
        if _MIN_NORM <= norm < float("inf"):
            return vector / np.maximum(norms, _MIN_NORM)
    return normalize(as_vector(vector, dim, what=what))


def row_norms(vectors: np.ndarray) -> np.ndarray:
    """The Euclidean norm of each row (or of the one vector), in float32.

    A row-wise dot product sums the squares without the temporary array ``np.linalg.norm``
    allocates (5x faster on a bulk load, 3x on one query); rows whose squares overflow float32 are
    measured again in float64.
    """
    arr = np.asarray(vectors, dtype=np.float32)
    rows = arr.reshape(-1, arr.shape[-1])
    # Overflow is expected and handled here; a row still infinite after it holds an infinity or
    # is longer than float32 can hold.
    with np.errstate(over="ignore"):
        norms = np.sqrt(_row_dots(rows, rows))
        overflow = np.isinf(norms)
        if overflow.any():
            norms[overflow] = np.linalg.norm(rows[overflow].astype(np.float64), axis=-1)
    return norms.reshape(arr.shape[:-1])


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Scale each row (or the one vector) to unit length. Zero rows stay zero."""
    arr = np.asarray(vectors, dtype=np.float32)
    norms = row_norms(arr)[..., None]
    return arr / np.maximum(norms, _MIN_NORM)


def normalize_as(vectors: np.ndarray, dtype: Any) -> np.ndarray:
    """``normalize(vectors).astype(dtype)`` without the float32 intermediate (a bulk load's largest
    allocation): the division writes straight into the result, with the same rounding."""
    arr = np.asarray(vectors, dtype=np.float32)
    norms = np.maximum(row_norms(arr), _MIN_NORM)[..., None]
    out = np.empty(arr.shape, dtype=dtype)
    np.divide(arr, norms, out=out, casting="same_kind")
    return out


def truncate(vectors: np.ndarray, dim: int) -> np.ndarray:
    """The first ``dim`` numbers of each vector (a copy, not renormalized)."""
    arr = np.asarray(vectors)
    if not 1 <= dim <= arr.shape[-1]:
        raise InvalidInputError(f"cannot truncate width {arr.shape[-1]} to {dim}")
    return np.array(arr[..., :dim], dtype=np.float32, copy=True)


def prefix(vectors: np.ndarray, dim: int) -> np.ndarray:
    """The renormalized prefix of width ``dim``: what the coarse index stores and searches.

    Example:
        >>> v = np.array([3.0, 4.0, 12.0])
        >>> [round(float(x), 3) for x in prefix(v, 2)]
        [0.6, 0.8]
    """
    return np.ascontiguousarray(normalize(truncate(vectors, dim)))


def check_width(name: str, value: Any, *, full_dim: int) -> int:
    """Validate a width setting (prefix or funnel) against the full width."""
    return positive_int(name, value, maximum=full_dim)


__all__ = ["as_matrix", "as_vector", "check_width", "normalize", "prefix", "truncate", "unit_vector"]
