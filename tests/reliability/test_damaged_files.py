"""Damaged files: truncations, bit flips and crafted headers for every file of a store.

Each damaged store is opened and searched in a subprocess (a segfault would show as a signal).
Pass: the process exits cleanly with either the correct answers (a derived file was rebuilt) or a
typed CorruptStoreError; never a signal, never a silently wrong answer.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mrl_retrievers import MRLStore
from mrl_retrievers.bench.synthetic import dataset

DIM, N = 32, 400

PROBE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from mrl_retrievers import MRLStore
    from mrl_retrievers.errors import CorruptStoreError, MRLError
    queries = np.load(sys.argv[2])
    try:
        store = MRLStore.open(sys.argv[1])
        out = {"ann": [[h.id for h in store.search(q, k=5)] for q in queries],
               "exact": [[h.id for h in store.search_exact(q, k=5)] for q in queries]}
    except CorruptStoreError as exc:
        print("CORRUPT", exc); sys.exit(3)
    except MRLError as exc:
        print("OTHER", type(exc).__name__, exc); sys.exit(4)
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("damage")
    data = dataset(N, DIM, seed=3)
    with MRLStore.create(root / "s", full_dim=DIM, prefix_dim=8, exact_below=0) as store:
        store.add([f"d{i}" for i in range(N)], data, texts=[f"t{i}" for i in range(N)], metadatas=[{"i": i} for i in range(N)])
        store.checkpoint()
    queries = data[:8] + 0.01
    np.save(root / "q.npy", queries)
    expected = _probe(root / "s", root / "q.npy")
    assert expected[0] == 0
    return root, json.loads(expected[1])


def _probe(path, queries):
    proc = subprocess.run([sys.executable, "-c", PROBE, str(path), str(queries)], capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout.strip(), proc.stderr


def _file(path, kind):
    names = {p.name for p in path.iterdir()}
    if kind == "manifest":
        return path / "manifest.json"
    if kind == "docs":
        return path / "docs.sqlite"
    prefix = "vectors." if kind == "vectors" else "prefix."
    return path / next(n for n in sorted(names) if n.startswith(prefix) and not n.endswith("tmp-mrl"))


def _truncate(at):
    def damage(f):
        data = f.read_bytes()
        size = {"zero": 0, "one": 1, "half": len(data) // 2, "minus1": len(data) - 1}[at]
        f.write_bytes(data[:size])
    return damage


def _flip(offset_fraction):
    def damage(f):
        data = bytearray(f.read_bytes())
        i = min(len(data) - 1, int(len(data) * offset_fraction))
        data[i] ^= 0x5A
        f.write_bytes(bytes(data))
    return damage


def _hnsw_header(field_index, value):
    def damage(f):
        data = bytearray(f.read_bytes())
        offsets = [0, 8, 16, 24, 32, 40]  # the six leading size_t fields
        struct.pack_into("<Q", data, offsets[field_index], value % (1 << 64))
        f.write_bytes(bytes(data))
    return damage


def _swap_index_from_other_store(tmp_path):
    def damage(f):
        other = tmp_path / "other"
        with MRLStore.create(other, full_dim=DIM, prefix_dim=8, exact_below=0) as s:
            s.add([f"x{i}" for i in range(50)], dataset(50, DIM, seed=9))
            s.checkpoint()
        shutil.copyfile(_file(other, "hnsw"), f)
    return damage


CASES = [(kind, name, fn) for kind in ("manifest", "docs", "vectors", "hnsw") for name, fn in
         [("truncate-0", _truncate("zero")), ("truncate-1", _truncate("one")), ("truncate-half", _truncate("half")),
          ("truncate-minus1", _truncate("minus1")), ("flip-start", _flip(0.0)), ("flip-middle", _flip(0.5)), ("flip-end", _flip(0.999))]]
CASES += [("hnsw", f"header-field{i}-{v}", _hnsw_header(i, v)) for i in range(6) for v in (0, -1, 2**40)]


@pytest.mark.parametrize("kind,name,damage", CASES, ids=[f"{k}-{n}" for k, n, _ in CASES])
def test_damaged_file_is_detected_or_rebuilt(pristine, tmp_path, kind, name, damage):
    root, expected = pristine
    path = tmp_path / "s"
    shutil.copytree(root / "s", path)
    damage(_file(path, kind))
    code, out, err = _probe(path, root / "q.npy")
    assert code in (0, 3), f"exit {code}: {out} {err[-2000:]}"
    if code == 0:
        assert json.loads(out) == expected, "silently wrong answers"
    else:
        assert out.startswith("CORRUPT")


def test_swapped_in_index_from_another_store_is_rebuilt(pristine, tmp_path):
    root, expected = pristine
    path = tmp_path / "s"
    shutil.copytree(root / "s", path)
    _swap_index_from_other_store(tmp_path)(_file(path, "hnsw"))
    code, out, err = _probe(path, root / "q.npy")
    assert code == 0, err
    assert json.loads(out) == expected
    report = MRLStore.verify(path)
    assert report.ok and report.warnings  # the index was rebuilt: a warning, not a problem


def test_verify_and_rebuild_after_vector_bit_flip(pristine, tmp_path):
    root, _ = pristine
    path = tmp_path / "s"
    shutil.copytree(root / "s", path)
    f = _file(path, "vectors")
    data = bytearray(f.read_bytes())
    data[DIM * 2 * 10 + 3] ^= 0xFF  # row 10
    f.write_bytes(bytes(data))
    report = MRLStore.verify(path)
    assert not report.ok and report.damaged_ids == ["d10"]
    MRLStore.rebuild(path)
    assert MRLStore.verify(path).ok
    with MRLStore.open(path) as store:
        assert len(store) == N - 1 and store.get(["d10"]) == []
