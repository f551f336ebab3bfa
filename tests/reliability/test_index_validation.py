"""``MRLIndex.add_texts`` refuses bad input before its first write (issue 13, item 12).

Regression: ``add_texts`` validated metadata, ids and texts one step (512 texts) at a time, so a bad
item at position 599 was refused only after the first 512 items had been stored, and the error named
the item's position inside the step (``metadatas[87]``) instead of the caller's index (599).

Pass: for a bad item anywhere in a 600-item call (sync and async), the typed error names the
caller's index (or the duplicated id), no provider call is made, and every file of an existing store
is byte-for-byte unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from pathlib import Path

import pytest

from mrl_retrievers import MRLIndex
from mrl_retrievers.errors import DuplicateIdError, InvalidInputError, InvalidMetadataError
from mrl_retrievers.providers.fake import FakeProvider

N = 600  # more than one default step (512)
BAD = 599


class StrictFake(FakeProvider):
    """The fake provider, refusing empty texts the way the hosted APIs do."""

    reject_empty = True


def _files(path: Path) -> dict[str, str]:
    # The lock file and SQLite's shared-memory index are touched by any open: not content.
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())
            if p.is_file() and p.name not in ("lock", "docs.sqlite-shm")}


def _batch():
    texts = [f"passage {i}" for i in range(N)]
    metadatas = [{"n": i} for i in range(N)]
    ids = [f"id-{i}" for i in range(N)]
    return texts, metadatas, ids


def _with(position_change):
    texts, metadatas, ids = _batch()
    position_change(texts, metadatas, ids)
    return texts, metadatas, ids


CASES = {
    "metadata NaN": (lambda t, m, i: m.__setitem__(BAD, {"x": math.nan}), InvalidMetadataError, f"metadatas[{BAD}]"),
    "metadata not a dict": (lambda t, m, i: m.__setitem__(BAD, ["x"]), InvalidMetadataError, f"metadatas[{BAD}]"),
    "metadata bytes": (lambda t, m, i: m.__setitem__(BAD, {"x": b"raw"}), InvalidMetadataError, f"metadatas[{BAD}]"),
    "duplicate id": (lambda t, m, i: i.__setitem__(BAD, "id-3"), DuplicateIdError, "'id-3'"),
    "id not a string": (lambda t, m, i: i.__setitem__(BAD, 599), InvalidInputError, f"ids[{BAD}]"),
    "empty id": (lambda t, m, i: i.__setitem__(BAD, ""), InvalidInputError, f"ids[{BAD}]"),
    "text not a string": (lambda t, m, i: t.__setitem__(BAD, None), InvalidInputError, f"texts[{BAD}]"),
    "text lone surrogate": (lambda t, m, i: t.__setitem__(BAD, "bad \udc00"), InvalidInputError, f"texts[{BAD}]"),
    "empty text (hosted-like provider)": (lambda t, m, i: t.__setitem__(BAD, "  "), InvalidInputError, f"texts[{BAD}]"),
}


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_item_past_the_first_step_is_refused_before_any_write(tmp_path, case, mode):
    change, error, names = CASES[case]
    provider = StrictFake(dim=32)
    path = tmp_path / "store"
    with MRLIndex(provider, path, prefix_dim=8) as index:
        index.add_texts(["already here"], ids=["old"])
    before, calls = _files(path), provider.calls
    texts, metadatas, ids = _with(change)
    with MRLIndex(provider, path) as index:
        with pytest.raises(error) as info:
            if mode == "sync":
                index.add_texts(texts, metadatas, ids)
            else:
                asyncio.run(index.aadd_texts(texts, metadatas, ids))
        assert len(index) == 1
    assert names in str(info.value), str(info.value)
    assert provider.calls == calls, "the provider was called before the input was checked"
    assert _files(path) == before


def test_lengths_that_differ_are_refused_with_the_counts(tmp_path):
    with MRLIndex(FakeProvider(dim=16), tmp_path / "s", prefix_dim=8) as index:
        with pytest.raises(InvalidInputError, match="600 texts.*599"):
            index.add_texts([f"t{i}" for i in range(N)], [{}] * (N - 1))
        with pytest.raises(InvalidInputError, match="600 texts.*601"):
            index.add_texts([f"t{i}" for i in range(N)], ids=[f"i{i}" for i in range(N + 1)])
