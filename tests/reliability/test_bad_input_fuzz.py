"""Hypothesis-driven bad input for ``add``, ``search``, filters and ``load_config``, SQL that never
carries a key or value as text, and store paths with traversal, symlink and pickle tricks.

Pass: every rejection is a typed ``MRLError``; a rejected ``add`` (and any ``search``) leaves the
store's files byte-for-byte unchanged (``docs.sqlite-shm`` and ``lock``, which readers touch, are
ignored); an accepted ``add`` reads back what was given. Metadata keys and values reach SQLite only
as bound parameters: a spy on the store's connection records the SQL text of every statement
(``set_trace_callback`` shows the same statements with the parameters expanded, which proves the
values did reach SQLite, as parameters). Hypothesis runs are seeded from ``MRL_TEST_SEED``.

The canaries run the same checks against broken builds (one that writes before validating, one
that splices filter values into the SQL text) and must catch them. Tests whose docstring says
"Regression (Fn)" pin a bug this file found (described in /work/notes/reliability.md).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mrl_retrievers import MRLStore, load_config
from mrl_retrievers.errors import (
    CorruptStoreError,
    FilterError,
    InvalidInputError,
    MRLError,
    StoreExistsError,
    StoreNotFoundError,
)
from mrl_retrievers.store.local.docstore import DocStore

SEED = int(os.environ.get("MRL_TEST_SEED", "1234"))
DIM = 16
MARK = "mk7q"  # a marker no SQL statement of ours contains: fuzzed keys/values carry it
FUZZ = settings(max_examples=150, deadline=None, database=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
SQLISH = ["a'); DROP TABLE docs;--", 'a"b', "x' OR '1'='1", "$.k", "k]", "[0]", "*", "--", ";", "\\", "%", "_",
          "' || (SELECT crc FROM docs) || '", "NULL", "ü", "\u2028", "a.b", "$", "#", "é\u0301"]


def snapshot(path: Path) -> dict[str, str]:
    skip = {"lock", "docs.sqlite-shm"}  # readers touch these; they hold no data
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())
            if p.is_file() and p.name not in skip}


def _unit(rng, n):
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def store(tmp_path):
    store = MRLStore.create(tmp_path / "s", full_dim=DIM, prefix_dim=4, exact_below=0)
    rng = np.random.default_rng(SEED)
    store.add([f"base{i}" for i in range(40)], _unit(rng, 40), texts=[f"t{i}" for i in range(40)],
              metadatas=[{"n": i, "tag": ["a", "b"][i % 2], "l": [i, "x"]} for i in range(40)])
    store.checkpoint()
    yield store
    store.close()


# --- strategies ------------------------------------------------------------------------------------

json_leaf = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                          max_leaves=8)
bad_value = st.sampled_from([b"bytes", math.nan, math.inf, -math.inf, {1, 2}, frozenset(), 2**64, -(2**63) - 1, object(),
                             "nul\x00", "\udc80", np.array([1.0]), complex(1, 2), Path("p"), ...])
some_value = st.one_of(json_value, json_value, bad_value, st.sampled_from(SQLISH))
key = st.one_of(st.text(max_size=8), st.sampled_from(SQLISH), st.sampled_from([1, None, b"k", (1,), 1.5]))
metadata = st.one_of(st.none(), st.dictionaries(key, some_value, max_size=4), st.sampled_from([["x"], "s", 3, b"m"]))

valid_id = st.text(min_size=1, max_size=12)
bad_id = st.sampled_from(["", "\ud800", b"b", 7, None, 1.5, ("t",), ["x"]])
ids_strategy = st.one_of(st.lists(st.one_of(valid_id, valid_id, valid_id, bad_id), max_size=5), st.sampled_from(["abc", None, 5, {"a": 1}]))
text = st.one_of(st.none(), st.text(max_size=30), st.sampled_from(["", " \t\n", "\ud800x", b"bytes", 7, "x" * 200_000]))


@st.composite
def vectors_for(draw, n: int):
    kind = draw(st.integers(0, 9))
    rows = n if kind < 6 else draw(st.integers(0, 6))
    if kind < 4:  # usually a good batch: something to accept
        return draw(hnp.arrays(np.float32, (rows, DIM), elements=st.floats(-4, 4, width=32))) + np.float32(1e-3)
    if kind < 7:
        width = draw(st.sampled_from([DIM, DIM - 1, DIM + 1, 0, 1]))
        dtype = draw(st.sampled_from([np.float16, np.float32, np.float64, np.int64, np.uint8, np.bool_, np.complex64]))
        return draw(hnp.arrays(dtype, (rows, width)))
    return draw(st.sampled_from([None, "vectors", [[1.0] * DIM, [1.0]], [["a"] * DIM], np.ones(DIM), np.ones((1, 1, DIM)),
                                 [[math.nan] * DIM], np.zeros((rows, DIM)), [[1e39] * DIM]]))


@st.composite
def add_call(draw):
    ids = draw(ids_strategy)
    n = len(ids) if isinstance(ids, list) else 1
    m = n if draw(st.integers(0, 5)) else draw(st.integers(0, 6))
    kwargs = {"ids": ids, "vectors": draw(vectors_for(n))}
    if draw(st.booleans()):
        # (a str or a number as `texts` is F11: pinned by test_texts_that_are_not_a_list_are_refused)
        kwargs["texts"] = draw(st.lists(text, min_size=m, max_size=m))
    if draw(st.booleans()):
        kwargs["metadatas"] = draw(st.one_of(st.lists(metadata, min_size=m, max_size=m), st.sampled_from([{"a": 1}, "m"])))
    return kwargs


OPERATORS = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$contains", "$any", "$all", "$text", "$itext",
             "$exists", "$empty", "$regex", "$where", "", "$", "eq"]
filter_key = st.one_of(st.sampled_from(["n", "tag", "l", "missing"]), st.text(max_size=6), st.sampled_from(SQLISH))
operand = st.one_of(json_value, st.lists(json_value, max_size=3), bad_value)
leaf = st.one_of(st.dictionaries(filter_key, operand, min_size=1, max_size=2),
                 st.builds(lambda k, op, v: {k: {op: v}}, filter_key, st.sampled_from(OPERATORS), operand))
filters = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(lambda c, xs: {c: xs}, st.sampled_from(["$and", "$or", "$not", "$nor"]), st.lists(inner, max_size=3)),
        st.builds(lambda x: {"$not": x}, inner),
    ),
    max_leaves=6,
)
filter_arg = st.one_of(st.none(), filters, filters, st.sampled_from([[], "n", 3, {"n"}, {1: 2}, {"$and": "x"}, {"$or": []}]))
number_arg = st.one_of(st.integers(-3, 60), st.integers(10**6, 10**12), st.sampled_from([None, 2.5, True, "3", np.int64(3), math.nan]))


def _query(draw_kind: int, rng):
    if draw_kind < 5:
        return _unit(rng, 1)[0]
    return [np.ones(DIM - 1), np.zeros(DIM), np.full(DIM, np.nan), "q", None, np.ones((2, DIM)), [1] * DIM, np.ones(DIM, dtype=np.complex64)][draw_kind - 5]


# --- the checks (shared with the canaries) --------------------------------------------------------


def check_add(store: MRLStore, kwargs: dict) -> str | None:
    """None if the call behaved; else what went wrong."""
    before, count = snapshot(store.path), len(store)
    try:
        store.add(**kwargs)
    except MRLError:
        if snapshot(store.path) != before:
            return "a rejected add changed the store's files"
        if len(store) != count:
            return "a rejected add changed the item count"
        return None
    except Exception as exc:  # noqa: BLE001 - an untyped error is what this test looks for
        return f"untyped {type(exc).__name__}: {exc}"
    ids = list(kwargs["ids"])
    got = {r.id: r for r in store.get(ids)}
    if set(got) != set(ids):
        return "an accepted add does not read back every id"
    for i, id_ in enumerate(ids):
        meta = (kwargs.get("metadatas") or [None] * len(ids))[i]
        expected = json.loads(json.dumps(meta)) if meta is not None else {}
        if got[id_].metadata != expected:
            return f"metadata of {id_!r} reads back as {got[id_].metadata!r}, not {expected!r}"
        text = (kwargs.get("texts") or [None] * len(ids))[i]
        if got[id_].text != text:
            return f"text of {id_!r} reads back differently"
    return None


def check_search(store: MRLStore, query, k, shortlist, flt) -> str | None:
    before, count = snapshot(store.path), len(store)
    try:
        hits = store.search(query, k=k, shortlist=shortlist, filter=flt)
    except MRLError:
        return None if snapshot(store.path) == before else "a rejected search changed the store's files"
    except Exception as exc:  # noqa: BLE001
        return f"untyped {type(exc).__name__}: {str(exc)[:200]}"
    if snapshot(store.path) != before or len(store) != count:
        return "a search changed the store's files"
    if len(hits) > min(int(k), count):
        return f"{len(hits)} hits for k={k}"
    if len({h.id for h in hits}) != len(hits):
        return "duplicate hits"
    return None


# --- add -------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_fuzzed_add_is_typed_and_atomic(store):
    @seed(SEED)
    @FUZZ
    @given(add_call())
    def run(kwargs):
        problem = check_add(store, kwargs)
        assert problem is None, problem

    run()
    assert MRLStore.verify(store.path).ok


@pytest.mark.parametrize("texts", ["abc", 3])
def test_texts_that_are_not_a_list_are_refused(store, texts):
    """Regression (F11 in the notes): a string as ``texts`` was split into characters, a number
    raised TypeError; like ids and metadatas, they are refused."""
    before = snapshot(store.path)
    with pytest.raises(InvalidInputError):
        store.add(["x", "y", "z"], _unit(np.random.default_rng(0), 3), texts=texts)
    assert snapshot(store.path) == before


# --- search and filters ----------------------------------------------------------------------------


def test_fuzzed_search_is_typed_and_read_only(store):
    rng = np.random.default_rng(SEED)

    @seed(SEED)
    @FUZZ
    @given(st.integers(0, 12), number_arg, st.one_of(st.none(), number_arg), filter_arg)
    def run(qkind, k, shortlist, flt):
        problem = check_search(store, _query(qkind, rng), k, shortlist, flt)
        assert problem is None, problem

    run()


@pytest.mark.parametrize("combinator", ["$or", "$and"])
def test_wide_filters_are_typed(store, combinator):
    """Regression (F10): large generated filters (one condition per allowed document id) hit
    SQLite's expression-depth limit (1000) and raised sqlite3.OperationalError."""
    flt = {combinator: [{"n": i} for i in range(1000)]}
    problem = check_search(store, _unit(np.random.default_rng(0), 1)[0], 5, None, flt)
    assert problem is None, problem


