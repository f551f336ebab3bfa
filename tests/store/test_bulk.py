"""Bulk loads (store/local/bulk.py): every source kind, bounded memory, and a load killed part-way that
resumes after its last committed batch without sending it again (issue 18, small scale)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from mrl_retrievers import MRLStore
from mrl_retrievers.bench.synthetic import dataset
from mrl_retrievers.errors import InvalidInputError

ROOT = str(Path(__file__).resolve().parents[2])
DIM = 64


def test_a_npy_file_loads_in_batches_and_is_searchable(tmp_path):
    data = dataset(5000, DIM, seed=1)
    np.save(tmp_path / "v.npy", data.astype(np.float16))
    seen = []
    with MRLStore.create(tmp_path / "s", full_dim=DIM, prefix_dim=16, exact_below=0) as store:
        report = store.bulk_add(tmp_path / "v.npy", batch_rows=700, progress=lambda done, total: seen.append((done, total)))
        assert report.rows == 5000 and report.resumed_from == 0 and report.total == 5000
        assert seen[-1] == (5000, 5000) and len(seen) == 8
        assert len(store) == 5000 and store.search(data[1234], k=1)[0].id == "1234"
        again = store.bulk_add(tmp_path / "v.npy", batch_rows=700)  # the same file again: nothing to do
        assert again.rows == 0 and again.resumed_from == 5000 and len(store) == 5000


def test_generators_and_start_callables_with_their_own_ids_and_texts(tmp_path):
    data = dataset(900, DIM, seed=2)

    def blocks(start):
        for lo in range(start, 900, 250):
            hi = min(900, lo + 250)
            yield [f"doc-{i}" for i in range(lo, hi)], data[lo:hi], [f"text {i}" for i in range(lo, hi)]

    with MRLStore.create(tmp_path / "s", full_dim=DIM, prefix_dim=16) as store:
        assert store.bulk_add(blocks, name="docs", batch_rows=100).rows == 900
        assert store.get(["doc-899"])[0].text == "text 899"
        assert store.bulk_add(iter([data[:10]]), ids=lambda i: f"x{i}").rows == 10
        assert store.search(data[3], k=2)[0].id in {"doc-3", "x3"}
        with pytest.raises(InvalidInputError):
            store.bulk_add(iter([(["a"], data[:1], None, None, None)]))
        with pytest.raises(InvalidInputError):
            store.bulk_add(data[:10], batch_rows=0)


def test_a_load_calibrates_once_at_its_end_not_at_each_checkpoint(tmp_path, monkeypatch):
    from mrl_retrievers.store.local import calibration, checkpoints

    data = dataset(12_000, 32, seed=5)
    sources, saved = [], []
    real = calibration.calibrate
    monkeypatch.setattr(calibration, "DEFAULT_PROBES", 48)
    monkeypatch.setattr(calibration, "calibrate", lambda state, **kw: sources.append(kw["source"]) or real(state, **kw))
    real_checkpoint = checkpoints.checkpoint
    monkeypatch.setattr(checkpoints, "checkpoint", lambda state, *a, **kw: saved.append(state.rows) or real_checkpoint(state, *a, **kw))
    monkeypatch.setattr(checkpoints, "checkpoint_due", lambda state, min_rows: True)  # after every batch, as a long build
    with MRLStore.create(tmp_path / "s", full_dim=32, prefix_dim=8) as store:
        assert store.bulk_add(data, batch_rows=1500).rows == 12_000
        assert len(saved) >= 6  # the load checkpointed as it grew past 2x, 4x ... the first calibration's size
        assert sources == ["bulk_add"]
        assert store.manifest.calibration.live == 12_000 and store.manifest.calibration.source == "bulk_add"
        store.add(["one more"], data[:1])
        store.checkpoint()
        assert sources == ["bulk_add"]  # 12,001 live: within 2x of the calibrated size
        assert store._s.auto_calibrate  # checkpoints outside a load calibrate again


def test_memory_stays_bounded_by_the_batch_not_the_source(tmp_path):
    n, dim = 60_000, 256
    source = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float16, shape=(n, dim))
    rng = np.random.default_rng(3)
    for lo in range(0, n, 10_000):
        source[lo : lo + 10_000] = rng.standard_normal((10_000, dim)).astype(np.float16)
    source.flush()
    del source
    with MRLStore.create(tmp_path / "s", full_dim=dim, prefix_dim=32, exact_below=0) as store:
        tracemalloc.start()
        store.bulk_add(tmp_path / "big.npy", batch_rows=2000)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert len(store) == n
    whole = n * dim * 4  # the source as float32: 61 MB
    assert peak < whole / 4, f"peak {peak / 1e6:.1f} MB of Python allocations for a {whole / 1e6:.0f} MB source"


KILLED_LOAD = textwrap.dedent(
    """
    import sys, numpy as np
    from mrl_retrievers import MRLStore
    from mrl_retrievers.store.local import crashpoints
    if len(sys.argv) > 3:
        crashpoints.arm(sys.argv[3], int(sys.argv[4]))
    store = MRLStore.open(sys.argv[1])
    report = store.bulk_add(sys.argv[2], batch_rows=1000)
    store.close()
    print(report.resumed_from, report.rows)
    """
)


def test_a_killed_load_resumes_after_its_last_committed_batch(tmp_path):
    data = dataset(12_000, DIM, seed=4)
    np.save(tmp_path / "v.npy", data.astype(np.float16))
    path = tmp_path / "s"
    MRLStore.create(path, full_dim=DIM, prefix_dim=16, exact_below=0, segment_rows=4000).close()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    killed = subprocess.run([sys.executable, "-c", KILLED_LOAD, str(path), str(tmp_path / "v.npy"), "add:committed", "6"],
                            capture_output=True, text=True, timeout=300, env=env)
    assert killed.returncode == -9, killed.stderr  # SIGKILLed right after the 7th batch committed
    resumed = subprocess.run([sys.executable, "-c", KILLED_LOAD, str(path), str(tmp_path / "v.npy")], capture_output=True,
                             text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.split() == ["7000", "5000"]  # nothing committed was sent again
    with MRLStore.open(path) as store:
        assert len(store) == 12_000 and store._s.rows == 12_000  # no row written twice
        assert store._s.ann_note is None
        assert [store.search(data[i], k=1)[0].id for i in (0, 6999, 7000, 11_999)] == ["0", "6999", "7000", "11999"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert [s["watermark"] for s in manifest["ann"]["segments"]] == [4000, 8000, 12000]
