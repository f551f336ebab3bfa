"""Scoring stored rows against a query: the compiled kernel (``_kernel.c``) and its numpy twin.

A search's fine stage reads its candidate rows and keeps the best ``k``. In numpy that is a gather
(a copy), a float16 conversion, a dot product, a partition and a sort: ~25 calls, each taking the
GIL back, so two searching threads spend their time handing it over (docs/benchmarks.md, "Two
threads, stage by stage"). The kernel does it in one call that reads the rows in place through the
map, with the GIL released. It is built when the package is installed (``hatch_build.py``); where it
could not be built, or with ``MRL_RETRIEVERS_KERNEL=numpy`` in the environment, the numpy twin runs.

The two agree on which rows win and on every score to float32 rounding (they sum in a different
order); each is deterministic. ``IndexError`` means a row lies outside the matrix given. The search's
query is normalized here too (``unit_query``): one compiled call instead of numpy's two GIL hand-overs.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ...mrl import as_matrix, as_vector, normalize, prefix, unit_vector
from .. import effort

try:
    from . import _kernel as _compiled
except ImportError:  # not built (no C compiler at install time, or a source checkout never installed)
    _compiled = None
    _WHY_NOT = "numpy (the compiled kernel was not built: reinstall with a C compiler)"
else:
    _WHY_NOT = "numpy (MRL_RETRIEVERS_KERNEL=numpy)"

if os.environ.get("MRL_RETRIEVERS_KERNEL", "").lower() == "numpy":
    _compiled = None


def compiled() -> bool:
    """Whether searches use the compiled kernel (False: the numpy twin)."""
    return _compiled is not None


def use_numpy() -> None:
    """Score with the numpy twin from now on, in this process (the bench's ablation, ``ours-numpy``;
    ``MRL_RETRIEVERS_KERNEL=numpy`` in the environment does the same at import)."""
    global _compiled, _WHY_NOT
    _compiled, _WHY_NOT = None, "numpy (asked for: kernel.use_numpy())"


def describe() -> str:
    """What scores a search's candidates here (``info`` shows it)."""
    if _compiled is None:
        return _WHY_NOT
    return "compiled kernel, " + ("F16C float16 conversion" if _compiled.uses_f16c() else "portable float16 conversion")


# numpy converts float16 with a scalar loop (~2-4 ns a number here: 0.4-0.7 ms for a 200 x 1024
# rerank, more than the dot products). Moving bits is exact and ~5x faster: a float16's sign,
# exponent and mantissa shifted into a float32's positions is the same number times 2**-112 (the
# exponent biases differ by 127 - 15), subnormals included; the factor goes on the query instead.
# (Rows are unit vectors, so there is no inf/NaN to carry; a damaged row fails its CRC first.)
_F16_SCALE = np.float32(2.0**112)
_F16_BITS = np.int32(-0x70002000)  # 0x8FFFE000: the sign bit and the 15 exponent + mantissa bits


def _f16_scaled(rows: np.ndarray) -> np.ndarray:
    wide = rows.view(np.int16).astype(np.int32)  # sign-extended: bit 31 is the sign
    wide <<= 13
    wide &= _F16_BITS
    return wide.view(np.float32)


def to_float32(rows: np.ndarray) -> np.ndarray:
    """Stored rows (float16 or float32) as a new float32 array, exactly."""
    if rows.dtype != np.float16:
        return np.array(rows, dtype=np.float32)
    out = _f16_scaled(rows)
    out *= _F16_SCALE
    return out


def dot(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``rows @ query`` in float32 for stored rows of either dtype (numpy: many rows at once)."""
    if rows.dtype != np.float16:
        return rows @ query
    return _f16_scaled(rows) @ (query * _F16_SCALE)


def top_k(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` (score descending, row ascending on ties: deterministic). Every row tied with the
    k-th score is kept until the sort, so the lower rows win a tie at the cut too (a partition alone
    keeps an arbitrary few of them: the exact search then returned other copies of a stored
    duplicate than the compiled search, and than a batch of exact searches)."""
    if len(rows) > k:
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]  # the k-th best score
        keep = np.flatnonzero(scores >= kth)
        rows, scores = rows[keep], scores[keep]
    order = np.lexsort((rows, -scores))[:k]
    return rows[order], scores[order]


