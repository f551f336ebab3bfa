"""The five distributions as a user gets them (issue 17): wheels built from the tree, installed in a
fresh virtual environment, used from a folder outside the repository.

Built once per module: ``pip wheel --no-deps`` of the core (``.``) and of the four integrations
under ``integrations/`` (hatchling, in pip's isolated build environment), then ``python -m venv``
(no system site packages) and ``pip install`` of the five wheels; pip fetches their dependencies
(numpy, hnswlib, tqdm, langchain-core, llama-index-core) from its index or cache. Nothing of the
source tree is on that environment's path: no PYTHONPATH, and every command runs in a folder outside
the repository, so an import that works there works from the wheels alone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # setup: ~40 s idle, ~2 min on a busy 2-core box

ROOT = Path(__file__).resolve().parents[2]
# distribution -> (source folder, top-level files its wheel may hold, the module users import)
DISTRIBUTIONS = {
    "mrl-retrievers": (ROOT, "mrl_retrievers/", "mrl_retrievers"),
    "langchain-mrl": (ROOT / "integrations" / "langchain-mrl", "langchain_mrl/", "langchain_mrl"),
    "llama-index-vector-stores-mrl": (ROOT / "integrations" / "llama-index-vector-stores-mrl",
                                      "llama_index/vector_stores/mrl/", "llama_index.vector_stores.mrl"),
    "llama-index-retrievers-mrl": (ROOT / "integrations" / "llama-index-retrievers-mrl",
                                   "llama_index/retrievers/mrl/", "llama_index.retrievers.mrl"),
    "llama-index-embeddings-mrl": (ROOT / "integrations" / "llama-index-embeddings-mrl",
                                   "llama_index/embeddings/mrl/", "llama_index.embeddings.mrl"),
}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _clean_env() -> dict[str, str]:
    """This process's environment without anything that would put the tree or our venv on the path."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONUSERBASE")}


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(wheels by distribution, the venv's python, a working folder outside the repository)."""
    base = tmp_path_factory.mktemp("wheels")
    assert ROOT not in base.parents, f"the temporary folder {base} lies inside the repository"
    wheel_dir = base / "dist"
    env = _clean_env()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-w", str(wheel_dir),
          *(str(source) for source, _, _ in DISTRIBUTIONS.values())], cwd=base, env=env, timeout=600)
    wheels = {}
    for path in wheel_dir.glob("*.whl"):
        with zipfile.ZipFile(path) as whl:
            metadata = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
            name = re.search(r"^Name: (.+)$", whl.read(metadata).decode(), re.M).group(1).strip()
        wheels[_normalize(name)] = path
    assert sorted(wheels) == sorted(DISTRIBUTIONS), sorted(wheels)

    env_dir = base / "venv"
    _run([sys.executable, "-m", "venv", str(env_dir)], cwd=base, env=env, timeout=600)  # no system site packages
    python = env_dir / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
          *(str(w) for w in wheels.values())], cwd=base, env=env, timeout=900)
    work = base / "elsewhere"
    work.mkdir()
    return wheels, python, work


