"""Filters: MRLVectorStore against SimpleVectorStore and LlamaIndex's own filter semantics.

Same nodes, same embeddings, every FilterOperator and FilterCondition: the ids must come back the
same, in the same order (small stores are searched exactly). Where SimpleVectorStore cannot answer
(nested groups, doc_ids, a TypeError on incomparable values) the expected ids come from
``build_metadata_filter_fn`` applied to the same nodes (a condition that raises TypeError on a
node is false for it). Filters the store cannot express raise UnsupportedFilterError.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores import SimpleVectorStore
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)
from llama_index.core.vector_stores.utils import build_metadata_filter_fn, node_to_metadata_dict
from llama_index.vector_stores.mrl import MRLVectorStore
from llama_index.vector_stores.mrl.filters import translate_filters

from mrl_retrievers import filters as mrl_filters
from mrl_retrievers.errors import UnsupportedFilterError

MISSING = object()
DIM = 12
# Values per key, cycled over the nodes with co-prime strides so combinations vary.
VALUES = {
    "num": [0, 1, 2, 5, -3, 2.5, 1.0, 0.0, True, False, None, MISSING, 7, -0.5],
    "word": ["apple", "Apple", "APPLE pie", "", "banana", "straße", "STRASSE", "ΑΣ", "σοφία", "pineapple", None, MISSING, "ﬁne"],
    "tags": [["a", "b"], ["b"], [], ["A"], [1, 2], [True], [0], ["a", 1], [None], [["a"]], None, MISSING, ["ab", "c"]],
    "info": [{"a": 1}, {"b": 2}, {}, {"a": None}, None, MISSING, {"ab": [1]}],
    "mixed": [1, "1", [1], {"1": 1}, True, None, "", [], 2.5, "a", ["a"], MISSING, {"a": 0}, "ab", 0],
}
STRIDES = {"num": 1, "word": 3, "tags": 5, "info": 3, "mixed": 7}  # co-prime with the lengths
KEYS = [*VALUES, "absent"]
N_NODES = 60
assert all(math.gcd(STRIDES[k], len(v)) == 1 for k, v in VALUES.items())
OPERAND_VALUES = {
    FilterOperator.EQ: [1, 0, 2.5, 1.0, "apple", "", None, ["a", "b"], [1, 2], [1], [], "a"],
    FilterOperator.NE: [1, 0, 2.5, "apple", "", None, ["a", "b"], [1], []],
    FilterOperator.GT: [1, 0, 2.5, -1, "m", "apple", "", "ß", ["a"], None],
    FilterOperator.GTE: [1, 0, 2.5, -1, "m", "apple", "1"],
    FilterOperator.LT: [1, 0, 2.5, -1, "m", "APPLE", "σ", [1]],
    FilterOperator.LTE: [1, 0, 2.5, -1, "banana", "", None],
    FilterOperator.IN: [[1, 2], ["apple", "banana", ""], [0], [], [2.5, 1.0], "apple", 5, None],
    FilterOperator.NIN: [[1, 2], ["apple", "banana"], [0], [], "apple", None],
    FilterOperator.ANY: [["a"], ["a", "b"], [1], [0, 2], [], ["x", "b"], "ab", 5, None],
    FilterOperator.ALL: [["a"], ["a", "b"], [1, 2], [0], [], "ab", 5],
    FilterOperator.TEXT_MATCH: ["apple", "APPLE", "ss", "", "pie", "a", 5],
    FilterOperator.TEXT_MATCH_INSENSITIVE: ["apple", "APPLE", "ss", "σ", "", "pie", "fi", "ΣΟΦ", "cob", 5],
    FilterOperator.CONTAINS: ["a", "b", 1, 0, "apple", "", 2.5, ["a"]],
    FilterOperator.IS_EMPTY: [None],
}
assert set(OPERAND_VALUES) == set(FilterOperator)


def rejected(op: FilterOperator, value) -> bool:
    """The leaves the translator must refuse: the store has no equivalent (documented)."""
    if op in (FilterOperator.GT, FilterOperator.GTE, FilterOperator.LT, FilterOperator.LTE):
        return not isinstance(value, (int, float, str))  # strings order by code point (issue 20)
    if op in (FilterOperator.IN, FilterOperator.NIN):
        return not isinstance(value, list)
    if op in (FilterOperator.ANY, FilterOperator.ALL):
        return not isinstance(value, (list, str))
    if op in (FilterOperator.TEXT_MATCH, FilterOperator.TEXT_MATCH_INSENSITIVE):
        return not isinstance(value, str)
    if op == FilterOperator.CONTAINS:
        return isinstance(value, list)
    return False


def make_nodes() -> list[TextNode]:
    rng = np.random.default_rng(20240611)
    vectors = rng.standard_normal((N_NODES, DIM)).astype(np.float32)
    nodes = []
    for i in range(N_NODES):
        metadata = {}
        for j, (key, values) in enumerate(VALUES.items()):
            value = values[(i * STRIDES[key] + j) % len(values)]
            if value is not MISSING:
                metadata[key] = value
        nodes.append(
            TextNode(
                id_=f"node-{i:02d}", text=f"node {i}", metadata=metadata, embedding=vectors[i].tolist(),
                relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"doc-{i % 4}")},
            )
        )  # fmt: skip
    return nodes


NODES = make_nodes()
METADATA = {n.node_id: node_to_metadata_dict(n, remove_text=True) for n in NODES}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    ours = MRLVectorStore(tmp_path_factory.mktemp("parity") / "store", dtype="float32", prefix_dim=4)
    ours.add(NODES)
    ann = MRLVectorStore(tmp_path_factory.mktemp("parity-ann") / "store", dtype="float32", prefix_dim=4, exact_below=0)
    ann.add(NODES)
    simple = SimpleVectorStore()
    simple.add(NODES)
    yield ours, ann, simple
    ours.close()
    ann.close()


def query_vector(seed: int) -> list[float]:
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32).tolist()


# --- the oracle: LlamaIndex's own semantics ------------------------------------------------------------


def oracle(filters: MetadataFilters | None, metadata: dict) -> bool:
    if filters is None or not filters.filters:
        return True
    if not any(isinstance(f, MetadataFilters) for f in filters.filters):
        try:  # a flat group: exactly what SimpleVectorStore runs
            return build_metadata_filter_fn(lambda _id: metadata, filters)("id")
        except TypeError:
            pass  # some condition compared incomparable types: evaluate condition by condition
    results = []
    for item in filters.filters:
        if isinstance(item, MetadataFilters):
            results.append(oracle(item, metadata))
            continue
        try:
            results.append(build_metadata_filter_fn(lambda _id: metadata, MetadataFilters(filters=[item]))("id"))
        except TypeError:
            results.append(False)
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.AND:
        return all(results)
    if condition == FilterCondition.OR:
        return any(results)
    return not any(results)


def expected_ids(simple: SimpleVectorStore, query: VectorStoreQuery) -> tuple[list[str], bool]:
    """(ids, answered_by_simple_vector_store)."""
    nested = query.filters is not None and any(isinstance(f, MetadataFilters) for f in query.filters.filters)
    if not nested and not query.doc_ids:
        try:
            return simple.query(query).ids, True
        except TypeError:
            pass
    ranking = simple.query(VectorStoreQuery(query_embedding=query.query_embedding, similarity_top_k=N_NODES)).ids
    docs = MetadataFilters(filters=[MetadataFilter(key="ref_doc_id", value=query.doc_ids, operator="in")]) if query.doc_ids else None
    keep = [i for i in ranking if oracle(query.filters, METADATA[i]) and oracle(docs, METADATA[i])]
    return keep[: query.similarity_top_k], False


def leaf_rejected(filters: MetadataFilters) -> bool:
    return any(
        leaf_rejected(f) if isinstance(f, MetadataFilters) else rejected(FilterOperator(f.operator), f.value)
        for f in filters.filters
    )


def check(stores, filters: MetadataFilters | None, *, k: int = N_NODES, seed: int = 0, doc_ids=None) -> str:
    """Assert our ids == the reference ids; say who answered: "simple", "oracle" or "rejected"."""
    ours, ann, simple = stores
    query = VectorStoreQuery(query_embedding=query_vector(seed), similarity_top_k=k, filters=filters, doc_ids=doc_ids)
    if filters is not None and leaf_rejected(filters):
        with pytest.raises(UnsupportedFilterError):
            ours.query(query)
        return "rejected"
    if filters is not None:
        check_bounds(ours.client, filters)
    want, direct = expected_ids(simple, query)
    got = ours.query(query)
    assert got.ids == want, f"filters={filters!r} doc_ids={doc_ids}"
    assert got.similarities == sorted(got.similarities, reverse=True)
    assert ann.query(query, shortlist=N_NODES).ids == want, "ANN path (full shortlist) differs"
    return "simple" if direct else "oracle"


# --- every operator on every key, SimpleVectorStore as the reference --------------------------------------


@pytest.mark.parametrize("op", list(FilterOperator), ids=lambda op: op.name)
def test_every_operator_matches_simple_vector_store(stores, op):
    answered = Counter()
    for key in KEYS:
        for value in OPERAND_VALUES[op]:
            flt = MetadataFilters(filters=[MetadataFilter(key=key, value=value, operator=op)])
            for k, seed in ((N_NODES, 1), (5, 2)):
                answered[check(stores, flt, k=k, seed=seed)] += 1
    # SimpleVectorStore raises TypeError on incomparable values (e.g. GT on the "word" key); at
    # least the numeric / missing keys must be answered by it directly.
    assert answered["simple"] >= (answered["simple"] + answered["oracle"]) // 3, answered


# Operands pydantic refuses (bools, None inside lists, mixed lists) that model_construct or attribute
# assignment lets through: the translation still follows the reference.
CONSTRUCTED = [
    (FilterOperator.EQ, True), (FilterOperator.EQ, False), (FilterOperator.NE, True), (FilterOperator.EQ, [True, 2]),
    (FilterOperator.GT, True), (FilterOperator.LTE, False),
    (FilterOperator.IN, [None, 1]), (FilterOperator.IN, [True, "a"]), (FilterOperator.NIN, [None, "apple"]),
    (FilterOperator.ANY, [1, "a"]), (FilterOperator.ANY, ["a", 1, "b"]), (FilterOperator.ANY, [None, "p"]),
    (FilterOperator.ALL, ["a", 1]), (FilterOperator.ALL, [True]), (FilterOperator.ALL, [None]),
    (FilterOperator.CONTAINS, True), (FilterOperator.CONTAINS, None),
]  # fmt: skip


def test_constructed_operands_follow_the_reference(stores):
    for op, value in CONSTRUCTED:
        for key in KEYS:
            check(stores, MetadataFilters(filters=[MetadataFilter.model_construct(key=key, value=value, operator=op)]))


LEAVES = [
    MetadataFilter(key="num", value=1, operator=">="),
    MetadataFilter(key="word", value="apple", operator="text_match_insensitive"),
    MetadataFilter(key="tags", value=["a"], operator="any"),
    MetadataFilter(key="info", value="a", operator="contains"),
    MetadataFilter(key="num", value=[0, 5], operator="nin"),
    MetadataFilter(key="absent", value=None, operator="is_empty"),
    MetadataFilter(key="word", value="", operator="=="),
    MetadataFilter(key="mixed", value=1, operator="!="),
]


@pytest.mark.parametrize("condition", list(FilterCondition), ids=lambda c: c.name)
def test_every_condition_matches_simple_vector_store(stores, condition):
    answered = Counter()
    for i in range(len(LEAVES)):
        for size in (1, 2, 3):
            group = [LEAVES[(i + j * 3) % len(LEAVES)] for j in range(size)]
            answered[check(stores, MetadataFilters(filters=group, condition=condition), seed=i)] += 1
    assert answered["simple"] > answered["oracle"], answered
    check(stores, MetadataFilters(filters=[], condition=condition))  # empty: no restriction
    check(stores, MetadataFilters(filters=[LEAVES[0]], condition=None))  # None means AND


def test_nested_filters_match_build_metadata_filter_fn(stores):
    inner_not = MetadataFilters(filters=[LEAVES[1], LEAVES[3]], condition="not")
    inner_or = MetadataFilters(filters=[LEAVES[2], LEAVES[5], inner_not], condition="or")
    for condition in FilterCondition:
        check(stores, MetadataFilters(filters=[LEAVES[0], inner_or], condition=condition), seed=3)
        check(stores, MetadataFilters(filters=[inner_not, LEAVES[7]], condition=condition), seed=4)
        check(stores, MetadataFilters(filters=[MetadataFilters(filters=[], condition="not")], condition=condition))


def test_the_object_bound_is_tight(stores):
    # CONTAINS "zzz" matches no list or string: the superset sent to the store is the dict values only.
    flt = MetadataFilters(filters=[MetadataFilter(key="mixed", value="zzz", operator="contains")])
    dicts = {i for i, md in METADATA.items() if isinstance(md.get("mixed"), dict)}
    assert dicts and _store_ids(stores[0].client, translate_filters(flt).filter) == dicts


def test_doc_ids_match_build_metadata_filter_fn(stores):
    check(stores, None, doc_ids=["doc-1", "doc-3"])
    check(stores, MetadataFilters(filters=[LEAVES[0]]), doc_ids=["doc-2"])
    check(stores, MetadataFilters(filters=[LEAVES[1], LEAVES[3]], condition="or"), doc_ids=["doc-0", "doc-2"], k=4)


def test_get_and_delete_nodes_by_filters_match_the_reference(tmp_path):
    flt = MetadataFilters(filters=[LEAVES[3], LEAVES[2], LEAVES[1]], condition="or")
    want = sorted(i for i in METADATA if oracle(flt, METADATA[i]))
    assert 0 < len(want) < N_NODES
    vector_store = MRLVectorStore(tmp_path / "s", dtype="float32", prefix_dim=4)
    vector_store.add(NODES)
    assert [n.node_id for n in vector_store.get_nodes(filters=flt)] == want
    simple = SimpleVectorStore()
    simple.add(NODES)
    simple.delete_nodes(filters=flt)
    vector_store.delete_nodes(filters=flt)
    assert sorted(n.node_id for n in vector_store.get_nodes()) == sorted(simple.data.embedding_dict)
    vector_store.close()


# --- fuzzed filter trees -----------------------------------------------------------------------------

_texts = st.text(alphabet="aAbBsSß σΣﬁpleP", max_size=3)
_operands = st.one_of(
    st.none(),
    st.integers(-3, 6),
    st.sampled_from([0.0, 1.0, 2.5, -0.5]),
    _texts,
    st.lists(_texts, max_size=3),
    st.lists(st.integers(-1, 3), max_size=3),
    st.lists(st.sampled_from([0.0, 1.0, 2.5]), max_size=2),
    # pydantic refuses these, but MetadataFilter.model_construct (or assignment) lets them through
    st.lists(st.one_of(st.none(), st.booleans(), st.integers(-1, 2), _texts), max_size=3),
    st.booleans(),
)


@st.composite
def _leaves(draw):
    return MetadataFilter.model_construct(
        key=draw(st.sampled_from(KEYS)), value=draw(_operands), operator=draw(st.sampled_from(list(FilterOperator)))
    )


_trees = st.recursive(
    _leaves(),
    lambda children: st.builds(
        lambda filters, condition: MetadataFilters(filters=filters, condition=condition),
        st.lists(children, max_size=3),
        st.sampled_from(list(FilterCondition)),
    ),
    max_leaves=6,
)


@settings(max_examples=400, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=_trees, seed=st.integers(0, 3))
def test_fuzzed_filters_agree_with_the_reference(stores, tree, seed):
    filters = tree if isinstance(tree, MetadataFilters) else MetadataFilters(filters=[tree])
    check(stores, filters, seed=seed)


def check_bounds(store, filters: MetadataFilters) -> None:
    """The translation's bounds hold on their own (the post-check cannot hide a wrong one):
    lower <= reference <= upper, equal when exact; and the store's SQL agrees with the store
    syntax's Python evaluator."""
    translation = translate_filters(filters)
    reference = {i for i in METADATA if oracle(filters, METADATA[i])}
    upper = _store_ids(store, translation.filter)
    lower = _store_ids(store, translation.lower)
    assert lower <= reference <= upper, filters
    if translation.exact:
        assert upper == reference, filters
    for flt, ids in ((translation.filter, upper), (translation.lower, lower)):
        assert {i for i in METADATA if mrl_filters.matches(flt, METADATA[i])} == ids, flt


