"""Filters: the Python reference evaluator, the SQL compiler, and their agreement.

The catalogue pins each operator's meaning with explicit expected results (both evaluators must
produce them). The Hypothesis differential test fuzzes filters x documents and requires the SQL
and Python answers to be identical; canaries prove that harness catches a broken evaluator.
Hypothesis runs derandomized (same examples every run); a failure prints the falsifying example.
"""

from __future__ import annotations

import math
import random
import sqlite3
from dataclasses import FrozenInstanceError
from types import MappingProxyType

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mrl_retrievers import _filter_sql, filters
from mrl_retrievers.errors import FilterError, UnsupportedFilterError
from mrl_retrievers.filters import And, Condition, Not, Or, matches, parse_filter, register_sql_functions, to_sql
from mrl_retrievers.metadata import dump_metadata

# --- harness -----------------------------------------------------------------------------------


def make_db(docs: list[dict]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    register_sql_functions(conn)
    conn.execute("CREATE TABLE docs (id INTEGER, metadata TEXT)")
    conn.executemany("INSERT INTO docs VALUES (?, ?)", [(i, dump_metadata(d)) for i, d in enumerate(docs)])
    return conn


def sql_ids(conn: sqlite3.Connection, flt) -> set[int]:
    sql, params = to_sql(flt)
    return {row[0] for row in conn.execute(f"SELECT id FROM docs WHERE {sql}", params)}


def py_ids(flt, docs: list[dict]) -> set[int]:
    node = parse_filter(flt)  # once, not per document
    return {i for i, d in enumerate(docs) if matches(node, d)}


def disagreements(flts, docs) -> list:
    conn = make_db(docs)
    try:
        answers = [(f, py_ids(f, docs), sql_ids(conn, f)) for f in flts]
        return [a for a in answers if a[1] != a[2]]
    finally:
        conn.close()


# --- the catalogue: every operator on every kind of value ----------------------------------------

CATALOGUE = {
    "missing": {},
    "null": {"v": None},
    "true": {"v": True},
    "false": {"v": False},
    "zero": {"v": 0},
    "one": {"v": 1},
    "one_f": {"v": 1.0},
    "two_5": {"v": 2.5},
    "big": {"v": 2**63 - 1},
    "str_a": {"v": "a"},
    "str_1": {"v": "1"},
    "strasse": {"v": "Straße"},
    "sigma": {"v": "ὈΔΥΣΣΕΎΣ"},
    "empty_str": {"v": ""},
    "list": {"v": [1, "a", True, None]},
    "list_ab": {"v": ["a", "b"]},
    "empty_list": {"v": []},
    "nested_list": {"v": [[1], {"x": 1}]},
    "obj": {"v": {"x": 1}},
    "empty_obj": {"v": {}},
}
NAMES = list(CATALOGUE)
DOCS = list(CATALOGUE.values())
ALL = set(NAMES)
STRINGS = {"str_a", "str_1", "strasse", "sigma", "empty_str"}
LISTS = {"list", "list_ab", "empty_list", "nested_list"}

CASES = [
    ({"v": 1}, {"one", "one_f"}),  # 1 == 1.0; true is not 1; "1" is not 1
    ({"v": {"$eq": 1.0}}, {"one", "one_f"}),
    ({"v": True}, {"true"}),
    ({"v": False}, {"false"}),
    ({"v": 0}, {"zero"}),
    ({"v": None}, {"null"}),  # a present null only, not a missing key
    ({"v": "a"}, {"str_a"}),
    ({"v": [1, "a", True, None]}, {"list"}),
    ({"v": [1.0, "a", True, None]}, {"list"}),  # numbers by value inside lists too
    ({"v": [True, "a", 1, None]}, set()),  # order matters; true != 1
    ({"v": {"$eq": {"x": 1.0}}}, {"obj"}),
    ({"v": {"$eq": {}}}, {"empty_obj"}),
    ({"v": []}, {"empty_list"}),
    ({"v": {"$ne": 1}}, ALL - {"one", "one_f"}),
    ({"v": {"$ne": None}}, ALL - {"null"}),  # $ne matches missing
    ({"v": {"$gt": 0}}, {"one", "one_f", "two_5", "big"}),
    ({"v": {"$gte": 1}}, {"one", "one_f", "two_5", "big"}),
    ({"v": {"$lt": 1}}, {"zero"}),  # false/null/"0" are not numbers
    ({"v": {"$lte": 1.0}}, {"zero", "one", "one_f"}),
    ({"v": {"$gt": 0.5, "$lt": 2}}, {"one", "one_f"}),
    ({"v": {"$gt": 2**63 - 2}}, {"big"}),
    ({"v": {"$gte": 9.223372036854776e18}}, set()),  # 2**63 as a float is above 2**63-1: exact
    # A string operand orders string values by code point ("S" < "a" < "Ὀ"); numbers, bools,
    # lists (even of strings) and missing keys never compare with it.
    ({"v": {"$gt": "a"}}, {"sigma"}),
    ({"v": {"$gte": "a"}}, {"str_a", "sigma"}),
    ({"v": {"$lt": "a"}}, {"str_1", "strasse", "empty_str"}),
    ({"v": {"$lte": ""}}, {"empty_str"}),
    ({"v": {"$gte": "", "$lt": "1"}}, {"empty_str"}),
    ({"v": {"$gt": "0"}}, STRINGS - {"empty_str"}),  # "1" > "0" as text; the number 1 is not text
    ({"v": {"$in": [1, "a"]}}, {"one", "one_f", "str_a"}),
    ({"v": {"$in": [True, None]}}, {"true", "null"}),
    ({"v": {"$in": ["a", "b"]}}, {"str_a"}),  # whole value: ["a", "b"] is not "a" or "b"
    ({"v": {"$in": []}}, set()),
    ({"v": {"$nin": [1, "a"]}}, ALL - {"one", "one_f", "str_a"}),
    ({"v": {"$nin": []}}, ALL),
    ({"v": {"$contains": "a"}}, {"str_a", "strasse", "list", "list_ab"}),
    ({"v": {"$contains": 1}}, {"list"}),  # [[1], ...] holds [1], not 1
    ({"v": {"$contains": 1.0}}, {"list"}),
    ({"v": {"$contains": True}}, {"list"}),
    ({"v": {"$contains": None}}, {"list"}),
    ({"v": {"$contains": ""}}, STRINGS),
    ({"v": {"$any": ["b", 1]}}, {"list", "list_ab"}),
    ({"v": {"$any": []}}, set()),
    ({"v": {"$all": ["a", 1]}}, {"list"}),
    ({"v": {"$all": ["a", "b"]}}, {"list_ab"}),
    ({"v": {"$all": []}}, LISTS),  # every list value, nothing else
    ({"v": {"$text": "a"}}, {"str_a", "strasse"}),
    ({"v": {"$text": "A"}}, set()),
    ({"v": {"$text": ""}}, STRINGS),
    ({"v": {"$itext": "STRASSE"}}, {"strasse"}),  # Unicode casefold: ß -> ss
    ({"v": {"$itext": "ὀδυσσεύς"}}, {"sigma"}),  # final sigma folds like sigma
    ({"v": {"$itext": "A"}}, {"str_a", "strasse"}),
    ({"v": {"$exists": True}}, ALL - {"missing"}),
    ({"v": {"$exists": False}}, {"missing"}),
    ({"v": {"$empty": True}}, {"missing", "null", "empty_list"}),  # not "" and not {}
    ({"v": {"$empty": False}}, ALL - {"missing", "null", "empty_list"}),
    ({"$and": [{"v": {"$gt": 0}}, {"v": {"$lt": 2}}]}, {"one", "one_f"}),
    ({"$or": [{"v": True}, {"v": "a"}]}, {"true", "str_a"}),
    ({"$not": {"v": 1}}, ALL - {"one", "one_f"}),
    ({"$not": [{"v": 1}, {"v": "a"}]}, ALL - {"one", "one_f", "str_a"}),
    ({"v": {"$gte": 1}, "$not": {"v": 2.5}}, {"one", "one_f", "big"}),
    ({"other": {"$exists": False}, "v": "a"}, {"str_a"}),
]


@pytest.fixture(scope="module")
def catalogue_db():
    conn = make_db(DOCS)
    yield conn
    conn.close()


@pytest.mark.parametrize(("flt", "expected"), CASES, ids=[repr(f) for f, _ in CASES])
def test_catalogue_python_and_sql_give_the_expected_documents(catalogue_db, flt, expected):
    python = {NAMES[i] for i in py_ids(flt, DOCS)}
    sql = {NAMES[i] for i in sql_ids(catalogue_db, flt)}
    assert python == expected
    assert sql == expected


def test_string_ranges_order_iso_dates_like_simple_vector_store():
    # Regression (issue 20): {"$gte": "2024-01-01"} was refused; SimpleVectorStore compares with
    # Python's str order, and so do we, in Python and in SQL (BINARY collation = code point order).
    docs = [{"d": "2023-12-31"}, {"d": "2024-01-01"}, {"d": "2024-06-30T12:00:00"}, {"d": 20240101},
            {"d": ["2024-02-02"]}, {}, {"d": "2025-01-01"}, {"d": "\U0001f600"}, {"d": "\uffff"}]  # fmt: skip
    conn = make_db(docs)
    try:
        for flt in ({"d": {"$gte": "2024-01-01"}}, {"d": {"$gte": "2024-01-01", "$lt": "2025"}},
                    {"d": {"$lt": "2024"}}, {"d": {"$gt": "\uffff"}}, {"$not": {"d": {"$lte": "2024-06-30"}}}):  # fmt: skip
            if "$not" in flt:
                reference = set(range(len(docs))) - {i for i, d in enumerate(docs)
                                                      if isinstance(d.get("d"), str) and d["d"] <= "2024-06-30"}
            else:
                reference = {i for i, d in enumerate(docs) if isinstance(d.get("d"), str) and _python_holds(flt, d["d"])}
            assert py_ids(flt, docs) == sql_ids(conn, flt) == reference, flt
    finally:
        conn.close()


def _python_holds(flt, value: str) -> bool:
    ops = {"$gt": str.__gt__, "$gte": str.__ge__, "$lt": str.__lt__, "$lte": str.__le__}
    return all(ops[op](value, operand) for op, operand in flt["d"].items())


def test_every_operator_has_a_check_an_evaluator_and_a_compiler():
    ops = set(filters.OPERATORS)
    assert set(filters._OPERAND_KINDS) == set(filters._PY_OPS) == set(_filter_sql._LEAVES) == ops


def test_no_filter_matches_everything_explicitly():
    assert parse_filter(None) is None and parse_filter({}) is None
    assert matches(None, {"a": 1}) and matches({}, {})
    assert to_sql(None) == ("1", [])


def test_parsed_ast_is_immutable_and_detached_from_the_input():
    spec = {"a": {"$in": [1, 2]}, "$or": [{"b": {"$eq": {"x": [1]}}}]}
    node = parse_filter(spec)
    assert node == And((Condition("a", "$in", (1, 2)), Or((Condition("b", "$eq", {"x": (1,)}),))))
    spec["a"]["$in"].append(3)
    assert node.children[0].operand == (1, 2)
    with pytest.raises(FrozenInstanceError):
        node.children[0].key = "z"
    with pytest.raises(TypeError):
        node.children[1].children[0].operand["x"] = 0
    assert parse_filter(node) is node
    assert parse_filter({"$not": {"a": 1}}) == Not((Condition("a", "$eq", 1),))


def test_numpy_scalars_are_accepted_as_plain_values():
    node = parse_filter({"a": {"$gt": np.int64(1)}, "b": np.float32(1.5), "c": {"$in": [np.bool_(True)]}})
    operands = [c.operand for c in node.children]
    assert operands == [1, 1.5, (True,)]
    assert [type(o) for o in operands[:2]] == [int, float] and type(operands[2][0]) is bool


# --- errors --------------------------------------------------------------------------------------

UNSUPPORTED = [
    {"a": {"$regex": "x"}},
    {"a": {"$foo": 1}},
    {"a": {"$size": 1}},
    {"a": {"$elemMatch": {"b": 1}}},
    {"a": {"$EQ": 1}},
    {"a": {"$not": {"$gt": 1}}},  # field-level $not: use {"$not": {"a": {...}}}
    {"a": {"$and": [{"$gt": 1}]}},
    {"$nor": [{"a": 1}]},
    {"$where": "1"},
    {"$gt": 1},
    {"$text": "x"},
    {"a": {"b": 1}},  # nested-object match is ambiguous
    {"a": {"$eq": 1, "b": 2}},
    {"$and": [{"a": {"$regex": "x"}}]},  # found at any depth
    {"a": {1: 2}},
]


@pytest.mark.parametrize("flt", UNSUPPORTED, ids=repr)
def test_unsupported_operators_raise(flt):
    with pytest.raises(UnsupportedFilterError) as info:
        parse_filter(flt)
    with pytest.raises(UnsupportedFilterError):
        to_sql(flt)
    with pytest.raises(UnsupportedFilterError):
        matches(flt, {"a": 1})
    assert "$" in str(info.value) or "top-level" in str(info.value)


def test_a_hand_built_condition_with_an_unknown_operator_raises():
    node = Condition("a", "$regex", "x")
    with pytest.raises(UnsupportedFilterError, match="regex"):
        matches(node, {"a": "x"})
    with pytest.raises(UnsupportedFilterError, match="regex"):
        to_sql(Not((node,)))


def test_matches_refuses_metadata_that_is_not_an_object():
    with pytest.raises(TypeError):
        matches({"a": 1}, [("a", 1)])


def test_unsupported_message_names_the_operator_and_the_supported_ones():
    with pytest.raises(UnsupportedFilterError, match=r"'\$regex'.*\$eq.*\$itext"):
        parse_filter({"year": {"$regex": "^19"}})


WRONG_OPERANDS = [
    {"a": {"$gt": True}},
    {"a": {"$lte": None}},
    {"a": {"$gt": math.nan}},
    {"a": {"$lt": math.inf}},
    {"a": {"$gt": [1]}},
    {"a": {"$gt": 2**64}},
    {"a": {"$in": "abc"}},
    {"a": {"$in": 5}},
    {"a": {"$in": [[1]]}},
    {"a": {"$in": [{"b": 1}]}},
    {"a": {"$nin": {"x"}}},
    {"a": {"$any": "a"}},
    {"a": {"$all": None}},
    {"a": {"$contains": [1]}},
    {"a": {"$contains": {"b": 1}}},
    {"a": {"$text": 5}},
    {"a": {"$itext": None}},
    {"a": {"$exists": 1}},
    {"a": {"$exists": "true"}},
    {"a": {"$empty": None}},
    {"a": {}},
    {"a": math.nan},
    {"a": {"$eq": {"x": math.nan}}},
    {"a": {"$eq": {1: 2}}},
    {"a": b"bytes"},
    {"a": {1, 2}},
    {"a": "nul\x00"},
    {"a": "\ud800"},
    {"$and": {"a": 1}},
    {"$and": []},
    {"$or": [{}]},
    {"$or": "x"},
    {"$or": [1]},
    {"$not": []},
    {"$not": 5},
    {"$not": {}},
    [{"a": 1}],
    "a = 1",
]


@pytest.mark.parametrize("flt", WRONG_OPERANDS, ids=repr)
def test_wrong_operand_types_raise_filter_error(flt):
    with pytest.raises(FilterError):
        parse_filter(flt)
    with pytest.raises(FilterError):
        to_sql(flt)


BAD_KEYS = ["", 'say "hi"', "back\\slash", "new\nline", "tab\t", "\ud800", 1, None, ("a",)]


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_keys_sqlite_cannot_address_raise_filter_error(key):
    with pytest.raises(FilterError):
        parse_filter({key: 1})


def test_key_error_says_why():
    with pytest.raises(FilterError, match="JSON path"):
        parse_filter({'a"b': 1})


HEAVY_LEAF = {"a": {"$all": [1, 2]}, "b": {"$contains": "x"}, "c": {"$empty": False}}  # And of 3: depth 2
NESTERS = {
    "not": lambda f: {"$not": f},
    "not_list": lambda f: {"$not": [f, {"a": 1}]},
    "and": lambda f: {"$and": [HEAVY_LEAF, f]},
    "or": lambda f: {"$or": [f, HEAVY_LEAF]},
    "or_and_key": lambda f: {"$or": [f], "k": {"$any": [1, "x"]}},  # And(Or(f), k): 2 levels per dict
}


def ast_depth(flt) -> int:
    return filters._depth(filters._parse_dict(flt, "filter", 1))  # without parse_filter's limit


def nest_to(depth: int, wrap) -> dict:
    """Wrap HEAVY_LEAF until the filter's AST is exactly ``depth`` levels deep."""
    flt = HEAVY_LEAF
    while ast_depth(wrap(flt)) <= depth:
        flt = wrap(flt)
    while ast_depth(flt) < depth:
        flt = {"$not": flt}
    return flt


@pytest.mark.parametrize("shape", NESTERS)
def test_the_deepest_allowed_filter_runs_in_sqlite_and_one_more_level_is_refused(shape):
    flt = nest_to(filters.MAX_FILTER_DEPTH, NESTERS[shape])
    docs = [{"a": [1, 2], "b": "xyz", "c": 0, "k": "x"}, {"a": [1]}, {}]
    assert disagreements([flt], docs) == []  # SQLite's parser stack does not overflow
    with pytest.raises(FilterError, match="deep"):
        parse_filter({"$not": flt})


def test_dict_nesting_is_bounded_before_recursing():
    flt: dict = {"a": 1}
    for _ in range(1000):
        flt = {"$and": [flt]}
    with pytest.raises(FilterError, match="deeper"):
        parse_filter(flt)


@pytest.mark.parametrize("column", ["metadata; DROP TABLE docs", "meta data", "1col", "value", "a.b.c", ""])
def test_column_must_be_a_safe_identifier(column):
    with pytest.raises(FilterError):
        to_sql({"a": 1}, column=column)


def test_qualified_column_works():
    conn = make_db([{"a": 1}, {"a": 2}])
    sql, params = to_sql({"a": {"$in": [2]}, "b": {"$all": []}, "$not": {"a": {"$contains": 1}}}, column="docs.metadata")
    assert conn.execute(f"SELECT count(*) FROM docs WHERE {sql}", params).fetchone() == (0,)
    sql, params = to_sql({"a": 2}, column="docs.metadata")
    assert [r[0] for r in conn.execute(f"SELECT id FROM docs WHERE {sql}", params)] == [1]


def test_sql_functions_must_be_registered():
    conn = sqlite3.connect(":memory:")  # no register_sql_functions: fail loudly, never match all
    conn.execute("CREATE TABLE docs (id INTEGER, metadata TEXT)")
    conn.execute("INSERT INTO docs VALUES (1, '{\"a\":\"X\"}')")
    sql, params = to_sql({"a": {"$itext": "x"}})
    with pytest.raises(sqlite3.OperationalError, match="mrl_casefold"):
        conn.execute(f"SELECT id FROM docs WHERE {sql}", params).fetchall()


# --- SQL injection: keys and values travel only as parameters ------------------------------------

HOSTILE = ["a'); DROP TABLE docs;--", "x' OR '1'='1", "100%_off", "_%", "it's", "é\u2028z", "[0].b", "a.$b", "*/ --"]


@pytest.mark.parametrize("text", HOSTILE, ids=repr)
def test_hostile_keys_and_values_never_reach_the_sql_text(text):
    docs = [{text: text}, {text: [text]}, {"other": text}, {text: "plain"}]
    conn = make_db(docs)
    flts = [{text: text}, {text: {"$in": [text]}}, {text: {"$contains": text}}, {text: {"$itext": text}},
            {text: {"$exists": True}}, {"$or": [{text: {"$any": [text]}}, {text: {"$eq": {text: text}}}]}]  # fmt: skip
    expected = [{0}, {0}, {0, 1}, {0}, {0, 1, 3}, {1}]
    for flt, want in zip(flts, expected):
        sql, params = to_sql(flt)
        assert text not in sql
        assert any(text in str(p) for p in params)
        assert sql_ids(conn, flt) == want == py_ids(flt, docs)
    assert conn.execute("SELECT count(*) FROM docs").fetchone() == (4,)


# --- the differential test ---------------------------------------------------------------------

# 8 keys, one of them awkward for JSON paths (quote, dot, %, _, brackets, DEL, non-ASCII)
KEYS = ["a", "b", "n", "s", "l", "o", "é ü", "it's.%_[0]\x7f"]
EDGE_SCALARS = [
    None, True, False, 0, 1, -1, 2, 1.0, -0.0, 0.5, 2.5, 1e300, 5e-324, 2**53, 2**53 + 1, 2**63 - 1, -(2**63),
    9.223372036854776e18, 9007199254740992.0, "", "a", "A", "ab", "bA", "straße", "STRASSE", "ß", "ss",
    "İ", "i", "ς", "Σ", "σ", "é", "e\u0301", "😀", "1", "true", "null", "\n", "%_", "'",
]  # fmt: skip
CORPUS_SEED = 20240601


def build_corpus(seed: int = CORPUS_SEED, size: int = 120) -> list[dict]:
    """A seeded document set over KEYS: edge scalars, random floats/strings, lists, objects, gaps."""
    rng = random.Random(seed)

    def scalar():
        roll = rng.random()
        if roll < 0.1:
            return rng.uniform(-3, 3)
        if roll < 0.15:
            return "".join(chr(rng.choice([rng.randrange(32, 0x250), rng.randrange(0x370, 0x3FF)])) for _ in range(3))
        return rng.choice(EDGE_SCALARS)

    def value(depth=0):
        roll = rng.random()
        if depth < 2 and roll < 0.25:
            return [value(depth + 1) if rng.random() < 0.15 else scalar() for _ in range(rng.randrange(4))]
        if depth < 2 and roll < 0.3:
            return {k: value(depth + 1) for k in rng.sample(["x", "y", "é"], rng.randrange(3))}
        return scalar()

    return [{k: value() for k in KEYS if rng.random() < 0.6} for _ in range(size)]


CORPUS = build_corpus()

# Open-ended strategies, with the edge values drawn often so documents and operands collide.
EDGES = st.sampled_from(EDGE_SCALARS)
TEXTS = st.sampled_from([v for v in EDGE_SCALARS if isinstance(v, str)]) | st.text(
    st.characters(codec="utf-8", exclude_characters="\x00"), max_size=4
)
NUMBERS = st.sampled_from([v for v in EDGE_SCALARS if type(v) in (int, float)]) | st.integers(-3, 3) | st.floats(
    allow_nan=False, allow_infinity=False
)
SCALARS = st.one_of(EDGES, EDGES, st.none(), st.booleans(), NUMBERS, TEXTS)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["x", "y", "é"]), inner, max_size=2),
    max_leaves=4,
)
DOC = st.fixed_dictionaries({}, optional={k: VALUES for k in KEYS})


