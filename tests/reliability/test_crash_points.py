"""White-box crash test: a writer subprocess SIGKILLs itself at each named crash point of the write,
delete, checkpoint, compaction and reindex paths. After each kill the store must reopen, hold every
acknowledged write, hold the in-flight operation either whole or not at all, and leave no temp files.

The canary at the bottom proves the check can fail: when the vector rows of a batch never reach the
disk (a removed write/fsync) but SQLite commits, the same check catches the loss.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mrl_retrievers import MRLStore
from mrl_retrievers.store.local.crashpoints import POINTS

DIM = 24

WRITER = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from mrl_retrievers import MRLStore
    from mrl_retrievers.store.local import crashpoints

    crashpoints.arm(sys.argv[2], int(sys.argv[3]))  # the test driver says where to die

    if os.environ.get("MRL_TEST_BREAK") == "lose-vectors":
        # Canary: pretend the vector rows never reached the disk (a missing write/fsync).
        from mrl_retrievers.store.local.vectors import VectorFile
        VectorFile.append = lambda self, start_row, rows, durable=True: os.ftruncate(self._fd, start_row * self.row_bytes)

    def vec(seed):
        v = np.random.default_rng(seed).standard_normal(%(dim)d).astype(np.float32)
        return v / np.linalg.norm(v)

    def batch(prefix, seeds):
        return [f"{prefix}{s}" for s in seeds], np.stack([vec(s) for s in seeds])

    store = MRLStore.open(sys.argv[1])
    def ack(name):
        print(name, flush=True)

    ids, v = batch("n", range(1000, 1050)); store.add(ids, v, texts=ids); ack("add1")
    store.delete([f"b{s}" for s in range(10)]); ack("delete")
    store.checkpoint(); ack("checkpoint")
    ids, v = batch("b", range(10, 20)); store.add(ids, v + 0.5 * np.stack([vec(s + 7) for s in range(10, 20)]), texts=ids); ack("upsert")
    store.compact(); ack("compact")
    store.reindex(prefix_dim=12); ack("reindex")
    ids, v = batch("m", range(2000, 2030)); store.add(ids, v, texts=ids); ack("add2")
    store.close(); ack("close")
    """
) % {"dim": DIM}


def _vec(seed):
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _model_after(acks):
    """Expected id -> vector after the acknowledged operations, in order."""
    model = {f"b{s}": _vec(s) for s in range(100)}
    steps = {
        "add1": lambda m: m.update({f"n{s}": _vec(s) for s in range(1000, 1050)}),
        "delete": lambda m: [m.pop(f"b{s}", None) for s in range(10)],
        "upsert": lambda m: m.update({f"b{s}": _normalized(_vec(s) + 0.5 * _vec(s + 7)) for s in range(10, 20)}),
        "add2": lambda m: m.update({f"m{s}": _vec(s) for s in range(2000, 2030)}),
    }
    for name in acks:
        steps.get(name, lambda m: None)(model)
    return model


def _normalized(v):
    return v / np.linalg.norm(v)


ORDER = ["add1", "delete", "checkpoint", "upsert", "compact", "reindex", "add2", "close"]


def _prepare(path):
    with MRLStore.create(path, full_dim=DIM, prefix_dim=6, exact_below=0) as store:
        ids = [f"b{s}" for s in range(100)]
        store.add(ids, np.stack([_vec(s) for s in range(100)]), texts=ids)


def _run_writer(path, point, skip, extra_env=None):
    env = dict(os.environ, **(extra_env or {}))
    proc = subprocess.run([sys.executable, "-c", WRITER, str(path), point, str(skip)], capture_output=True, text=True,
                          env=env, timeout=120)
    return proc.returncode, proc.stdout.split(), proc.stderr


def _check_store(path, acks):
    leftovers = [p.name for p in path.iterdir() if p.name.endswith(".tmp-mrl")]
    with MRLStore.open(path) as store:
        assert not [p.name for p in path.iterdir() if p.name.endswith(".tmp-mrl")], "orphan temp files not removed"
        report = MRLStore.verify(path)
        assert report.ok, report.problems
        committed = _model_after(acks)
        in_flight = ORDER[len(acks)] if len(acks) < len(ORDER) else None
        candidates = [committed, _model_after(acks + [in_flight])] if in_flight else [committed]
        records = {r.id: r.vector for r in store.get(sorted(set().union(*candidates)), include_vectors=True)}
        assert len(store) == len(records)
        assert any(
            set(records) == set(model) and all(np.allclose(records[i], model[i], atol=2e-3) for i in model)
            for model in candidates
        ), f"store matches neither the acknowledged state nor it plus the in-flight {in_flight!r}"
        for id_ in list(records)[:20]:  # searches work and find each item
            assert store.search(records[id_], k=1)[0].id == id_
    return leftovers


@pytest.mark.parametrize("skip", [0, 1])
@pytest.mark.parametrize("point", POINTS)
def test_crash_at_named_point(tmp_path, point, skip):
    path = tmp_path / "s"
    _prepare(path)
    code, acks, stderr = _run_writer(path, point, skip)
    if skip == 0:
        assert code == -signal.SIGKILL, f"crash point {point} was never reached: {stderr}"
    else:
        assert code in (0, -signal.SIGKILL), stderr
    _check_store(path, acks)


def test_repeated_crashes_on_the_same_store(tmp_path):
    """Kill, reopen, kill again at another point: damage must not accumulate."""
    path = tmp_path / "s"
    _prepare(path)
    for point in ("add:mid-transaction", "manifest:temp-synced", "ann:renamed", "compact:committed"):
        code, acks, stderr = _run_writer(path, point, 0)
        assert code == -signal.SIGKILL, stderr
        with MRLStore.open(path) as store:
            assert len(store) >= 90
            assert MRLStore.verify(path).ok


def test_canary_lost_vector_rows_are_caught(tmp_path):
    path = tmp_path / "s"
    _prepare(path)
    code, acks, _ = _run_writer(path, "add:committed", 0, {"MRL_TEST_BREAK": "lose-vectors"})
    assert code == -signal.SIGKILL and acks == []
    with pytest.raises(Exception, match="committed"):
        _check_store(path, acks + ["add1"])
