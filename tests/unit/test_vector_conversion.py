"""The rerank's float16 -> float32 conversion is exact (bit moves + a power-of-two factor)."""

from __future__ import annotations

import numpy as np

from mrl_retrievers.store.local.kernel import dot, to_float32


def test_every_finite_float16_converts_exactly():
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    values = bits.view(np.float16)
    finite = values[np.isfinite(values)].reshape(1, -1)  # subnormals, zeros of both signs included
    assert np.array_equal(to_float32(finite), finite.astype(np.float32))
    assert np.array_equal(np.signbit(to_float32(finite)), np.signbit(finite))


def test_dot_matches_the_plain_conversion(rng):
    rows = (rng.standard_normal((300, 1024)) * 0.03).astype(np.float16)  # some subnormals too
    query = rng.standard_normal(1024).astype(np.float32)
    assert np.array_equal(dot(rows, query), rows.astype(np.float32) @ query)
    wide = rows.astype(np.float32)
    assert np.array_equal(dot(wide, query), wide @ query)
