"""Shared fixtures: seeded randomness, temporary stores, synthetic MRL-like data.

Every random test draws from ``rng`` (seeded by MRL_TEST_SEED, default 1234) and the seed is printed
in the header so a failure can be replayed.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from mrl_retrievers import MRLStore

SEED = int(os.environ.get("MRL_TEST_SEED", "1234"))


def pytest_report_header(config):
    return f"mrl-retrievers test seed: MRL_TEST_SEED={SEED}"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(SEED)


@pytest.fixture
def make_store(tmp_path):
    """Factory for stores under tmp_path; closes them all at the end."""
    opened: list[MRLStore] = []

    def make(name: str = "store", **kwargs) -> MRLStore:
        kwargs.setdefault("full_dim", 32)
        kwargs.setdefault("prefix_dim", 8)
        store = MRLStore.create(tmp_path / name, **kwargs)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
