"""A Hypothesis state machine: add / upsert / delete / search / compact / close+reopen against a
dict model. Invariants after every step: count; ids <-> rows <-> index labels agree; deleted and
never-added ids are never returned; search results are live ids; reopening changes nothing."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mrl_retrievers import MRLStore

DIM = 16
ID_POOL = [f"id{i}" for i in range(40)]


def vector_for(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


class StoreMachine(RuleBasedStateMachine):
    @initialize(exact_below=st.sampled_from([0, 1_000]), segment_rows=st.sampled_from([5, 1 << 22]))
    def create(self, exact_below, segment_rows):
        self.dir = Path(tempfile.mkdtemp(prefix="mrl-sm-"))
        self.store = MRLStore.create(self.dir / "s", full_dim=DIM, prefix_dim=4, exact_below=exact_below,
                                     segment_rows=segment_rows)
        self.model: dict[str, tuple[int, dict]] = {}  # id -> (vector seed, metadata)
        self.ever: set[str] = set()

    def teardown(self):
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(items=st.lists(st.tuples(st.sampled_from(ID_POOL), st.integers(0, 10_000)), min_size=1, max_size=8, unique_by=lambda t: t[0]))
    def add(self, items):
        ids = [i for i, _ in items]
        vectors = np.stack([vector_for(seed) for _, seed in items])
        metas = [{"seed": seed, "parity": seed % 2} for _, seed in items]
        self.store.add(ids, vectors, texts=[f"text {s}" for _, s in items], metadatas=metas)
        for (id_, seed), meta in zip(items, metas):
            self.model[id_] = (seed, meta)
            self.ever.add(id_)

    @rule(ids=st.lists(st.sampled_from(ID_POOL), max_size=5))
    def delete(self, ids):
        expected = len(set(ids) & set(self.model))
        assert self.store.delete(ids) == expected
        for id_ in ids:
            self.model.pop(id_, None)

    @rule(seed=st.integers(0, 10_000), k=st.integers(1, 50), parity=st.sampled_from([None, 0, 1]))
    def search(self, seed, k, parity):
        flt = None if parity is None else {"parity": parity}
        hits = self.store.search(vector_for(seed), k=k, filter=flt)
        live = {i for i, (_, m) in self.model.items() if parity is None or m["parity"] == parity}
        assert len(hits) == min(k, len(live))
        assert {h.id for h in hits} <= live
        for h in hits:
            seed_, meta = self.model[h.id]
            assert h.metadata == meta and h.text == f"text {seed_}"

    @rule(seed=st.sampled_from(range(10_000)))
    def self_lookup(self, seed):
        """A stored vector finds itself first (exact rerank), wherever it came from."""
        match = [i for i, (s, _) in self.model.items() if s == seed]
        if match:
            top = self.store.search(vector_for(seed), k=1)[0]
            assert self.model[top.id][0] == seed

    @precondition(lambda self: len(self.ever) > 0)
    @rule()
    def compact(self):
        self.store.compact()

    @rule()
    def reopen(self):
        before = {h.id for h in self.store.search_exact(vector_for(1), k=50)}
        self.store.close()
        self.store = MRLStore.open(self.dir / "s")
        assert {h.id for h in self.store.search_exact(vector_for(1), k=50)} == before

    @rule()
    def checkpoint(self):
        self.store.checkpoint()

    @invariant()
    def counts_and_mappings_agree(self):
        store = self.store
        assert len(store) == len(self.model)
        state = store._s
        assert state.docs.count() == len(self.model)
        assert state.ann.live == len(self.model)
        live_rows = state.docs.live_rows()
        assert len(set(live_rows.tolist())) == len(live_rows)
        assert all(0 <= r < state.rows for r in live_rows.tolist())
        records = store.get(list(self.model))
        assert [r.id for r in records] == list(self.model)
        assert store.get(sorted(self.ever - set(self.model))) == []


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
