"""Every README snippet runs as written, with the extras the README names for it (issue 14, trap 6).

The README names each snippet's extras in a ``pip install -e ".[...]"`` line before it, with the
integration distributions it needs on the same line (``-e integrations/langchain-mrl``). This file
extracts every ``python`` and ``bash`` block (a ``toml`` block is written to ``mrl.toml`` for the
snippet after it) and runs it in a fresh folder, in a subprocess, the way a reader pastes it:

* by default in this environment (which has every extra), so a README edit that breaks a snippet
  fails the suite;
* in the ``stress`` tier, each in a new virtual environment holding exactly the extras and
  integrations the README names (plus torch's CPU build when ``local`` is among them), which proves
  they are enough.

Hosted-provider snippets run against the loopback OpenAI emulator (``OPENAI_BASE_URL`` and
``OPENAI_API_KEY`` are what a reader's environment provides). The two commands under
``main-command`` / ``test-command`` are not run here: CI runs the test command, and the demo the
main command runs is tested in ``test_first_hour.py``. Blocks marked ``<!-- not-run: why -->`` are
skipped, with the reason in the README.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from mrl_retrievers.emulators import OpenAIServer
from tests.providers.servers.fixtures import KEY

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
INSTALL = re.compile(r'pip install -e "\.\[([a-z0-9,\-]+)\]"')
INTEGRATION = re.compile(r"-e (integrations/[a-z0-9\-]+)")
FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass
class Snippet:
    line: int
    lang: str
    code: str
    extras: tuple[str, ...]
    integrations: tuple[str, ...]  # the integration distributions' folders, installed beside the core
    config: str | None  # a toml block just before it: the mrl.toml it reads

    @property
    def name(self) -> str:
        return f"README:{self.line}:{self.lang}[{','.join(self.extras)}]"


def snippets(text: str = README.read_text()) -> list[Snippet]:
    found: list[Snippet] = []
    lines = text.splitlines()
    extras: tuple[str, ...] = ()
    integrations: tuple[str, ...] = ()
    config: str | None = None
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            installs = INSTALL.findall(lines[i])
            if installs:
                extras = tuple(installs[-1].split(","))
                integrations = tuple(INTEGRATION.findall(lines[i]))
            i += 1
            continue
        lang, start = match.group(1), i
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        code = "\n".join(lines[start + 1:end]) + "\n"
        marker = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        runnable = lang in ("python", "bash") and not marker.startswith(("<!-- main-command", "<!-- test-command",
                                                                           "<!-- not-run:"))
        if lang == "toml":
            config = code
        elif runnable:
            found.append(Snippet(start + 1, lang, code, extras, integrations, config))
            config = None
        i = end + 1
    return found


SNIPPETS = snippets()


def test_every_snippet_names_its_extras():
    # The framework integrations are their own distributions (issue 17): named beside the extras.
    assert [(s.lang, s.extras, s.integrations) for s in SNIPPETS] == [
        ("python", ("openai",), ("integrations/langchain-mrl",)),
        ("python", ("openai",), ("integrations/langchain-mrl",)),
        ("python", ("local",), ("integrations/llama-index-vector-stores-mrl", "integrations/llama-index-embeddings-mrl")),
        ("python", ("openai",), ()),
        ("bash", ("local",), ()),
    ]
    for snippet in SNIPPETS:  # what a snippet imports from an integration is what its line installs
        assert ("langchain_mrl" in snippet.code) == ("integrations/langchain-mrl" in snippet.integrations)
        for kind in ("vector_stores", "retrievers", "embeddings"):
            folder = f"integrations/llama-index-{kind.replace('_', '-')}-mrl"
            assert (f"llama_index.{kind}.mrl" in snippet.code) == (folder in snippet.integrations), (snippet.name, folder)
            assert (ROOT / folder / "pyproject.toml").is_file()
    assert SNIPPETS[3].config is not None and "mrl.toml" in SNIPPETS[3].code


def test_the_torch_line_works_on_any_linux_and_the_commands_stay_offline_here():
    text = README.read_text()
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in text
    for marker in ("<!-- main-command -->", "<!-- test-command -->"):  # CI and the lead run these here
        block = text.split(marker, 1)[1].split("```", 2)[1]
        assert block.startswith("bash\npip install torch==2.13.0 && pip install -e"), block
        assert "download.pytorch.org" not in block


def _workdir(tmp_path: Path, snippet: Snippet) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    if snippet.config is not None:
        (work / "mrl.toml").write_text(snippet.config)
    if snippet.lang == "bash":  # the reader's own files, which the commands index
        (work / "docs").mkdir()
        (work / "docs" / "guide.md").write_text("# Guide\n\nHow do I install it? Run pip install.\n\nHow do I query? "
                                                "Use mrl-retrievers query.")
        (work / "docs" / "faq.txt").write_text("Questions people ask about stores, prefixes and shortlists.")
        (work / "notes.jsonl").write_text('{"id": "n1", "text": "A note about coarse-to-fine search."}\n')
    return work


def _run(snippet: Snippet, work: Path, python: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    if snippet.lang == "python":
        (work / "snippet.py").write_text(snippet.code)
        args = [python, "snippet.py"]
    else:
        args = ["bash", "-e", "-o", "pipefail", "-c", snippet.code]
    return subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=1800)


def _environment(base: dict[str, str], server: OpenAIServer | None) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith(("MRL_", "OPENAI_", "GEMINI_", "GOOGLE_API", "VOYAGE_"))}
    env["HF_HUB_OFFLINE"] = "1"
    if server is not None:
        env.update(OPENAI_API_KEY=KEY, OPENAI_BASE_URL=server.base_url, NO_PROXY="127.0.0.1,localhost")
    return env


@pytest.mark.slow
@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda s: s.name)
def test_snippet_runs_as_written(tmp_path, snippet):
    """In this environment (it has every extra): the default suite's guard against README drift."""
    work = _workdir(tmp_path, snippet)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *(str(p) for p in sorted((ROOT / "integrations").iterdir()) if p.is_dir()), env.get("PYTHONPATH", "")])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    with OpenAIServer(api_key=KEY) as server:
        proc = _run(snippet, work, sys.executable, _environment(env, server if "openai" in snippet.extras else None))
    assert proc.returncode == 0, f"{snippet.name}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.mark.stress
@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda s: s.name)
def test_snippet_runs_in_a_venv_with_exactly_its_extras(tmp_path, snippet):
    """A new virtual environment per snippet, with only what the README tells the reader to install."""
    venv = tmp_path / "venv"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=600)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    if "local" in snippet.extras:  # the README's instruction: torch's CPU build first
        subprocess.run([*pip, "torch==2.13.0"], check=True, timeout=3600)
    integrations = [arg for folder in snippet.integrations for arg in ("-e", str(ROOT / folder))]
    subprocess.run([*pip, "-e", f"{ROOT}[{','.join(snippet.extras)}]", *integrations], check=True, timeout=3600)
    installed = time.perf_counter() - started
    work = _workdir(tmp_path, snippet)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    with OpenAIServer(api_key=KEY) as server:
        proc = _run(snippet, work, str(venv / "bin" / "python"), _environment(env, server if "openai" in snippet.extras else None))
    ran = time.perf_counter() - started - installed
    print(f"{snippet.name}: venv + install {installed:.0f}s, snippet {ran:.0f}s")
    assert proc.returncode == 0, f"{snippet.name}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