# --- keys and values never reach SQL as text ---------------------------------------------------------


class SqlSpy:
    """Wraps the store's connection: records the SQL text of every statement (not its parameters)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.sql: list[str] = []
        self.expanded: list[str] = []
        conn.set_trace_callback(self.expanded.append)

    def execute(self, sql, *args):
        self.sql.append(sql)
        return self._conn.execute(sql, *args)

    def executemany(self, sql, *args):
        self.sql.append(sql)
        return self._conn.executemany(sql, *args)

    def executescript(self, sql):
        self.sql.append(sql)
        return self._conn.executescript(sql)

    def __getattr__(self, name):
        return getattr(self._conn, name)


@pytest.fixture
def spied(store):
    spy = SqlSpy(store._s.docs.conn)
    store._s.docs.conn = spy
    yield store, spy
    store._s.docs.conn = spy._conn
    spy._conn.set_trace_callback(None)


def _crafted_round_trip(store: MRLStore, spy: SqlSpy, k: str, v, n: int) -> str | None:
    """Store {k: v}, then filter for it several ways. None if all is well."""
    id_ = f"crafted{n}"
    store.add([id_], _unit(np.random.default_rng(n), 1), metadatas=[{k: v, "other": v}])
    ops = [{k: v}, {k: {"$in": [v]}}, {k: {"$exists": True}}, {"$or": [{k: {"$eq": v}}, {"nope": 1}]}]
    if isinstance(v, str):
        ops += [{k: {"$text": v}}, {k: {"$itext": v}}, {"other": {"$contains": v}}]
    for flt in ops:
        try:
            hits = store.search(_unit(np.random.default_rng(n), 1)[0], k=100, filter=flt)
        except FilterError:
            continue  # a key SQLite's JSON paths cannot address is refused, as documented
        if id_ not in {h.id for h in hits}:
            return f"filter {flt!r} does not find the item that holds it"
    leaked = [s for s in spy.sql if MARK in s]
    if leaked:
        return f"a key or value reached the SQL text: {leaked[0][:300]}"
    if not any(MARK in s for s in spy.expanded):
        return "the spy saw no statement carrying the value (the check would be vacuous)"
    return None


def test_crafted_keys_and_values_reach_sql_only_as_parameters(spied):
    store, spy = spied
    counter = iter(range(10**6))
    parts = st.one_of(st.sampled_from(SQLISH), st.text(max_size=6))

    @seed(SEED)
    @settings(FUZZ, max_examples=80)
    @given(parts, parts, st.one_of(parts, st.integers(), st.floats(allow_nan=False, allow_infinity=False)))
    def run(key_a, key_b, value):
        k = f"{key_a}{MARK}{key_b}"
        v = f"{value}{MARK}" if isinstance(value, str) else value
        if "\x00" in k or (isinstance(v, str) and "\x00" in v):
            return  # refused at add (SQLite's JSON functions cut strings at U+0000)
        try:
            problem = _crafted_round_trip(store, spy, k, v, next(counter))
        except InvalidInputError:
            return  # e.g. a key that is not valid metadata: refused before any SQL
        assert problem is None, problem

    run()
    assert MRLStore.verify(store.path).ok
    assert store.search(_unit(np.random.default_rng(1), 1)[0], k=3)  # the docs table is still there


# --- load_config -----------------------------------------------------------------------------------

config_scalar = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(), st.text(max_size=10),
                          st.sampled_from(["float16", "float32", "local", "qdrant", "fake", "openai", "1e3", " 7 ", "nan"]))
config_value = st.one_of(config_scalar, st.lists(config_scalar, max_size=2), st.dictionaries(st.text(max_size=5), config_scalar, max_size=2))
STORE_FIELDS = ["backend", "path", "prefix_dim", "dtype", "shortlist", "ef", "exact_below", "funnel_dim", "url", "api_key", "collection"]
EMBEDDER_FIELDS = ["provider", "model", "dim", "api_key", "base_url", "timeout", "max_retries", "max_concurrency", "batch_size",
                   "cache", "rotation", "options"]
config_block = lambda fields: st.dictionaries(st.one_of(st.sampled_from(fields), st.text(max_size=5)), config_value, max_size=4)
config_mapping = st.fixed_dictionaries({}, optional={"store": config_block(STORE_FIELDS), "embedder": config_block(EMBEDDER_FIELDS),
                                                     "extra": config_block(STORE_FIELDS)})
env_strategy = st.dictionaries(st.sampled_from([f"MRL_STORE_{f.upper()}" for f in STORE_FIELDS] + [f"MRL_EMBEDDER_{f.upper()}" for f in EMBEDDER_FIELDS]),
                               st.text(max_size=8), max_size=3)


def _toml(mapping: dict) -> str:
    lines = []
    for block, values in mapping.items():
        lines.append(f"[{block}]")
        for k, v in values.items():
            lines.append(f"{json.dumps(k)} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


def _toml_value(v) -> str:
    if v is None:
        return '"none"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(v)


def _config_problem(source, env) -> str | None:
    try:
        load_config(source, env=env)
    except MRLError:
        return None
    except Exception as exc:  # noqa: BLE001
        return f"untyped {type(exc).__name__}: {exc}"
    return None


def test_fuzzed_config_mappings_and_env_are_typed():
    @seed(SEED)
    @FUZZ
    @given(config_mapping, env_strategy)
    def run(mapping, env):
        problem = _config_problem(mapping, env)
        assert problem is None, problem

    run()


def test_fuzzed_toml_files_are_typed(tmp_path):
    path = tmp_path / "mrl.toml"

    @seed(SEED)
    @FUZZ
    @given(st.one_of(config_mapping.map(_toml), st.text(max_size=80), st.binary(max_size=40).map(lambda b: b.decode("latin-1"))))
    def run(content):
        path.write_bytes(content.encode("utf-8", "surrogatepass"))
        problem = _config_problem(path, {})
        assert problem is None, problem

    run()


@pytest.mark.parametrize("toml", ["store = 5\n", 'embedder = "openai"\n', "store = [1, 2]\n", 'store = "ab"\n'])
def test_config_block_that_is_not_a_table_is_a_config_error(tmp_path, toml):
    """Regression (F1): `store = 5` raised TypeError from load_config."""
    path = tmp_path / "mrl.toml"
    path.write_text(toml)
    assert _config_problem(path, {}) is None


# --- store paths -------------------------------------------------------------------------------------


def _small_store(path: Path) -> None:
    with MRLStore.create(path, full_dim=DIM, prefix_dim=4) as s:
        s.add(["a", "b"], _unit(np.random.default_rng(0), 2), texts=["x", "y"])


def test_path_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_bytes(b"not a store")
    with pytest.raises(StoreNotFoundError):
        MRLStore.open(f)
    with pytest.raises(StoreExistsError):
        MRLStore.create(f, full_dim=DIM, prefix_dim=4)
    assert f.read_bytes() == b"not a store"


def test_symlinked_store_path_is_the_users_choice(tmp_path):
    """A symlink the user names is followed on open, and is the same store (one handle, one lock);
    create refuses to build a store through a symlink."""
    real = tmp_path / "elsewhere" / "s"
    _small_store(real)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    with MRLStore.open(link) as via_link:
        assert len(via_link) == 2
        assert MRLStore.open(real)._shared is via_link._shared
    (tmp_path / "empty").mkdir()
    (tmp_path / "link2").symlink_to(tmp_path / "empty", target_is_directory=True)
    with pytest.raises(InvalidInputError, match="symlink"):
        MRLStore.create(tmp_path / "link2", full_dim=DIM, prefix_dim=4)
    assert list((tmp_path / "empty").iterdir()) == []


def test_dotdot_in_the_users_path_is_the_same_store(tmp_path):
    _small_store(tmp_path / "s")
    (tmp_path / "sub").mkdir()
    with MRLStore.open(tmp_path / "s") as store:
        assert MRLStore.open(tmp_path / "sub" / ".." / "s")._shared is store._shared


def _set_meta(path: Path, key: str, value: str) -> None:
    conn = sqlite3.connect(path / "docs.sqlite")
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
    conn.close()


def _set_ann_file(path: Path, name: str) -> None:
    from mrl_retrievers.store.local.manifest import _checksum

    manifest = json.loads((path / "manifest.json").read_text())
    manifest["ann"]["segments"][0]["file"] = name
    manifest["checksum"] = _checksum(manifest)  # re-sealed: the name itself must be refused
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("where,name", [
    ("vector_file", "../outside.f16"), ("vector_file", "/etc/hostname"), ("vector_file", ".."),
    ("ann_file", "../outside.hnsw"), ("ann_file", "/etc/hostname"), ("ann_file", "..")])
def test_names_inside_store_files_cannot_leave_the_store(tmp_path, where, name):
    """File names the store reads from its own files (docs.sqlite meta, manifest) never traverse."""
    path = tmp_path / "s"
    _small_store(path)
    outside = tmp_path / "outside.f16"
    outside.write_bytes(b"\x00" * 4096)
    (tmp_path / "outside.hnsw").write_bytes(b"\x00" * 4096)
    (_set_meta if where == "vector_file" else _set_ann_file)(path, *([where, name] if where == "vector_file" else [name]))
    with pytest.raises(CorruptStoreError, match="manifest.json|docs.sqlite"):
        MRLStore.open(path)
    assert outside.read_bytes() == b"\x00" * 4096 and (tmp_path / "outside.hnsw").read_bytes() == b"\x00" * 4096


@pytest.mark.parametrize("name", ["docs.sqlite", "manifest.json"])
def test_vector_file_naming_another_store_file_is_refused_untouched(tmp_path, name):
    """Regression (F6): a writer's open truncated the file docs.sqlite named as the vector file
    (docs.sqlite itself) and deleted the real vector file."""
    path = tmp_path / "s"
    _small_store(path)
    _set_meta(path, "vector_file", name)
    before = snapshot(path)
    with pytest.raises(CorruptStoreError):
        MRLStore.open(path)
    assert snapshot(path) == before


@pytest.mark.parametrize("victim", ["docs.sqlite", "vectors.000000.f16", "manifest.json"])
def test_store_files_that_are_symlinks_are_refused(tmp_path, victim):
    path = tmp_path / "s"
    _small_store(path)
    target = tmp_path / f"real-{victim}"
    (path / victim).rename(target)
    (path / victim).symlink_to(target)
    before = target.read_bytes()
    with pytest.raises(CorruptStoreError, match="symlink|missing"):
        MRLStore.open(path)
    assert target.read_bytes() == before


@pytest.mark.parametrize("planted", ["manifest.json.tmp-mrl", "lock"])
def test_planted_symlinks_never_write_outside_the_store(tmp_path, planted):
    """Regression (F7): dangling symlinks planted in a store directory made the writer create files
    outside it. Refusing the store (CorruptStoreError) or ignoring the link are both fine."""
    path = tmp_path / "s"
    _small_store(path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (path / planted).unlink(missing_ok=True)
    (path / planted).symlink_to(outside / "created-by-the-store")
    try:
        with MRLStore.open(path) as store:
            store.add(["c"], _unit(np.random.default_rng(3), 1))
            store.checkpoint()
        refused = False
    except CorruptStoreError as exc:
        assert "symlink" in str(exc)
        refused = True
    assert list(outside.iterdir()) == []
    if not refused:
        with MRLStore.open(path) as store:
            assert len(store) == 3


class _Plant:
    """A pickle whose loading creates a marker file (so a load is seen, whatever the loader does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_planted_pickles_are_never_loaded(tmp_path):
    path = tmp_path / "s"
    _small_store(path)
    marker = tmp_path / "pickle-was-loaded"
    payload = pickle.dumps(_Plant(marker))
    # 1. an orphan named like our index checkpoint; 2. the checkpoint the manifest names, swapped
    #    for a pickle with its size and CRC recorded (an attacker who controls the directory can);
    (path / "prefix.000000.deadbeef.hnsw").write_bytes(payload)
    current = json.loads((path / "manifest.json").read_text())["ann"]["segments"][0]["file"]
    (path / current).write_bytes(payload)
    import zlib

    manifest = json.loads((path / "manifest.json").read_text())
    manifest["ann"]["segments"][0].update(size=len(payload), crc32=zlib.crc32(payload))
    from mrl_retrievers.store.local.manifest import _checksum

    manifest["checksum"] = _checksum(manifest)  # the manifest's checksum is no secret: an attacker re-seals it
    (path / "manifest.json").write_text(json.dumps(manifest))
    for name in ("index.pkl", "docstore.pkl", "index.faiss", "cache.sqlite"):
        (path / name).write_bytes(payload)
    with MRLStore.open(path) as store:
        assert len(store) == 2 and store.search(_unit(np.random.default_rng(0), 1)[0], k=1)
    report = MRLStore.verify(path)
    assert report.ok
    assert not marker.exists()
    assert not (path / "prefix.000000.deadbeef.hnsw").exists()  # the writer removed the orphan
    # 3. a directory holding a pickle is not taken over by create
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "index.pkl").write_bytes(payload)
    with pytest.raises(StoreExistsError):
        MRLStore.create(tmp_path / "d", full_dim=DIM, prefix_dim=4)
    assert not marker.exists()