def _store_ids(store, flt) -> set[str]:
    return {h.id for h in store.search_exact(np.ones(DIM), k=N_NODES, filter=flt)}


# --- the claims behind TEXT_MATCH_INSENSITIVE ----------------------------------------------------------


def _code_points():
    return (chr(i) for i in range(sys.maxunicode + 1) if not 0xD800 <= i < 0xE000)


def test_casefold_matches_whatever_lower_matches():
    # casefold is per character, and casefold(c) == casefold(lower(c)) for every c: a substring
    # under lower() is one under casefold(), so $itext is a superset of TEXT_MATCH_INSENSITIVE.
    assert [c for c in _code_points() if c.casefold() != c.lower().casefold()] == []


def test_only_these_ascii_letters_come_from_special_foldings():
    special = [c for c in _code_points() if c.casefold() != c.lower()]
    produced = {ch for c in special for ch in c.casefold() if ch.isascii()}
    assert produced == set("afhijlnstwy")


@settings(max_examples=300, derandomize=True)
@given(
    needle=st.text(alphabet="bcdegkmopqruvxzBCDEGKMOPQRUVXZ0123 -", max_size=4),
    hay=st.text(alphabet="bBcCdeEgkmoOpPqrRuUvxzZ 0ßſﬁΣσςİKµẞǰᏸ", max_size=8),
)
def test_safe_operands_match_the_same_under_lower_and_casefold(needle, hay):
    assert (needle.lower() in hay.lower()) == (needle.casefold() in hay.casefold())
    assert translate_filters(
        MetadataFilters(filters=[MetadataFilter(key="k", value=needle, operator="text_match_insensitive")])
    ).exact


