"""Metadata: what is accepted, what is rejected (with the key path named), and the canonical text."""

from __future__ import annotations

import datetime
import decimal
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mrl_retrievers.errors import InvalidInputError, InvalidMetadataError
from mrl_retrievers.metadata import (
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    dump_metadata,
    load_metadata,
    validate_metadatas,
)


def nested(depth: int, container: str = "dict"):
    """A value with ``depth`` nested containers, the outermost being a dict (the metadata itself)."""
    value: object = {} if container == "dict" else []
    for _ in range(depth - 2):
        value = {"a": value} if container == "dict" else [value]
    return {"a": value}


# --- accepted ------------------------------------------------------------------------------------

ACCEPTED = [
    (None, "{}"),
    ({}, "{}"),
    ({"b": 1, "a": 2}, '{"a":2,"b":1}'),  # sorted keys, no spaces
    ({"é": "ü", "日本": "語"}, '{"é":"ü","日本":"語"}'),  # UTF-8 kept raw (JSON paths need it)
    ({"t": (1, "x")}, '{"t":[1,"x"]}'),  # tuples are lists
    ({"n": {"m": [{"o": None}]}}, '{"n":{"m":[{"o":null}]}}'),  # nested objects are fine
    ({"i": 2**63 - 1, "j": -(2**63)}, '{"i":9223372036854775807,"j":-9223372036854775808}'),
    ({"f": 1.0, "g": -0.0, "h": 1e300, "k": 5e-324}, '{"f":1.0,"g":-0.0,"h":1e+300,"k":5e-324}'),
    ({"b": True, "s": "", "l": []}, '{"b":true,"l":[],"s":""}'),
    ({"np": np.int64(7), "f32": np.float32(0.5), "flag": np.bool_(True), "s": np.str_("x")},
     '{"f32":0.5,"flag":true,"np":7,"s":"x"}'),  # fmt: skip
    ({"zero_d": np.array(3)}, '{"zero_d":3}'),
    ({"ctl": "a\nb\u2028"}, '{"ctl":"a\\nb\u2028"}'),
    ({"a'); DROP TABLE docs;--": 1}, '{"a\'); DROP TABLE docs;--":1}'),
]


@pytest.mark.parametrize(("md", "text"), ACCEPTED, ids=[repr(md)[:40] for md, _ in ACCEPTED])
def test_accepted_metadata_and_its_canonical_text(md, text):
    assert dump_metadata(md) == text
    assert load_metadata(text) == json.loads(text)


def test_numpy_values_are_converted_to_plain_python():
    loaded = load_metadata(dump_metadata({"i": np.int32(3), "l": [np.float64(2.5)]}))
    assert loaded == {"i": 3, "l": [2.5]} and type(loaded["i"]) is int


def test_depth_limit_is_inclusive():
    for container in ("dict", "list"):
        dump_metadata(nested(MAX_METADATA_DEPTH, container))
        with pytest.raises(InvalidMetadataError, match="deeper"):
            dump_metadata(nested(MAX_METADATA_DEPTH + 1, container))