def _flip_numbers(value):
    """The same JSON value with ints as floats and integral floats as ints (1 <-> 1.0)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) < 2**53:
        return float(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, list):
        return [_flip_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _flip_numbers(v) for k, v in value.items()}
    return value


_OPERANDS = {
    "$eq": VALUES, "$ne": VALUES,
    "$gt": NUMBERS | TEXTS, "$gte": NUMBERS | TEXTS, "$lt": NUMBERS | TEXTS, "$lte": NUMBERS | TEXTS,
    "$in": st.lists(SCALARS, max_size=4), "$nin": st.lists(SCALARS, max_size=4),
    "$any": st.lists(SCALARS, max_size=3), "$all": st.lists(SCALARS, max_size=3),
    "$contains": SCALARS, "$text": TEXTS, "$itext": TEXTS,
    "$exists": st.booleans(), "$empty": st.booleans(),
}  # fmt: skip
assert set(_OPERANDS) == set(filters.OPERATORS)  # the fuzzer covers every operator


@st.composite
def leaves(draw):
    key = draw(st.sampled_from(KEYS))
    ops = draw(st.lists(st.sampled_from(sorted(_OPERANDS)), min_size=1, max_size=2, unique=True))
    cond = {op: draw(_OPERANDS[op]) for op in ops}
    if ops == ["$eq"] and not isinstance(cond["$eq"], dict) and draw(st.booleans()):
        return {key: cond["$eq"]}  # the bare-value form
    return {key: cond}


STORED_PAIRS = [(k, v) for d in CORPUS for k, v in d.items()]


@st.composite
def stored_leaves(draw):
    """A condition built from a (key, value) the corpus holds, so that it matches some documents."""
    key, value = draw(st.sampled_from(STORED_PAIRS))
    value = draw(st.sampled_from([value, _flip_numbers(value)]))  # 1 <-> 1.0 must not matter
    choices = [{"$eq": value}, {"$ne": value}]
    if not isinstance(value, (list, dict)):
        choices += [{"$in": [draw(SCALARS), value]}, {"$nin": [value]}, {"$contains": value}]
    elements = [e for e in value if not isinstance(e, (list, dict))] if isinstance(value, list) else []
    if elements:
        some = st.lists(st.sampled_from(elements), max_size=3)
        choices += [{"$contains": draw(st.sampled_from(elements))}, {"$any": draw(some)}, {"$all": draw(some)}]
    if isinstance(value, str):
        i, j = sorted(draw(st.integers(0, len(value))) for _ in range(2))
        part = value[i:j]
        choices += [{"$text": part}, {"$itext": part.upper()}, {"$contains": part}]
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        choices += [{op: value} for op in ("$gt", "$gte", "$lt", "$lte")]  # ranges on the value's own kind
    return {key: draw(st.sampled_from(choices))}


def filter_specs(depth: int = 3):
    """Random filters using every operator and combinator, nested up to ``depth`` combinators."""
    if depth == 0:
        return leaves() | stored_leaves()
    sub = filter_specs(depth - 1)
    return st.one_of(
        leaves(),
        stored_leaves(),
        st.lists(sub, min_size=1, max_size=2).map(lambda fs: {"$and": fs}),
        st.lists(sub, min_size=1, max_size=3).map(lambda fs: {"$or": fs}),
        sub.map(lambda f: {"$not": f}),
        st.lists(sub, min_size=1, max_size=2).map(lambda fs: {"$not": fs}),
        st.tuples(leaves(), sub).map(lambda t: {**t[1], **t[0]}),  # several keys = AND
    )


FUZZ = settings(
    deadline=None,
    derandomize=True,  # the same cases on every run and every machine
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def corpus_db():
    conn = make_db(CORPUS)
    yield conn
    conn.close()


@settings(FUZZ, max_examples=650)
@given(flts=st.lists(filter_specs(), min_size=2, max_size=5))
def test_sql_agrees_with_python_on_fuzzed_filters_over_the_seeded_corpus(corpus_db, flts):
    # ~2000 filters x 120 documents per run
    for flt in flts:
        assert sql_ids(corpus_db, flt) == py_ids(flt, CORPUS), flt


@settings(FUZZ, max_examples=150)
@given(docs=st.lists(DOC, min_size=1, max_size=5), flts=st.lists(filter_specs(2), min_size=1, max_size=3))
def test_sql_agrees_with_python_on_fuzzed_documents(docs, flts):
    assert disagreements(flts, docs) == []


def _rename(spec):
    """The same filter shape with every key and string value changed."""
    if isinstance(spec, dict):
        return {(k if k.startswith("$") else "K" + k[::-1]): _rename(v) for k, v in spec.items()}
    if isinstance(spec, list):
        return [_rename(v) for v in spec]
    return "Z" + spec if isinstance(spec, str) else spec


@settings(FUZZ, max_examples=150)
@given(flt=filter_specs())
def test_sql_text_depends_only_on_the_filter_shape(flt):
    assert to_sql(flt)[0] == to_sql(_rename(flt))[0]


# --- canaries: the harness above must catch a broken evaluator ----------------------------------

CANARY_FILTERS = [f for f, _ in CASES]


def test_harness_catches_a_python_evaluator_bug(monkeypatch):
    monkeypatch.setitem(filters._PY_OPS, "$ne", lambda v, x: v is not filters._MISSING and not filters.json_equal(v, x))
    assert disagreements(CANARY_FILTERS, DOCS)


def test_harness_catches_a_sql_compiler_bug(monkeypatch):
    def naive_eq(col, path, x):  # the classic bug: json_extract gives 1 for true
        return f"COALESCE(json_extract({col}, ?) = ?, 0)", [path, None if isinstance(x, tuple | dict | MappingProxyType) else x]

    monkeypatch.setitem(_filter_sql._LEAVES, "$eq", naive_eq)
    assert disagreements(CANARY_FILTERS, DOCS)