def best_scored(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``top_k`` of rows already scored, compiled where the kernel is built: one call instead of
    numpy's ~4 us partition and sort, ranking ties by row as the fixed search's rerank does; a row
    listed twice counts once (as in ``best_of``; the climb's rows are unique)."""
    if _compiled is None or rows.dtype != np.int64 or scores.dtype != np.float32:
        return top_k(rows, scores, k)
    out_rows = np.empty(min(k, len(rows)), dtype=np.int64)
    out_scores = np.empty(len(out_rows), dtype=np.float32)
    if _compiled.best_scored(np.ascontiguousarray(rows), np.ascontiguousarray(scores), out_rows, out_scores) == -2:
        unique, first = np.unique(rows, return_index=True)
        return best_scored(unique, scores[first], k)
    return out_rows, out_scores


def best_of(matrix: np.ndarray, rows: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of ``matrix[rows]`` by dot product with ``query`` (unit, float32), as
    (rows, scores) in ``top_k``'s order; a row listed twice counts once."""
    if _compiled is None or len(rows) == 0:
        rows = np.unique(rows)  # sorted too: the copy reads the map front to back
        return top_k(rows, dot(matrix[rows], query), k)
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    out_rows = np.empty(min(k, len(rows)), dtype=np.int64)
    out_scores = np.empty(len(out_rows), dtype=np.float32)
    count = _compiled.top_k(matrix, rows, np.ascontiguousarray(query, dtype=np.float32), out_rows, out_scores)
    if count == -2:  # hnswlib's labels are unique: only a caller's own list can get here
        return best_of(matrix, np.unique(rows), query, k)
    if count < 0:
        raise IndexError(f"a row of {len(rows)} lies outside the {len(matrix)} rows mapped")
    return out_rows, out_scores


def scores_of(matrix: np.ndarray, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Dot products of ``matrix[rows]`` with ``query``, in ``rows``' order (what ``best_of`` ranks by)."""
    if _compiled is None or len(rows) == 0:
        return dot(matrix[rows], query)
    out = np.empty(len(rows), dtype=np.float32)
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if _compiled.scores(matrix, rows, np.ascontiguousarray(query, dtype=np.float32), out) < 0:
        raise IndexError(f"a row of {len(rows)} lies outside the {len(matrix)} rows mapped")
    return out


def confidence_parts(sims: np.ndarray, scores: np.ndarray, k: int) -> tuple[float, float]:
    """``effort.confidence_parts`` (the adaptive climb's judgement of a shortlist) in one compiled
    call where the kernel is built: ~0.5 us instead of numpy's ~7, which a search paid at every level
    it climbed. The store's calibration and its searches both judge through here, so a threshold a
    calibration recorded is compared with values of the same arithmetic (the twin sums in another
    order: its values can differ in the last bits)."""
    if _compiled is None or len(scores) <= k or sims.dtype != np.float32 or scores.dtype != np.float32:
        return effort.confidence_parts(sims, scores, k)
    return _compiled.confidence(np.ascontiguousarray(sims), np.ascontiguousarray(scores), k)


def simulate(recall: np.ndarray, conf: np.ndarray, b: int, ladder: np.ndarray, last: int, cumulative: np.ndarray,
             taus) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One candidate policy run on a calibration's trace, for every probe and threshold: (cost, recall
    got, stop), each (probes, thresholds). ``recall`` and ``conf`` are the trace's (probes, ratios,
    levels) arrays (the confidence combined with the policy's weight), in ``calibration``'s order; the policy climbs the levels
    ``ladder`` of ratio ``b``, and a probe stops at the first of the first ``last`` whose confidence
    is >= the threshold, else at ``last`` (``len(ladder)``: the exact scan, which finds everything),
    paying ``cumulative[stop]``. ``calibration._simulate`` says why; the calibration asks it of
    thousands of candidates, compiled one call in place of ~15 numpy ones (~0.6 s of a 20k store's
    ~3 s calibration). Both ways give the same numbers: they are picked, not computed."""
    taus = np.ascontiguousarray(taus, dtype=np.float64)
    ladder = np.ascontiguousarray(ladder, dtype=np.int64)
    shape = (len(conf), len(taus))
    if _compiled is None:  # the twin: judged from the last level down, so the first one passed wins
        judged = conf[:, b, ladder]
        stop = np.full(shape, last, dtype=np.int64)
        for j in range(last - 1, -1, -1):
            stop[judged[:, j, None] >= taus[None, :]] = j
        reached = np.append(recall[:, b, ladder], np.ones((len(recall), 1)), axis=1)
        return cumulative[stop], np.take_along_axis(reached, stop, axis=1), stop
    cost, got, stop = np.empty(shape), np.empty(shape), np.empty(shape, dtype=np.int64)
    _compiled.simulate(np.ascontiguousarray(conf, dtype=np.float64), np.ascontiguousarray(recall, dtype=np.float64), b, ladder,
                       last, np.ascontiguousarray(cumulative, dtype=np.float64), taus, cost, got, stop)
    return cost, got, stop


def unit_query(vector: Any, dim: int) -> np.ndarray:
    """A search's query as a unit float32 vector, with ``mrl.unit_vector``'s checks and errors.

    Compiled, the division runs in one call that keeps the GIL: numpy hands it over twice for a
    1024-number vector (its loops over more than 500 numbers release it), and with two threads
    searching each hand-over waits for the other thread's Python (+13% two-thread QPS at 100k,
    docs/benchmarks.md). Every search entry point normalizes through here or ``unit_queries``, so
    one query gets the same bits whichever takes it.
    """
    if _compiled is None:
        return unit_vector(vector, dim)
    if not (type(vector) is np.ndarray and vector.dtype == np.float32 and vector.shape == (dim,) and vector.flags.c_contiguous):
        vector = as_vector(vector, dim)  # the checks and their errors; float32 from here
    out = np.empty(dim, dtype=np.float32)
    if _compiled.unit(vector, out) > 0:
        return out
    return unit_vector(vector, dim)  # not finite, too long for float32 or (near) zero: its checks decide


def unit_queries(vectors: Any, dim: int) -> np.ndarray:
    """``unit_query`` for each row of a batch (``mrl.as_matrix``'s checks and errors)."""
    matrix = as_matrix(vectors, dim, what="query vectors")
    if _compiled is None:
        return normalize(matrix)
    out = np.empty_like(matrix)
    for i, row in enumerate(matrix):
        if _compiled.unit(row, out[i]) <= 0:
            out[i] = normalize(row)
    return out


def unit_prefix(query: np.ndarray, dim: int) -> np.ndarray:
    """The renormalized ``dim``-wide prefix of one unit float32 query (``mrl.prefix``), 1-d: what the
    coarse index is searched with. Compiled, one call instead of numpy's four (~1 us of a ~3.5 us
    step). Every search takes its prefixes from here or ``unit_prefixes``, so a query walks the graph
    with the same bits whether it comes alone, in a batch or in a calibration."""
    if _compiled is not None and query.dtype == np.float32 and query.flags.c_contiguous:
        out = np.empty(dim, dtype=np.float32)
        if _compiled.unit(query[:dim], out) > 0:
            return out
    return prefix(query, dim)  # the numpy twin, or a prefix of (near) zeros: its rules


def unit_prefixes(queries: np.ndarray, dim: int) -> np.ndarray:
    """``unit_prefix`` of each row of a (n, full) float32 batch of unit queries, as (n, dim)."""
    if _compiled is None:
        return prefix(queries, dim)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    out = np.empty((len(queries), dim), dtype=np.float32)
    for i, row in enumerate(queries):
        if _compiled.unit(row[:dim], out[i]) <= 0:
            out[i] = prefix(row, dim)
    return out


def unchecked(checked: np.ndarray, rows: np.ndarray) -> bool:
    """Whether any of ``rows`` is not marked in the ``checked`` bitmap (or lies past its end)."""
    if _compiled is None or rows.dtype != np.int64:
        return len(rows) > 0 and (int(rows.max()) >= len(checked) or not checked[rows].all())
    return _compiled.unchecked(checked, rows) > 0