def test_size_limit_is_inclusive():
    overhead = len('{"k":""}')
    assert len(dump_metadata({"k": "x" * (MAX_METADATA_BYTES - overhead)}).encode()) == MAX_METADATA_BYTES
    with pytest.raises(InvalidMetadataError, match="1,048,577 bytes"):
        dump_metadata({"k": "x" * (MAX_METADATA_BYTES - overhead + 1)})
    with pytest.raises(InvalidMetadataError, match="bytes"):  # many small values add up too
        dump_metadata({str(i): "y" * 1000 for i in range(1100)})
    with pytest.raises(InvalidMetadataError, match="bytes"):  # multi-byte characters count as bytes
        dump_metadata({"k": "é" * (MAX_METADATA_BYTES // 2)})


TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"))
KEYS = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=4)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(md=st.dictionaries(KEYS, JSONISH, max_size=4))
def test_dump_then_load_round_trips_and_is_canonical(md):
    text = dump_metadata(md)
    assert load_metadata(text) == md
    assert dump_metadata(load_metadata(text)) == text
    assert text == json.dumps(md, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --- rejected ------------------------------------------------------------------------------------


class Opaque:
    pass


loop: list = []
loop.append(loop)

REJECTED = [
    ({"b": b"bytes"}, "metadata['b']: bytes"),
    ({"b": bytearray(b"x")}, "bytearray"),
    ({"s": {1, 2}}, "metadata['s']: set"),
    ({"s": frozenset()}, "frozenset"),
    ({"f": math.nan}, "NaN"),
    ({"f": math.inf}, "inf"),
    ({"f": -math.inf}, "inf"),
    ({"f": np.float64("nan")}, "nan"),
    ({"i": 2**63}, "64-bit"),
    ({"i": -(2**63) - 1}, "64-bit"),
    ({1: "x"}, "key 1 is a int"),
    ({"a": [{"b": {2: "x"}}]}, "metadata['a'][0]['b']: key 2 is a int"),  # the path to the bad key
    ({None: 1}, "key None"),
    ({("t",): 1}, "tuple"),
    ({True: 1}, "bool"),
    ({"s": "\ud800"}, "not valid Unicode"),
    ({"\udfff": 1}, "not valid Unicode"),
    ({"s": "a\x00b"}, "U+0000"),
    ({"o": Opaque()}, "Opaque is not a JSON type"),
    ({"d": datetime.date(2024, 1, 1)}, "date"),
    ({"d": decimal.Decimal("1.5")}, "Decimal"),
    ({"c": 1j}, "complex"),
    ({"a": np.array([1, 2])}, "ndarray"),
    ({"loop": loop}, "deeper"),
    ({"k": "x" * (MAX_METADATA_BYTES + 1)}, "exceeds MAX_METADATA_BYTES"),
    ([("a", 1)], "must be a dict"),
    ("{}", "must be a dict"),
    (1, "must be a dict"),
]


@pytest.mark.parametrize(("md", "message"), REJECTED, ids=[m for _, m in REJECTED])
def test_rejected_metadata_names_the_path_and_the_problem(md, message):
    with pytest.raises(InvalidMetadataError) as info:
        dump_metadata(md)
    assert message in str(info.value)
    assert isinstance(info.value, (InvalidInputError, ValueError))


def test_huge_string_is_refused_without_a_huge_message():
    with pytest.raises(InvalidMetadataError) as info:
        dump_metadata({"k": "x" * (4 * MAX_METADATA_BYTES)})
    assert len(str(info.value)) < 300


# --- batches -------------------------------------------------------------------------------------


def test_validate_metadatas_accepts_none_and_one_per_item():
    assert validate_metadatas(None, 3) == ["{}", "{}", "{}"]
    assert validate_metadatas([{"a": 1}, None], 2) == ['{"a":1}', "{}"]
    assert validate_metadatas(({"a": i} for i in range(2)), 2) == ['{"a":0}', '{"a":1}']
    assert validate_metadatas([], 0) == []


@pytest.mark.parametrize(
    ("metadatas", "n", "message"),
    [
        ([{"a": 1}], 2, "got 1 metadatas for 2 items"),
        ([{}, {}, {}], 2, "got 3 metadatas for 2 items"),
        ({"a": 1}, 1, "must be a list"),
        ("abc", 3, "must be a list"),
        (5, 1, "must be a list"),
        ([{"a": 1}, {"b": {"c": b"x"}}], 2, "metadatas[1]['b']['c']: bytes"),
        ([{}, {}, [1]], 3, "metadatas[2]: metadata must be a dict"),
    ],
)
def test_validate_metadatas_errors_name_the_item(metadatas, n, message):
    with pytest.raises(InvalidMetadataError) as info:
        validate_metadatas(metadatas, n)
    assert message in str(info.value)


# --- loading -------------------------------------------------------------------------------------


def test_load_metadata_of_nothing_is_empty():
    assert load_metadata(None) == {}
    assert load_metadata("{}") == {}


@pytest.mark.parametrize("text", ["", "{", "[1]", '"s"', "null", '{"a": NaN}', '{"a": Infinity}'])
def test_load_metadata_rejects_what_dump_never_writes(text):
    with pytest.raises(InvalidMetadataError):
        load_metadata(text)


# --- reserved keys (images: mrl_retrievers.media) -------------------------------------------------


def test_reserved_image_keys_are_accepted_in_their_shapes():
    from mrl_retrievers.metadata import dump_metadata

    one = {"mrl_modality": "image", "mrl_source": "charts/a.png", "mrl_media_type": "image/png", "n": 1}
    several = {"mrl_modality": "text+image", "mrl_source": ["a.png", "https://x.org/b.jpg"],
               "mrl_media_type": ["image/png", "image/jpeg"]}
    assert load_metadata(dump_metadata(one)) == one and load_metadata(dump_metadata(several)) == several
    assert load_metadata(dump_metadata({"mrl_modality": "text"})) == {"mrl_modality": "text"}


@pytest.mark.parametrize("md", [
    {"mrl_other": 1},
    {"mrl_modality": ["image"]},
    {"mrl_modality": "image", "mrl_source": 5},
    {"mrl_modality": "image", "mrl_source": ["a.png", ""]},
    {"mrl_modality": "image", "mrl_media_type": "png"},
    {"mrl_modality": "text", "mrl_media_type": "image/png"},
    {"mrl_media_type": "image/png"},
    {"mrl_modality": "image", "mrl_source": "x" * 5000},
])
def test_reserved_image_keys_of_the_wrong_shape_are_refused(md):
    from mrl_retrievers.metadata import dump_metadata

    with pytest.raises(InvalidMetadataError):
        dump_metadata(md)
