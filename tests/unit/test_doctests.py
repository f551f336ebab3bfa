"""The runnable examples in public docstrings stay runnable."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "mrl_retrievers.checks",
    "mrl_retrievers.json_values",
    "mrl_retrievers.config",
    "mrl_retrievers.types",
    "mrl_retrievers.mrl",
    "mrl_retrievers.index",
    "mrl_retrievers.store.local",
    "mrl_retrievers.providers",
    "mrl_retrievers.providers.cached",
    "mrl_retrievers.providers.rotation",
    "mrl_retrievers.store.qdrant",
    "mrl_retrievers.store.migrate",
    "mrl_retrievers.media",
    "mrl_retrievers._imageinfo",
    "mrl_retrievers.providers.multimodal",
    "mrl_retrievers.providers.voyage_multimodal",
    "mrl_retrievers.providers.jina",
    "mrl_retrievers.providers.fake",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
