"""The failures issue 13 observed at the store's seams, one regression test each (numbers as in the
issue). Each was seen on the code before the fix; the invariant throughout: a failure is a typed
``MRLError`` whose advice works, and nothing a store holds is lost or shortened by a failed call.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mrl_retrievers import MRLIndex, MRLStore, get_provider
from mrl_retrievers.cli import main as cli
from mrl_retrievers.errors import (
    CorruptStoreError,
    InvalidInputError,
    MRLError,
    StoreNotFoundError,
    UnsupportedFormatError,
)

DIM = 64


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _store(path: Path, n: int = 3000, **kwargs) -> np.ndarray:
    data = _vectors(n)
    with MRLStore.create(path, full_dim=DIM, prefix_dim=16, **kwargs) as store:
        store.add([f"id{i}" for i in range(n)], data, texts=[f"text {i}" for i in range(n)],
                  metadatas=[{"i": i} for i in range(n)])
    return data


def _files(path: Path) -> dict[str, int]:
    """Name -> size of every store file (SQLite's WAL and shared memory are SQLite's business)."""
    return {p.name: p.stat().st_size for p in path.iterdir() if not p.name.endswith(("-wal", "-shm"))}


def _assert_nothing_shrunk(before: dict[str, int], after: dict[str, int]) -> None:
    for name, size in before.items():
        assert name in after, f"{name} was deleted"
        assert after[name] >= size, f"{name} shrank from {size} to {after[name]} bytes"


def _all_back(path: Path, data: np.ndarray) -> None:
    with MRLStore.open(path) as store:
        assert len(store) == len(data)
        got = store.get([f"id{i}" for i in range(len(data))], include_vectors=True)
        assert [r.id for r in got] == [f"id{i}" for i in range(len(data))]
        assert np.allclose(np.stack([r.vector for r in got]), data, atol=2e-3)
        assert store.search(data[7], k=1)[0].id == "id7"
    assert MRLStore.verify(path).ok


# --- 1. ids holding U+0000 ------------------------------------------------------------------------


def test_1_an_id_with_a_nul_is_refused_everywhere_and_touches_nothing(tmp_path):
    path = tmp_path / "s"
    with MRLStore.create(path, full_dim=DIM, prefix_dim=16) as store:
        store.add(["alice", "bob"], _vectors(2))
        before = _files(path)
        with pytest.raises(InvalidInputError, match="U\\+0000"):
            store.add(["alice\x00x"], _vectors(1, seed=1))
        with pytest.raises(InvalidInputError, match="U\\+0000"):
            store.delete(["bob\x00y"])
        with pytest.raises(InvalidInputError, match="U\\+0000"):
            store.get(["alice\x00"])
        assert sorted(store.ids()) == ["alice", "bob"]
        assert np.allclose(store.get(["alice"], include_vectors=True)[0].vector, _vectors(2)[0], atol=2e-3)
        assert _files(path) == before
    with MRLIndex(get_provider("fake", dim=DIM), tmp_path / "idx") as index:
        index.add_texts(["a text"], ids=["alice"])
        with pytest.raises(InvalidInputError):
            index.add_texts(["another"], ids=["alice\x00x"])
        assert [r.text for r in index.get(["alice"])] == ["a text"]


def test_1_ids_are_compared_exactly_not_through_json(tmp_path):
    """Ids SQLite's JSON functions would alter (escapes, non-BMP, quotes) are found as themselves."""
    odd = ['a"b', "a\\b", "é", "𝄞", "a\nb", "a\tb", "[1]", "'x'", "\u2028"]
    with MRLStore.create(tmp_path / "s", full_dim=DIM, prefix_dim=16) as store:
        store.add(odd, _vectors(len(odd)))
        assert [r.id for r in store.get(odd)] == odd
        assert store.delete(['a"b', "𝄞"]) == 2
        assert sorted(store.ids()) == sorted(set(odd) - {'a"b', "𝄞"})


# --- 2. a changed digit in the manifest ----------------------------------------------------------------


def test_2_a_damaged_manifest_digit_never_cuts_the_vector_file(tmp_path):
    path = tmp_path / "s"
    data = _store(path)
    original = (path / "manifest.json").read_bytes()
    (path / "manifest.json").write_bytes(original.replace(b'"full_dim": 64', b'"full_dim": 44'))
    before = _files(path)
    with pytest.raises(CorruptStoreError):
        MRLStore.open(path)
    assert not MRLStore.verify(path).ok
    _assert_nothing_shrunk(before, _files(path))
    (path / "manifest.json").write_bytes(original)  # restoring the byte gives every item back
    _all_back(path, data)


