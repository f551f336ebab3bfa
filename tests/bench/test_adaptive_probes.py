"""``adaptive-probes`` measures what it says: on data whose spread and whose local differences lie in
different dimensions, the three prefix shares come apart the way the construction puts them."""

from __future__ import annotations

import numpy as np

from mrl_retrievers.bench import data
from mrl_retrievers.bench.adaptive import Workload
from mrl_retrievers.bench.adaptive_probes import format_rows, nearest, prefix_share, study

DIM, PREFIX, CLUSTERS = 64, 8, 200


def clustered(rng: np.random.Generator, n: int, centres: np.ndarray) -> np.ndarray:
    """Items of random clusters: the centres differ only in the first PREFIX dimensions (the
    spread lives there), the items around them by the same small noise in every dimension."""
    return centres[rng.integers(0, len(centres), n)] + 0.08 * rng.standard_normal((n, DIM))


def test_prefix_shares_follow_where_the_offsets_lie(tmp_path):
    rng = np.random.default_rng(0)
    centres = np.zeros((CLUSTERS, DIM))
    centres[:, :PREFIX] = rng.standard_normal((CLUSTERS, PREFIX))
    np.save(tmp_path / "docs.npy", clustered(rng, 4000, centres).astype(np.float32))
    np.save(tmp_path / "queries.npy", clustered(rng, 300, centres).astype(np.float32))  # held-out items
    ds = data.from_npy(tmp_path / "docs.npy", cache=tmp_path / "cache", k=10, queries=str(tmp_path / "queries.npy"))
    row = study(Workload("clustered", ds, PREFIX), nq=300, sample=256)

    share = row["prefix_share"]
    isotropic = PREFIX / DIM  # 0.125: where a held-out item's offset from its nearest item lies
    assert abs(share["queries"] - isotropic) < 0.06, share
    assert abs(share["neighbour_differences"] - isotropic) < 0.06, share
    assert share["probe_noise"] > 0.9, share  # shaped like the spread: the centres' dimensions
    assert set(row["nearest_offset"]) == {"queries", "probes stratum 0", "probes stratum 1", "probes stratum 2"}
    for p10, p50, p90 in row["nearest_offset"].values():
        assert 0 <= p10 <= p50 <= p90 <= 2
    assert "| clustered |" in format_rows([row])


def test_nearest_is_exact_and_skips_the_excluded_row(tmp_path):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((3000, 16)).astype(np.float32)
    np.save(tmp_path / "v.npy", vectors)
    ds = data.from_npy(tmp_path / "v.npy", cache=tmp_path / "cache", k=10, nq=20)
    unit = np.asarray(ds.vectors(), dtype=np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    own = np.array([5, 17, 2999])
    assert nearest(ds, unit[own]).tolist() == own.tolist()
    expected = [int(np.argsort(-(unit @ unit[r]))[1]) for r in own]
    assert nearest(ds, unit[own], exclude=own).tolist() == expected
    assert prefix_share(np.eye(16)[:4], 4) == 1.0
