"""A damage sweep over every field of the manifest, of docs.sqlite's ``meta`` rows and of SQLite's
100-byte file header (issue 13: "no open destroys").

For each case one field is changed (one digit or character of a manifest value or a meta value;
one bit of a header field), then a writer opens the store and ``verify`` runs. Pass, for every case:
the open either succeeds on a store that is consistent or raises a typed ``MRLError`` (never a raw
exception); no file of the store shrank or disappeared; and restoring the damaged bytes gives back
every item. The totals are printed for the README's Guarantees.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from mrl_retrievers import MRLStore
from mrl_retrievers.errors import MRLError

DIM = 64
N = 3000

# SQLite's database header (https://www.sqlite.org/fileformat.html#the_database_header): offset, size.
HEADER_FIELDS = {
    "magic string": (0, 16), "page size": (16, 2), "write version": (18, 1), "read version": (19, 1),
    "reserved bytes": (20, 1), "max payload fraction": (21, 1), "min payload fraction": (22, 1),
    "leaf payload fraction": (23, 1), "change counter": (24, 4), "size in pages": (28, 4),
    "first freelist page": (32, 4), "freelist pages": (36, 4), "schema cookie": (40, 4),
    "schema format": (44, 4), "cache size": (48, 4), "largest root page": (52, 4), "text encoding": (56, 4),
    "user version": (60, 4), "incremental vacuum": (64, 4), "application id": (68, 4), "reserved": (72, 20),
    "version-valid-for": (92, 4), "sqlite version": (96, 4),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    path = tmp_path_factory.mktemp("damage") / "s"
    data = np.random.default_rng(11).standard_normal((N, DIM)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    with MRLStore.create(path, full_dim=DIM, prefix_dim=16) as store:
        store.add([f"id{i}" for i in range(N)], data, texts=[f"t{i}" for i in range(N)])
        store.delete([f"id{i}" for i in range(0, 50)])  # tombstones too
        store.add([f"id{i}" for i in range(0, 50)], data[:50], texts=[f"t{i}" for i in range(50)])
    return path, data, {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}


class Tally:
    def __init__(self) -> None:
        self.cases = self.typed = self.opened = self.destructive = self.untyped = 0
        self.problems: list[str] = []


def _sizes(path: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in path.iterdir() if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def _restore(path: Path, files: dict[str, bytes]) -> None:
    for p in path.iterdir():
        if p.is_file() and p.name not in files:
            p.unlink()  # e.g. SQLite's -wal/-shm of the damaged database, a new lock file
    for name, raw in files.items():
        (path / name).write_bytes(raw)


def _case(path: Path, data: np.ndarray, files: dict[str, bytes], label: str, damage, tally: Tally) -> None:
    tally.cases += 1
    damage()
    before = _sizes(path)
    try:
        with MRLStore.open(path) as store:
            # Opened: the damage must not have changed what the store answers.
            assert len(store) == N, f"{label}: opened with {len(store)} items"
            assert store.search(data[123], k=1)[0].id == "id123"
        tally.opened += 1
    except MRLError:
        tally.typed += 1
    except Exception as exc:  # noqa: BLE001 - an untyped error is a finding
        tally.untyped += 1
        tally.problems.append(f"{label}: untyped {type(exc).__name__}: {exc}")
    try:
        MRLStore.verify(path)
    except MRLError:
        pass
    except Exception as exc:  # noqa: BLE001
        tally.untyped += 1
        tally.problems.append(f"{label}: verify raised untyped {type(exc).__name__}: {exc}")
    after = _sizes(path)
    shrunk = [n for n, size in before.items() if after.get(n, -1) < size]
    if shrunk:
        tally.destructive += 1
        tally.problems.append(f"{label}: open shrank or deleted {shrunk}")
    _restore(path, files)
    with MRLStore.open(path, read_only=True) as store:  # restoring the bytes gives every item back
        assert len(store) == N, label
        got = store.get(["id0", "id1500", f"id{N - 1}"], include_vectors=True)
        assert np.allclose(np.stack([r.vector for r in got]), data[[0, 1500, N - 1]], atol=2e-3), label


def _leaves(value, path=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, path + (k,))
    else:
        yield path, value


def _bump(text: str) -> str:
    """One changed character: the last digit moves by one, else the last letter changes."""
    for i in range(len(text) - 1, -1, -1):
        c = text[i]
        if c.isdigit():
            return text[:i] + str((int(c) + 1) % 10) + text[i + 1 :]
        if c.isalpha():
            return text[:i] + ("x" if c != "x" else "y") + text[i + 1 :]
    return text + "0"


def test_damage_sweep_never_destroys(pristine):
    path, data, files = pristine
    tally = Tally()
    manifest_text = files["manifest.json"].decode()
    manifest = json.loads(manifest_text)
    # 1. every field of the manifest: one character of its value
    for field_path, value in _leaves(manifest):
        if value is None or isinstance(value, bool):
            continue
        key = field_path[-1]
        pattern = re.compile(r'("%s": )(%s)' % (re.escape(key), re.escape(json.dumps(value))))
        match = pattern.search(manifest_text)
        if match is None:
            continue
        damaged = manifest_text[: match.start(2)] + _bump(match.group(2)) + manifest_text[match.end(2) :]
        _case(path, data, files, f"manifest {'.'.join(field_path)}",
              lambda damaged=damaged: (path / "manifest.json").write_text(damaged), tally)
    # 2. every row of docs.sqlite's meta table: one character of its value
    conn = sqlite3.connect(f"file:{path / 'docs.sqlite'}?mode=ro", uri=True)
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    conn.close()

    def set_meta(key: str, value: str) -> None:
        c = sqlite3.connect(path / "docs.sqlite")
        c.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
        c.commit()
        c.close()

    for key, value in meta.items():
        for variant in {_bump(value), value[:-1] or "0", "-1"}:
            _case(path, data, files, f"meta {key}={variant[:40]!r}", lambda k=key, v=variant: set_meta(k, v), tally)
    # 3. every field of SQLite's file header: one bit of its last byte
    for name, (offset, size) in HEADER_FIELDS.items():
        at = offset + size - 1
        raw = bytearray(files["docs.sqlite"])
        raw[at] ^= 0x01

        def write(raw=bytes(raw)):
            (path / "docs.sqlite").write_bytes(raw)

        _case(path, data, files, f"sqlite header {name}", write, tally)
    print(f"damage sweep: {tally.cases} cases, {tally.typed} typed errors, {tally.opened} opened consistently, "
          f"{tally.destructive} destructive opens, {tally.untyped} untyped errors")
    assert tally.cases >= 50
    assert not tally.problems, "\n".join(tally.problems)