def test_2_rebuild_reconstructs_a_damaged_manifest_and_keeps_every_item(tmp_path):
    path = tmp_path / "s"
    data = _store(path)
    original = (path / "manifest.json").read_bytes()
    (path / "manifest.json").write_bytes(original.replace(b'"full_dim": 64', b'"full_dim": 44'))
    report = MRLStore.rebuild(path)
    assert report.damaged_ids == [] and any("reconstructed" in w for w in report.warnings)
    _all_back(path, data)


# --- 3. a changed digit in the committed row count ---------------------------------------------------


def _set_meta(path: Path, key: str, value: str) -> None:
    conn = sqlite3.connect(path / "docs.sqlite")
    conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
    conn.commit()
    conn.close()


def test_3_a_damaged_row_count_is_damage_to_verify_and_open(tmp_path):
    path = tmp_path / "s"
    data = _store(path)
    _set_meta(path, "rows", "2000")
    before = _files(path)
    assert not MRLStore.verify(path).ok
    with pytest.raises(CorruptStoreError, match="rows"):  # typed, and before anything is cut
        MRLStore.open(path)
    _assert_nothing_shrunk(before, _files(path))
    _set_meta(path, "rows", "3000")
    _all_back(path, data)
    _set_meta(path, "rows", "2000")
    report = MRLStore.rebuild(path)
    assert report.damaged_ids == []
    _all_back(path, data)


# --- 7. texts and metadata carry checksums; SQLite index damage is repaired -------------------------


def test_7_a_changed_byte_in_a_text_or_metadata_is_found(tmp_path):
    path = tmp_path / "s"
    data = _store(path, n=300)
    conn = sqlite3.connect(path / "docs.sqlite")
    conn.execute("UPDATE docs SET text = 'text 8!' WHERE id = 'id8'")
    conn.execute("""UPDATE docs SET metadata = '{"i":90}' WHERE id = 'id9'""")
    conn.commit()
    conn.close()
    with MRLStore.open(path, read_only=True) as store:
        with pytest.raises(CorruptStoreError, match="id8"):
            store.get(["id8"])
        with pytest.raises(CorruptStoreError, match="id9"):
            store.search(data[9], k=3)
        assert store.get(["id10"])[0].text == "text 10"
    report = MRLStore.verify(path)
    assert not report.ok and report.damaged_ids == ["id8", "id9"]
    report = MRLStore.rebuild(path)
    assert report.damaged_ids == ["id8", "id9"]
    with MRLStore.open(path) as store:
        assert len(store) == 298 and store.get(["id8", "id9"]) == []
    assert MRLStore.verify(path).ok


def _damage_id_index(path: Path) -> None:
    """Change one id inside a leaf page of the id index (not the table): the item's row stays
    intact, but a lookup by id misses it and SQLite's integrity check fails."""
    conn = sqlite3.connect(path / "docs.sqlite")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    page = conn.execute("SELECT pageno FROM dbstat WHERE name = 'sqlite_autoindex_docs_1' AND pagetype = 'leaf' "
                        "ORDER BY pageno LIMIT 1").fetchone()[0]
    conn.close()
    raw = bytearray((path / "docs.sqlite").read_bytes())
    start = (page - 1) * page_size
    at = raw.index(b"id1", start, start + page_size)
    raw[at + 2] = ord("9")  # "id1..." becomes "id9...": out of order and pointing at the wrong id
    (path / "docs.sqlite").write_bytes(bytes(raw))


def test_7_damage_to_a_sqlite_index_is_repaired_by_rebuild(tmp_path):
    path = tmp_path / "s"
    data = _store(path, n=2000)
    _damage_id_index(path)
    report = MRLStore.verify(path)
    assert not report.ok
    report = MRLStore.rebuild(path)
    assert any("indexes" in w for w in report.warnings), report.warnings
    assert MRLStore.verify(path).ok
    _all_back(path, data)


# --- 8. verify checks the coarse index against the vectors --------------------------------------------