# --- canaries: the checks above can fail -------------------------------------------------------------


def test_canary_write_before_validate_is_caught(store, monkeypatch):
    original = MRLStore.add

    def broken_add(self, ids, vectors, texts=None, metadatas=None):
        self._s.vectors.append(self._s.rows, np.zeros((1, DIM), dtype=np.float16))  # writes first...
        return original(self, ids, vectors, texts, metadatas)  # ...validates second

    monkeypatch.setattr(MRLStore, "add", broken_add)
    problem = check_add(store, {"ids": ["x"], "vectors": np.full((1, DIM), np.nan)})
    assert problem == "a rejected add changed the store's files"


def test_canary_values_spliced_into_sql_are_caught(spied, monkeypatch):
    store, spy = spied

    def spliced(self, flt):  # a broken build: bound parameters pasted into the SQL text
        from mrl_retrievers import filters as flt_mod

        sql, params = flt_mod.to_sql(flt, column="metadata")
        for p in params:
            sql = sql.replace("?", "'" + str(p).replace("'", "''") + "'", 1)
        rows = self.conn.execute(f"SELECT row FROM docs WHERE {sql} ORDER BY row").fetchall()
        return np.array([r for (r,) in rows], dtype=np.int64)

    monkeypatch.setattr(DocStore, "rows_matching", spliced)
    problem = _crafted_round_trip(store, spy, f"k{MARK}", f"v{MARK}", 0)
    assert problem is not None and "reached the SQL text" in problem
