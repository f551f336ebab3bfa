"""Every cookbook notebook runs top to bottom on the offline default, as a reader would run it.

Each notebook is copied into a scratch directory and executed there with nbclient (its stores land
under that directory, never in the repository). The kernel is this interpreter, whatever kernelspecs
the machine has installed, and runs offline: ``HF_HUB_OFFLINE=1``, no provider keys, no ``MRL_*``
overrides. Any cell error fails the test with the cell's traceback.

Notebook 3's hosted-provider cells are also run once with keys set, against the loopback emulators
of the OpenAI, Gemini and Voyage APIs, so the cells a reader runs with a real key are exercised too;
notebook 5's multimodal cells likewise against the Voyage, Gemini and Jina emulators.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    import nbformat
    from nbclient import NotebookClient
except ImportError:  # reported by the autouse fixture below, so the rest of the suite still collects
    nbformat = NotebookClient = None

pytestmark = pytest.mark.slow  # about three minutes in all: a kernel, a model and a sweep per notebook

ROOT = Path(__file__).resolve().parents[2]
COOKBOOK = ROOT / "cookbook"
NOTEBOOKS = sorted(COOKBOOK.glob("*.ipynb"))
KEY_VARS = ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "VOYAGE_API_KEY",
            "JINA_API_KEY", "JINAAI_API_KEY")
CELL_TIMEOUT = 300  # seconds; a whole notebook takes about a minute on a loaded 2-core machine


@pytest.fixture(autouse=True)
def _jupyter_installed() -> None:
    missing = [m for m in ("nbclient", "nbformat", "ipykernel", "matplotlib") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"the cookbook tests need {', '.join(missing)}: install the dev extras (pip install -e '.[dev]')")


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment the kernel inherits: offline, keyless, this interpreter, this checkout."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in list(os.environ):
        if var.startswith("MRL_") or var in KEY_VARS:  # MRL_* would override the notebooks' configs
            monkeypatch.delenv(var)
    # The kernel imports the package from this checkout even when it is not installed.
    paths = [str(ROOT), *(str(p) for p in sorted((ROOT / "integrations").iterdir()) if p.is_dir()), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    # A "python3" kernelspec that launches this interpreter, first on JUPYTER_PATH: it wins over a
    # user's or the system's "python3" (which may belong to another Python), and a fresh venv needs
    # no `ipykernel install`.
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (tests)",
        "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return tmp_path


def execute(notebook: Path, workdir: Path, inject: dict[int, str] | None = None) -> nbformat.NotebookNode:
    """Copy ``notebook`` into ``workdir`` and run it there; ``inject`` adds cells (index -> source)."""
    workdir.mkdir(parents=True, exist_ok=True)
    copy = Path(shutil.copy(notebook, workdir))
    nb = nbformat.read(copy, as_version=4)
    for index, source in sorted((inject or {}).items(), reverse=True):
        nb.cells.insert(index, nbformat.v4.new_code_cell(source))
    check = f"import os, sys\nassert os.path.realpath(sys.executable) == {os.path.realpath(sys.executable)!r}, sys.executable"
    nb.cells.insert(0, nbformat.v4.new_code_cell(check))
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()  # raises CellExecutionError (with the traceback) on the first failing cell
    return nb


def stdout(nb: nbformat.NotebookNode) -> str:
    return "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                   for out in cell.outputs if out.output_type == "stream" and out.name == "stdout")


def images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
               for out in cell.outputs)


def test_the_cookbook_has_its_notebooks() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_langchain_quickstart.ipynb",
        "02_llamaindex_quickstart.ipynb",
        "03_swap_providers.ipynb",
        "04_prefix_and_shortlist.ipynb",
        "05_multimodal.ipynb",
    ]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_offline(notebook: Path, kernel_env: Path) -> None:
    before = sorted(p.name for p in COOKBOOK.iterdir())
    workdir = kernel_env / "work"

    nb = execute(notebook, workdir)

    assert sorted(p.name for p in COOKBOOK.iterdir()) == before, "a notebook wrote into the repository"
    assert (workdir / "mrl-data").is_dir(), "the notebook's stores belong under its working directory"
    text = stdout(nb)
    if notebook.stem.startswith("03"):
        for var in ("OPENAI_API_KEY", "GEMINI_API_KEY or GOOGLE_API_KEY", "VOYAGE_API_KEY"):
            assert f"skipped: set {var} to run" in text
        # the spec guard: another model of the same width, then another width, at the local store
        assert "fake: SpecMismatchError: store mrl-data/03-swap/index" in text
        assert "fake-256: ConfigError: store mrl-data/03-swap/index" in text
    if notebook.stem.startswith("04"):
        assert images(nb) >= 2, "notebook 4 must draw its recall and latency plots"
    if notebook.stem.startswith("05"):
        for var in ("VOYAGE_API_KEY", "GEMINI_API_KEY or GOOGLE_API_KEY", "JINA_API_KEY"):
            assert f"skipped: set {var} to run" in text
        assert "monthly rainfall in Lisbon\n    -> [('rainfall'" in text  # text -> image, offline
        assert "same as the exact scan: True" in text and "ImageNode mrl-data/05-multimodal/charts/exam.png" in text
        assert images(nb) >= 2, "notebook 5 shows its charts and the image a text query found"


@pytest.fixture
def emulators() -> Iterator[dict[str, str]]:
    """Loopback OpenAI, Gemini and Voyage APIs: provider name -> base URL."""
    from mrl_retrievers.emulators import GeminiServer, OpenAIServer, VoyageServer

    servers = {"openai": OpenAIServer(api_key="k"), "gemini": GeminiServer(api_key="k"), "voyage": VoyageServer(api_key="k")}
    for server in servers.values():
        server.start()
    try:
        yield {name: server.base_url for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.stop()


def test_swap_providers_runs_its_hosted_cells_when_keys_are_set(kernel_env: Path, emulators: dict[str, str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "GEMINI_API_KEY", "VOYAGE_API_KEY"):
        monkeypatch.setenv(var, "k")
    notebook = COOKBOOK / "03_swap_providers.ipynb"
    cells = nbformat.read(notebook, as_version=4).cells
    after_configs = next(i for i, c in enumerate(cells) if "CONFIGS[name].write_text" in c.source) + 1
    # What a reader with a proxy would write in the [embedder] block: base_url = "...".
    point_at_emulators = (
        f"for name, url in {emulators!r}.items():\n"
        "    CONFIGS[name].write_text(CONFIGS[name].read_text().replace('[embedder]\\n', f'[embedder]\\nbase_url = \"{url}\"\\n', 1))"
    )

    nb = execute(notebook, kernel_env / "work", inject={after_configs: point_at_emulators})

    text = stdout(nb)
    assert "skipped" not in text
    for line in ("openai/text-embedding-3-large: 1024 dims, store mrl-data/03-swap/openai-index",
                 "gemini/gemini-embedding-001: 768 dims, store mrl-data/03-swap/gemini-index",
                 "voyage/voyage-3.5: 1024 dims, store mrl-data/03-swap/voyage-index"):
        assert line in text


def test_multimodal_runs_its_hosted_cells_when_keys_are_set(kernel_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mrl_retrievers.emulators import GeminiServer, JinaServer, VoyageServer

    servers = {"voyage": VoyageServer(api_key="k"), "gemini": GeminiServer(api_key="k"), "jina": JinaServer(api_key="k")}
    for var in ("VOYAGE_API_KEY", "GEMINI_API_KEY", "JINA_API_KEY"):
        monkeypatch.setenv(var, "k")
    notebook = COOKBOOK / "05_multimodal.ipynb"
    cells = nbformat.read(notebook, as_version=4).cells
    after_configs = next(i for i, c in enumerate(cells) if "CONFIGS[name].write_text" in c.source) + 1
    for server in servers.values():
        server.start()
    try:
        urls = {name: server.base_url for name, server in servers.items()}
        point_at_emulators = (
            f"for name, url in {urls!r}.items():\n"
            "    CONFIGS[name].write_text(CONFIGS[name].read_text().replace('[embedder]\\n', f'[embedder]\\nbase_url = \"{url}\"\\n', 1))"
        )
        nb = execute(notebook, kernel_env / "work", inject={after_configs: point_at_emulators})
        received = {name: len(server.requests) for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.stop()

    text = stdout(nb)
    assert "skipped" not in text
    for line in ("voyage/voyage-multimodal-3.5: 512 dims, modalities ('image', 'text')",
                 "gemini/gemini-embedding-2: 768 dims, modalities ('image', 'text')",
                 "jina/jina-embeddings-v4: 512 dims, modalities ('image', 'text')"):
        assert line in text
    assert all(count >= 3 for count in received.values()), received  # the images, then two queries
