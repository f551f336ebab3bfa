"""The runnable examples in the integrations' docstrings stay runnable (and the shared LazyStore's)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "mrl_retrievers.store.lazy",
    "langchain_mrl._filters",
    "langchain_mrl.embeddings",
    "langchain_mrl._images",
    "langchain_mrl.retrievers",
    "langchain_mrl.vectorstores",
    "llama_index.vector_stores.mrl",
    "llama_index.vector_stores.mrl.base",
    "llama_index.vector_stores.mrl.filters",
    "llama_index.vector_stores.mrl.images",
    "llama_index.embeddings.mrl",
    "llama_index.embeddings.mrl.base",
    "llama_index.retrievers.mrl.base",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
