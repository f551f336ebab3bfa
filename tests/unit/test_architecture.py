"""The house keeps the shape it was drawn: layer contracts (import-linter) and the public API."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mrl_retrievers

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if lint is None:
        pytest.fail("import-linter is not installed (it is in the dev extra)")
    proc = subprocess.run([lint, str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_library_never_imports_an_integration():
    for path in (ROOT / "mrl_retrievers").rglob("*.py"):
        if "bench" in path.parts:
            continue  # the bench command may load integrations lazily, to measure them
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith(("langchain_mrl", "llama_index", "langchain")) for n in names), f"{path} imports {names}"


def test_public_api_is_pinned():
    assert sorted(mrl_retrievers.__all__) == sorted([
        "CorruptStoreError", "EmbeddingSpec", "Hit", "Image", "MRLError", "MRLIndex", "MRLStore", "Record", "Secret", "Settings",
        "StoreLockedError", "UnsupportedFilterError", "UnsupportedFormatError", "__version__", "get_provider", "load_config",
        "open_store", "Provider", "QdrantStore", "VectorStore",
    ])
    for name in mrl_retrievers.__all__:
        assert hasattr(mrl_retrievers, name)


def test_no_pickle_in_library_code():
    for path in (ROOT / "mrl_retrievers").rglob("*.py"):
        source = path.read_text()
        assert "import pickle" not in source and "pickle.load" not in source, path