def _venv_run(built, code: str) -> subprocess.CompletedProcess:
    _, python, work = built
    env = _clean_env()
    env["PATH"] = os.pathsep.join([str(python.parent), env.get("PATH", "")])
    return subprocess.run([str(python), "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=300)


def test_the_venv_is_fresh_and_outside_the_repository(built):
    _, python, work = built
    proc = _venv_run(built, "import json, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.path]))")
    assert proc.returncode == 0, proc.stderr
    prefix, base_prefix, path = json.loads(proc.stdout)
    assert Path(prefix) == python.parent.parent and prefix != base_prefix
    assert not any(Path(p or work).resolve() == ROOT or ROOT in Path(p or work).resolve().parents for p in path), path
    assert not any(p.endswith("site-packages") and not p.startswith(prefix) for p in path), path  # no system site


def test_every_package_imports_from_the_venv_and_is_typed(built):
    _, python, _ = built
    modules = [module for _, _, module in DISTRIBUTIONS.values()]
    code = ("import importlib, json, pathlib\n"
            f"out = {{}}\nfor name in {modules!r}:\n"
            "    m = importlib.import_module(name)\n"
            "    folder = pathlib.Path(m.__file__).resolve().parent\n"
            "    out[name] = [str(folder), (folder / 'py.typed').is_file()]\n"
            "print(json.dumps(out))")
    proc = _venv_run(built, code)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    site = python.parent.parent.resolve()
    for name, (folder, typed) in found.items():
        assert site in Path(folder).parents, f"{name} imported from {folder}, not from the venv {site}"
        assert typed, f"{name}: no py.typed in {folder}"
    assert sorted(found) == sorted(modules)


def test_the_llama_index_namespace_is_shared_with_llama_index_core(built):
    proc = _venv_run(built, "import llama_index, llama_index.core, llama_index.vector_stores\n"
                            "print(getattr(llama_index, '__file__', None), llama_index.core.__name__,"
                            " getattr(llama_index.vector_stores, '__file__', None))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["None", "llama_index.core", "None"]  # namespace packages: no __init__.py


def test_the_tests_folder_is_not_importable(built):
    proc = _venv_run(built, "import tests")
    assert proc.returncode != 0 and "ModuleNotFoundError: No module named 'tests'" in proc.stderr, (proc.stdout,
                                                                                                   proc.stderr)


def test_the_integrations_work_from_the_wheels_alone(built, tmp_path):
    """A smoke run of each framework object on the fake provider, in a store under tmp_path."""
    code = f"""
from langchain_mrl import MRLEmbeddings, MRLVectorStore
lc = MRLVectorStore(MRLEmbeddings("fake", dim=16), {str(tmp_path / "lc")!r}, prefix_dim=8)
lc.add_texts(["alpha", "beta"], ids=["a", "b"])
assert [d.id for d in lc.similarity_search("alpha", k=1)] == ["a"]
lc.close()
from llama_index.core.schema import TextNode
from llama_index.embeddings.mrl import MRLEmbedding
from llama_index.retrievers.mrl import MRLRetriever
from llama_index.vector_stores.mrl import MRLVectorStore as LIStore
embedding = MRLEmbedding("fake", dim=16)
store = LIStore({str(tmp_path / "li")!r})
store.add([TextNode(text=t, id_=t, embedding=embedding.get_text_embedding(t)) for t in ("alpha", "beta")])
hits = MRLRetriever(store, embedding, similarity_top_k=1).retrieve("alpha")
assert [h.node.node_id for h in hits] == ["alpha"], hits
store.close()
print("ok")
"""
    proc = _venv_run(built, code)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.stdout, proc.stderr)


@pytest.mark.parametrize("args", [["-m", "mrl_retrievers.bench", "--help"],
                                  ["-m", "mrl_retrievers.bench", "bench", "--help"],
                                  ["mrl-retrievers", "bench", "--help"],
                                  ["mrl-retrievers", "--help"]], ids=" ".join)
def test_the_commands_help_without_the_bench_extra(built, args):
    _, python, work = built
    absent = _venv_run(built, "import importlib.util as u; print([m for m in ('faiss', 'matplotlib', 'psutil') "
                              "if u.find_spec(m)])")
    assert absent.stdout.strip() == "[]", "the venv should hold the core's dependencies only"
    command = [str(python), *args] if args[0] == "-m" else [str(python.parent / args[0]), *args[1:]]
    env = _clean_env()
    proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:"), proc.stdout[:500]


def _wheel_files(path: Path) -> list[str]:
    """Every file of the wheel but its .dist-info folder."""
    with zipfile.ZipFile(path) as whl:
        return [n for n in whl.namelist() if not n.split("/", 1)[0].endswith(".dist-info")]


def _dist_info(path: Path, name: str) -> str:
    with zipfile.ZipFile(path) as whl:
        return whl.read(next(n for n in whl.namelist() if n.endswith(f".dist-info/{name}"))).decode()


def _requires(path: Path) -> dict[str, str]:
    """Requirement name -> its marker ('' when unconditional), from the wheel's METADATA."""
    found = {}
    for line in re.findall(r"^Requires-Dist: (.+)$", _dist_info(path, "METADATA"), re.M):
        name = _normalize(re.match(r"[A-Za-z0-9._-]+", line).group(0))
        marker = line.split(";", 1)[1].strip() if ";" in line else ""
        found[name] = marker if name not in found or found[name] else ""
    return found


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_each_wheel_holds_its_own_package_only(built, distribution):
    wheels, _, _ = built
    _, prefix, _ = DISTRIBUTIONS[distribution]
    files = _wheel_files(wheels[distribution])
    assert files and all(f.startswith(prefix) for f in files), [f for f in files if not f.startswith(prefix)]
    assert f"{prefix}py.typed" in files and f"{prefix}__init__.py" in files
    assert not any(part == "tests" for f in files for part in f.split("/")), files
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)
    if distribution == "mrl-retrievers":
        assert not any(f.startswith(("langchain_mrl/", "llama_index/", "integrations/")) for f in files)
    if prefix.startswith("llama_index/"):  # the namespace folders stay without __init__.py
        assert "llama_index/__init__.py" not in files and f"{prefix.rsplit('/mrl/', 1)[0]}/__init__.py" not in files


@pytest.mark.parametrize("distribution", sorted(set(DISTRIBUTIONS) - {"mrl-retrievers"}))
def test_each_integration_requires_the_core_and_its_framework(built, distribution):
    wheels, _, _ = built
    requires = _requires(wheels[distribution])
    assert requires.get("mrl-retrievers") == "", requires
    framework = "langchain-core" if distribution == "langchain-mrl" else "llama-index-core"
    assert requires.get(framework) == "", requires
    if distribution == "llama-index-retrievers-mrl":
        assert requires.get("llama-index-embeddings-mrl") == "" and requires.get("llama-index-vector-stores-mrl") == ""


def test_the_core_wheel_needs_no_framework(built):
    wheels, _, _ = built
    requires = _requires(wheels["mrl-retrievers"])
    assert {"numpy", "hnswlib", "tqdm"} <= {n for n, marker in requires.items() if not marker}, requires
    unconditional = {n for n, marker in requires.items() if not marker or "extra ==" not in marker}
    assert not any(n.startswith(("langchain", "llama-index")) for n in unconditional), requires
    assert not any(n.endswith("-mrl") for n in requires), requires  # no integration pulled in by the core
    scripts = _dist_info(wheels["mrl-retrievers"], "entry_points.txt")
    assert re.search(r"^mrl-retrievers = mrl_retrievers\.cli:main$", scripts, re.M), scripts


def test_the_core_wheel_carries_the_compiled_kernel_and_graph(built):
    """hatch_build.py compiles the search's scoring kernel and the coarse index's graph into the wheel
    (a platform wheel), and the installed package uses them (not the numpy twin and the hnswlib
    package kept for machines without a compiler)."""
    wheels, _, _ = built
    files = _wheel_files(wheels["mrl-retrievers"])
    for stem in ("_kernel", "_graph"):
        assert any(re.fullmatch(rf"mrl_retrievers/store/local/{stem}\.[^/]+\.so", f) for f in files), files
    assert "Root-Is-Purelib: false" in _dist_info(wheels["mrl-retrievers"], "WHEEL")
    proc = _venv_run(built, "from mrl_retrievers.store.local import ann, kernel; print(kernel.describe()); print(ann.describe())")
    assert proc.returncode == 0, proc.stderr
    scoring, graph = proc.stdout.splitlines()
    assert scoring.startswith("compiled kernel") and graph.startswith("compiled graph"), proc.stdout
