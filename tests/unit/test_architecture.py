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
    proc = subprocess.run([lint, "--no-cache", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True)
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


# --- no module reaches into a store object's private parts ---------------------------------------------
# The store's own package may use ``store._s`` and friends; everything above it (bench, CLI, index,
# integrations) goes through public names (``MRLStore.stats``, ``MRLStore.diagnostics``, ...). The
# scan: an attribute ``X._name`` (``X`` not ``self``/``cls``/``super()``) or ``getattr(X, "_name")``
# where ``_name`` is a private name the store package defines (a ``def _name``, or an assignment to
# ``something._name``) and the accessing package does not define itself; and ``from ...store... import
# _name``. So ``self._x`` and a package's use of its own objects' privates are never flagged.

STORE = ROOT / "mrl_retrievers" / "store"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _defined_privates(files) -> set[str]:
    names: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_private(node.name):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _is_private(node.attr):
                names.add(node.attr)
    return names


def _private_store_accesses(source: str, store_privates: set[str], own_privates: set[str] = frozenset()) -> list[str]:
    """``line: expression`` of every access to a store object's private name in ``source``."""
    found = []
    watched = store_privates - own_privates
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in watched:
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                continue
            found.append((node.lineno, ast.unparse(node)))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "setattr", "hasattr")
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value in watched):
            found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.ImportFrom) and "store" in (node.module or "").split("."):
            found += [(node.lineno, f"from {node.module} import {a.name}") for a in node.names if _is_private(a.name)]
    return [f"{line}: {text}" for line, text in sorted(found)]


def _outside_modules():
    """(own package's files, module) for every module outside ``mrl_retrievers/store``: a module of a
    subpackage owns its subpackage's names; a top-level module only its own."""
    for path in sorted((ROOT / "mrl_retrievers").rglob("*.py")):
        if STORE in path.parents:
            continue
        package = path.parent
        yield (list(package.rglob("*.py")) if package != ROOT / "mrl_retrievers" else [path]), path
    for dist in sorted((ROOT / "integrations").iterdir()):
        files = sorted(dist.rglob("*.py"))
        for path in files:
            yield files, path


def test_nothing_outside_the_store_reaches_into_its_private_parts():
    store_privates = _defined_privates(STORE.rglob("*.py"))
    offences = []
    for own, path in _outside_modules():
        for hit in _private_store_accesses(path.read_text(), store_privates, _defined_privates(own)):
            offences.append(f"{path.relative_to(ROOT)}:{hit}")
    assert not offences, "private store parts used outside mrl_retrievers/store:\n" + "\n".join(offences)


def test_the_private_access_rule_flags_what_it_should():
    privates = {"_s", "_rw", "_map", "_check_open", "_f16_scaled"}
    source = (
        "s = store._s.vectors\n"                      # 1: flagged
        "vf._map.madvise(1)\n"                        # 2: flagged
        "self.store._rw.read()\n"                     # 3: flagged (self.store is not self)
        "getattr(store, '_check_open')()\n"           # 4: flagged
        "from mrl_retrievers.store.local.vectors import _f16_scaled\n"  # 5: flagged
        "self._s = 1; cls._rw; super()._map\n"        # 6: not flagged (own object)
        "x._unrelated; x.public\n"                    # 7: not flagged (not a store name)
    )
    assert [hit.split(":")[0] for hit in _private_store_accesses(source, privates)] == ["1", "2", "3", "4", "5"]
    assert _private_store_accesses("vf._map\n", privates, own_privates={"_map"}) == []  # the package's own name