def test_8_verify_and_open_refuse_a_coarse_index_of_other_vectors(tmp_path):
    from mrl_retrievers.store.local.manifest import _checksum

    a, b = tmp_path / "a", tmp_path / "b"
    data = _store(a, n=3000)
    _store(b, n=3000)
    with MRLStore.open(b) as other:  # other vectors under the same rows
        other.add([f"id{i}" for i in range(3000)], _vectors(3000, seed=5))
        other.compact()
    mb = json.loads((b / "manifest.json").read_text())
    ma = json.loads((a / "manifest.json").read_text())
    sa, sb = ma["ann"]["segments"][0], mb["ann"]["segments"][0]
    (a / sa["file"]).unlink()
    (a / sa["file"]).write_bytes((b / sb["file"]).read_bytes())
    sa.update(size=sb["size"], crc32=sb["crc32"])
    ma["checksum"] = _checksum(ma)  # an attacker (or a careless copy) keeps the manifest consistent
    (a / "manifest.json").write_text(json.dumps(ma))
    report = MRLStore.verify(a)
    assert any("other vectors" in w for w in report.warnings), report.warnings
    _all_back(a, data)  # the writer rebuilt the index: searches are right


# --- 9. a flipped bit in a SQLite page is a typed error everywhere ---------------------------------------


def test_9_sqlite_page_damage_is_typed_in_search_verify_rebuild_and_cli(tmp_path, capsys):
    path = tmp_path / "s"
    data = _store(path, n=3000)
    conn = sqlite3.connect(path / "docs.sqlite")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    raw = bytearray((path / "docs.sqlite").read_bytes())
    for page in range(pages // 2, pages // 2 + 3):  # table pages in the middle of the file
        raw[page * page_size + 8 : page * page_size + 64] = b"\xff" * 56
    (path / "docs.sqlite").write_bytes(bytes(raw))
    errors = []
    for call in (lambda s: [s.search(q, k=10) for q in data[:300]], lambda s: s.get([f"id{i}" for i in range(3000)]),
                 lambda s: s.ids({"i": {"$gte": 0}})):
        try:
            with MRLStore.open(path, read_only=True) as store:
                call(store)
        except MRLError as exc:
            errors.append(exc)
    assert errors and all(isinstance(e, CorruptStoreError) for e in errors)
    assert not MRLStore.verify(path).ok
    assert cli(["verify", str(path)]) == 3
    assert "Traceback" not in capsys.readouterr().err
    try:
        MRLStore.rebuild(path)
    except MRLError as exc:
        assert isinstance(exc, CorruptStoreError)
    else:
        assert MRLStore.verify(path).ok


# --- 11. a vector file one byte short ---------------------------------------------------------------


def test_11_rebuild_keeps_every_intact_row_of_a_short_vector_file(tmp_path):
    path = tmp_path / "s"
    data = _store(path, n=500)
    vector_file = next(path.glob("vectors.*"))
    with open(vector_file, "r+b") as fh:
        fh.truncate(vector_file.stat().st_size - 1)
    with pytest.raises(CorruptStoreError, match="rebuild"):
        MRLStore.open(path)
    report = MRLStore.rebuild(path)
    assert report.damaged_ids == ["id499"]
    _all_back(path, data[:499])


# --- 13. verify on a newer format; parameters the format cannot hold -------------------------------------


def test_13_verify_on_a_newer_format_says_upgrade_and_never_rebuild(tmp_path, capsys):
    path = tmp_path / "s"
    _store(path, n=10)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UnsupportedFormatError):
        MRLStore.verify(path)
    with pytest.raises(UnsupportedFormatError):
        MRLStore.rebuild(path)
    assert cli(["verify", str(path)]) == 2
    out = capsys.readouterr()
    assert "Upgrade" in out.err and "rebuild`" not in out.out + out.err.replace("do not rebuild", "")


def test_13_verify_on_a_missing_path_says_so(tmp_path, capsys):
    with pytest.raises(StoreNotFoundError):
        MRLStore.verify(tmp_path / "nope")
    assert cli(["verify", str(tmp_path / "nope")]) == 2
    assert "rebuild" not in capsys.readouterr().out


def test_13_create_refuses_parameters_the_index_format_cannot_hold(tmp_path):
    with pytest.raises(InvalidInputError, match="M must be at most"):
        MRLStore.create(tmp_path / "s", full_dim=DIM, prefix_dim=16, M=3000)
    assert not (tmp_path / "s").exists()
