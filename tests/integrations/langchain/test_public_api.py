"""The public surface of langchain_mrl is pinned, and it is built on the public API of mrl_retrievers."""

from __future__ import annotations

import ast
from pathlib import Path

import langchain_mrl
import mrl_retrievers

PACKAGE = Path(langchain_mrl.__file__).parent
# What the integration may import from the core: exported names, plus these plain modules.
ALLOWED_MODULES = {"mrl_retrievers.errors", "mrl_retrievers.checks", "mrl_retrievers.json_values", "mrl_retrievers.config",
                   "mrl_retrievers.types", "mrl_retrievers.media"}
ALLOWED_FROM = {"mrl_retrievers.providers": {"from_config"}, "mrl_retrievers.store": {"LazyStore"}}


def test_all_is_pinned() -> None:
    assert sorted(langchain_mrl.__all__) == ["MRLEmbeddings", "MRLRetriever", "MRLTranslator", "MRLVectorStore"]
    for name in langchain_mrl.__all__:
        assert getattr(langchain_mrl, name).__module__.startswith("langchain_mrl.")


def test_only_the_public_api_of_mrl_retrievers_is_used() -> None:
    for source in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("mrl_retrievers") for a in node.names), f"{source.name}: import {node.names}"
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mrl_retrievers"):
                names = {a.name for a in node.names}
                if node.module == "mrl_retrievers":
                    assert names <= set(mrl_retrievers.__all__), f"{source.name}: {names - set(mrl_retrievers.__all__)}"
                elif node.module in ALLOWED_FROM:
                    assert names <= ALLOWED_FROM[node.module], f"{source.name}: {node.module} {names}"
                else:
                    assert node.module in ALLOWED_MODULES, f"{source.name}: from {node.module} import ..."


def test_modules_stay_small() -> None:
    for source in PACKAGE.glob("*.py"):
        assert len(source.read_text().splitlines()) <= 400, source.name
