"""MRL maths: validation, normalization, truncation, prefixes."""

from __future__ import annotations

import numpy as np
import pytest

from mrl_retrievers.errors import (
    DimensionMismatchError,
    InvalidInputError,
    InvalidVectorError,
)
from mrl_retrievers.mrl import (
    as_matrix,
    as_vector,
    check_width,
    normalize,
    normalize_as,
    prefix,
    row_norms,
    truncate,
    unit_vector,
)


def test_prefix_is_truncated_then_renormalized(rng):
    x = rng.standard_normal((5, 64)).astype(np.float32)
    p = prefix(x, 16)
    assert p.shape == (5, 16) and p.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(p, x[:, :16] / np.linalg.norm(x[:, :16], axis=1, keepdims=True), rtol=1e-5)


def test_truncate_copies_and_checks_width(rng):
    x = rng.standard_normal((2, 8))
    t = truncate(x, 3)
    t[0, 0] = 99
    assert x[0, 0] != 99
    with pytest.raises(InvalidInputError):
        truncate(x, 9)
    with pytest.raises(InvalidInputError):
        truncate(x, 0)


def test_normalize_keeps_zero_rows_finite():
    out = normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


@pytest.mark.parametrize(
    "value,error",
    [
        (np.full((1, 4), np.nan), InvalidVectorError),
        (np.full((1, 4), -np.inf), InvalidVectorError),
        (np.zeros((2, 4)), InvalidVectorError),
        (np.ones((1, 5)), DimensionMismatchError),
        (np.ones((1, 2, 4)), InvalidVectorError),
        ([["x"] * 4], InvalidVectorError),
        ([[1, 2, 3, 4], [1, 2]], InvalidVectorError),
    ],
)
def test_as_matrix_rejects(value, error):
    with pytest.raises(error):
        as_matrix(value, 4)


def test_as_matrix_accepts_lists_ints_and_empty():
    assert as_matrix([[1, 2, 3, 4]], 4).dtype == np.float32
    assert as_matrix([], 4).shape == (0, 4)
    assert as_vector([1.0, 0, 0, 0], 4).shape == (4,)
    with pytest.raises(InvalidVectorError):
        as_vector([[1.0, 0, 0, 0]], 4)


def test_check_width():
    assert check_width("prefix_dim", 4, full_dim=8) == 4
    for bad in (0, 9, True, 2.0, "4"):
        with pytest.raises(InvalidInputError):
            check_width("prefix_dim", bad, full_dim=8)


def test_row_norms_match_numpy_and_survive_float32_overflow(rng):
    rows = rng.standard_normal((50, 33)).astype(np.float32)
    np.testing.assert_allclose(row_norms(rows), np.linalg.norm(rows.astype(np.float64), axis=1), rtol=1e-6)
    assert row_norms(rows[0]).shape == ()
    # Squares of 3e30 overflow float32; the row is still a valid direction.
    huge = np.array([[3e30, 4e30], [3.0, 4.0]], dtype=np.float32)
    np.testing.assert_allclose(row_norms(huge), [5e30, 5.0], rtol=1e-6)
    np.testing.assert_allclose(normalize(huge), [[0.6, 0.8], [0.6, 0.8]], rtol=1e-6)
    np.testing.assert_allclose(as_matrix(huge, 2), huge)


def test_as_matrix_rejects_rows_longer_than_float32_can_hold():
    with pytest.raises(InvalidVectorError, match="row 1 is too large"):
        as_matrix(np.array([[1.0, 0.0], [3e38, 3e38]], dtype=np.float32), 2)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_normalize_as_is_normalize_then_cast_bit_for_bit(rng, dtype):
    rows = (rng.standard_normal((300, 64)) * rng.uniform(1e-3, 1e3, (300, 1))).astype(np.float32)
    rows[7] = 0.0  # zero rows stay zero, as with normalize
    fused = normalize_as(rows, dtype)
    assert fused.dtype == dtype
    np.testing.assert_array_equal(fused.view(np.uint8), normalize(rows).astype(dtype).view(np.uint8))


def test_unit_vector_is_normalize_of_as_vector_bit_for_bit(rng):
    """The search's one-pass query check gives the very bits (and errors) of the two-step one."""
    for dtype in (np.float32, np.float64, np.float16, np.int64):
        for scale in (1e-3, 1.0, 1e3):
            v = (rng.standard_normal(32) * scale).astype(dtype)
            if not v.any():
                continue
            got, want = unit_vector(v, 32), normalize(as_vector(v, 32))
            assert got.dtype == want.dtype == np.float32 and got.shape == (32,)
            assert got.tobytes() == want.tobytes()
    v = rng.standard_normal(64).astype(np.float32)
    assert unit_vector(v[::2], 32).tobytes() == normalize(as_vector(v[::2], 32)).tobytes()  # not contiguous
    assert unit_vector(list(map(float, v[:32])), 32).tobytes() == normalize(as_vector(list(map(float, v[:32])), 32)).tobytes()
    huge = np.full(32, 1e20, dtype=np.float32)  # squares overflow float32: measured again in float64
    assert unit_vector(huge, 32).tobytes() == normalize(as_vector(huge, 32)).tobytes()
    for bad, error in ((np.zeros(32, np.float32), InvalidVectorError), (np.full(32, np.nan, np.float32), InvalidVectorError),
                       (np.full(32, np.inf, np.float32), InvalidVectorError), (np.ones(31, np.float32), DimensionMismatchError),
                       (np.ones((1, 32), np.float32), InvalidVectorError)):
        with pytest.raises(error):
            unit_vector(bad, 32)
    original = v[:32].copy()
    unit_vector(v[:32], 32)
    assert np.array_equal(v[:32], original)  # the caller's vector is not touched
