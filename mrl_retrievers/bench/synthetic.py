"""Seeded synthetic MRL-like vectors: information front-loaded in the first dimensions.

Real MRL embeddings put most of their variance (and most of the *discriminative* signal) into the
leading dimensions. We imitate that with a per-dimension scale that decays as a power law, on top
of a cluster structure (documents about the same topic share a centre), so that a prefix is a good
but imperfect proxy for the full vector: exactly the regime where coarse-to-fine pays off.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np


def spectrum(dim: int, decay: float = 0.5) -> np.ndarray:
    """Per-dimension scale ``(1 + i) ** -decay`` (larger decay = more front-loaded)."""
    return (1.0 + np.arange(dim, dtype=np.float64)) ** -decay


def mrl_like(
    n: int,
    dim: int,
    *,
    seed: int = 0,
    clusters: int = 256,
    decay: float = 0.5,
    spread: float = 0.6,
    block: int = 65536,
) -> Iterator[np.ndarray]:
    """Yield blocks of ``n`` unit vectors (float32), generated lazily so 1M x 1024 fits in RAM.

    Each vector = cluster centre + ``spread`` x noise, both shaped by ``spectrum``; then normalized.
    The same (n, dim, seed, ...) always yields the same vectors.
    """
    rng = np.random.default_rng(seed)
    scale = spectrum(dim, decay).astype(np.float32)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32) * scale
    for start in range(0, n, block):
        m = min(block, n - start)
        which = rng.integers(0, clusters, size=m)
        x = centres[which] + spread * rng.standard_normal((m, dim)).astype(np.float32) * scale
        yield x / np.linalg.norm(x, axis=1, keepdims=True)


def mrl_like_from(
    n: int,
    dim: int,
    start: int = 0,
    *,
    seed: int = 0,
    clusters: int = 256,
    decay: float = 0.5,
    spread: float = 0.6,
    block: int = 65536,
) -> Iterator[np.ndarray]:
    """``mrl_like`` vectors that can start anywhere: each block of ``block`` rows has its own seeded
    generator, so rows [start, n) come out without generating the rows before them (a 10M-row bulk
    load resumes without regenerating what it stored). Same recipe as ``mrl_like``, another stream.
    """
    scale = spectrum(dim, decay).astype(np.float32)
    centres = np.random.default_rng(seed).standard_normal((clusters, dim)).astype(np.float32) * scale
    first = start // block
    for number in range(first, (n + block - 1) // block):
        rng = np.random.default_rng([seed, number])
        lo = number * block
        m = min(block, n - lo)
        which = rng.integers(0, clusters, size=m)
        x = centres[which] + spread * rng.standard_normal((m, dim)).astype(np.float32) * scale
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield x[max(0, start - lo):]


def dataset(n: int, dim: int, **kwargs) -> np.ndarray:
    """All of ``mrl_like`` in one array (for tests and small benchmarks)."""
    return np.concatenate(list(mrl_like(n, dim, **kwargs))) if n else np.empty((0, dim), np.float32)


def queries_near(data: np.ndarray, nq: int, *, seed: int = 1, noise: float | tuple[float, float] = 0.5,
                 decay: float = 0.5) -> np.ndarray:
    """Queries that resemble stored vectors without being copies of them (a paraphrase, not a lookup).
    ``noise``: the norm of the spectrum-shaped noise, or a (low, high) range each query draws its own
    from, uniformly (a mix of paraphrases and looser questions)."""
    rng = np.random.default_rng(seed)
    base = data[rng.integers(0, len(data), size=nq)]
    if isinstance(noise, tuple):
        noise = rng.uniform(*noise, size=(nq, 1)).astype(np.float32)
    scale = spectrum(data.shape[1], decay).astype(np.float32)
    q = base + noise * rng.standard_normal(base.shape).astype(np.float32) * scale / np.linalg.norm(scale)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def recall_at_k(found: list[list[str]], truth: list[list[str]], k: int) -> float:
    """Mean fraction of the true top-k ids that were found."""
    if not truth:
        return 1.0
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / max(1, min(k, len(t))) for f, t in zip(found, truth)]))
