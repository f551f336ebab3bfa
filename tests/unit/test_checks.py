"""The one integer check every layer uses (issue 17): same rule, same words, the caller's error type."""

from __future__ import annotations

import numpy as np
import pytest

from mrl_retrievers.checks import positive_int
from mrl_retrievers.config import EmbedderSettings, StoreSettings
from mrl_retrievers.errors import ConfigError, InvalidInputError, UnsupportedDimensionError
from mrl_retrievers.store.validation import check_create_args, check_k
from mrl_retrievers.types import EmbeddingSpec


@pytest.mark.parametrize("value", [True, False, 1.0, "3", None, 0, -2, np.float32(2)])
def test_refuses_non_integers_bools_and_too_small(value):
    with pytest.raises(InvalidInputError, match=r"^k must be a positive integer, got "):
        positive_int("k", value)


def test_takes_numpy_integers_and_returns_plain_int():
    got = positive_int("k", np.int64(7))
    assert got == 7 and type(got) is int


@pytest.mark.parametrize(("kwargs", "wanted"), [
    ({"minimum": 0}, "a non-negative integer"),
    ({"minimum": 4}, "an integer >= 4"),
    ({"maximum": 8}, "an integer in 1..8"),
])
def test_message_names_the_range(kwargs, wanted):
    with pytest.raises(InvalidInputError, match=f"^n must be {wanted}, got -1$"):
        positive_int("n", -1, **kwargs)
    assert positive_int("n", 4, **kwargs) == 4


def test_error_type_is_the_callers():
    with pytest.raises(ConfigError):
        positive_int("dim", 0, error=ConfigError)
    with pytest.raises(UnsupportedDimensionError) as caught:
        positive_int("dim", 9, maximum=8, error=lambda m: UnsupportedDimensionError(m, provider="p", model="m"))
    assert caught.value.provider == "p"


def test_sites_keep_their_error_types():
    with pytest.raises(ConfigError, match=r"\[store\] shortlist must be a positive integer"):
        StoreSettings(shortlist=0)
    with pytest.raises(ConfigError, match=r"\[embedder\] max_retries must be a non-negative integer"):
        EmbedderSettings(max_retries=-1)
    with pytest.raises(ConfigError, match="EmbeddingSpec.dim must be a positive integer"):
        EmbeddingSpec(provider="fake", model="m", dim=True)
    with pytest.raises(InvalidInputError, match="k must be a positive integer"):
        check_k(0)


def test_numpy_values_are_stored_as_plain_ints():
    # settings, specs and create() settings end up in TOML/JSON: a numpy integer would not serialize
    assert type(StoreSettings(shortlist=np.int32(50)).shortlist) is int
    assert type(EmbeddingSpec(provider="fake", model="m", dim=np.int64(8)).dim) is int
    args = check_create_args(full_dim=8, prefix_dim=4, dtype="float32", spec=None, exact_below=np.int64(0),
                             shortlist=np.int64(20), ef=None, funnel_dim=None, M=None, ef_construction=None)
    assert type(args["shortlist"]) is int and type(args["exact_below"]) is int