def test_a_key_the_store_cannot_address_is_refused():
    for key in ('a"b', "a\\b", "tab\there", "", "$or"):
        with pytest.raises(UnsupportedFilterError):
            translate_filters(MetadataFilters(filters=[MetadataFilter(key=key, value=1)]))


def test_unknown_operator_or_condition_is_refused():
    bad_op = MetadataFilter.model_construct(key="k", value=1, operator="regex")
    with pytest.raises(UnsupportedFilterError):
        translate_filters(MetadataFilters.model_construct(filters=[bad_op], condition=FilterCondition.AND))
    good = MetadataFilter(key="k", value=1)
    with pytest.raises(UnsupportedFilterError):
        translate_filters(MetadataFilters.model_construct(filters=[good], condition="xor"))
    with pytest.raises(UnsupportedFilterError):
        translate_filters(MetadataFilters.model_construct(filters=[{"key": "k", "value": 1}], condition="and"))
    with pytest.raises(UnsupportedFilterError):
        translate_filters({"k": 1})


def test_operands_the_store_cannot_hold_are_refused():
    for value in (float("nan"), float("inf"), 2**70, "a\x00b"):
        with pytest.raises(UnsupportedFilterError):
            translate_filters(MetadataFilters(filters=[MetadataFilter.model_construct(key="k", value=value, operator="==")]))


# --- MMR: LlamaIndex's algorithm over the same candidates -----------------------------------------------


# (threshold 0 makes every first-pick score 0: the pick then depends on candidate order, which is
# insertion order in SimpleVectorStore and score order here; not a meaningful difference)
@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.7, 1.0])
def test_mmr_matches_simple_vector_store(stores, threshold):
    ours, _ann, simple = stores
    for seed, filters in ((5, None), (6, MetadataFilters(filters=[LEAVES[0], LEAVES[2]], condition="or"))):
        query = VectorStoreQuery(
            query_embedding=query_vector(seed), similarity_top_k=6, filters=filters, mode="mmr", mmr_threshold=threshold
        )
        want = simple.query(query, mmr_threshold=threshold).ids  # SimpleVectorStore reads the kwarg only
        # every candidate fetched (as SimpleVectorStore scores all), the threshold from the query field
        assert ours.query(query, mmr_prefetch_k=N_NODES).ids == want
        # the kwarg works too, and a small prefetch still returns k diverse nodes
        assert ours.query(dataclasses.replace(query, mmr_threshold=None), mmr_threshold=threshold, mmr_prefetch_k=N_NODES).ids == want
        assert len(ours.query(query).ids) == 6
