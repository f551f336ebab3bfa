"""Issue 14, "the first hour": each numbered trap a newcomer hit, typed as a user types it.

Every test runs the command line in a subprocess (the ``mrl-retrievers`` script next to this
interpreter when it is installed, else ``python -m mrl_retrievers.cli``) and checks exit code,
message and what is (or is not) left on disk. Trap 8 (LlamaIndex ``path``) is tested with the
integrations. The fake provider keeps these fast; the demo test (slow) uses the packaged model.
"""

from __future__ import annotations

import argparse
import fcntl
import gzip
import json
import os
import pty
import select
import shlex
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("mrl-retrievers")
FAKE = '[embedder]\nprovider = "fake"\ndim = 64\n\n[store]\npath = "{store}"\nprefix_dim = 16\n'
NO_KEYS = ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "VOYAGE_API_KEY")


def command() -> list[str]:
    return [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "mrl_retrievers.cli"]


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NO_KEYS and not k.startswith("MRL_")}
    # The checkout under test wins over an installed copy of the package.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *(str(p) for p in sorted((ROOT / "integrations").iterdir()) if p.is_dir()), env.get("PYTHONPATH", "")])
    env["HF_HUB_OFFLINE"] = "1"
    env.update(extra or {})
    return env


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> tuple[int, str, str]:
    proc = subprocess.run([*command(), *args], cwd=cwd, capture_output=True, text=True, env=environment(env),
                          timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def one_line_error(code: int, err: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("error: ") and err.count("\n") == 1, err


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "cats.md").write_text("Cats purr when they are content.\n\nCats sleep most of the day.")
    (folder / "dogs.txt").write_text("Dogs bark at strangers.\n\nDogs love long walks in the park.")
    return folder


@pytest.fixture
def configured(tmp_path: Path, docs: Path) -> Path:
    (tmp_path / "mrl.toml").write_text(FAKE.format(store="store"))
    return tmp_path


# --- trap 1: read commands never create; a failed index leaves nothing ---------------------------


def test_1_query_on_a_missing_store_fails_and_creates_nothing(configured):
    code, out, err = cli("query", "hello", "--store", "nonexistent-store", cwd=configured)
    one_line_error(code, err)
    assert "no store at nonexistent-store" in err and "mrl-retrievers index" in err
    assert not (configured / "nonexistent-store").exists()
    for args in (("info", "nonexistent-store"), ("reindex", "nonexistent-store", "--prefix-dim", "8"),
                 ("compact", "nonexistent-store"), ("tune", "nonexistent-store"), ("rebuild", "nonexistent-store")):
        code, _, err = cli(*args, cwd=configured)
        assert code == 2 and "Traceback" not in err, (args, err)
        assert not (configured / "nonexistent-store").exists(), args


def test_1_a_failed_index_leaves_nothing_behind(configured):
    code, _, err = cli("index", "/nonexistent", "--store", "x", cwd=configured)
    one_line_error(code, err)
    assert "no such file or folder: /nonexistent" in err and not (configured / "x").exists()
    # a provider that cannot start (no key): nothing either
    code, _, err = cli("index", "docs", "--store", "y", "--provider", "openai", cwd=configured)
    one_line_error(code, err)
    assert "OPENAI_API_KEY" in err and not (configured / "y").exists()
    # switching to a provider that works then just works: no store pinned to the failed one's width
    code, out, err = cli("index", "docs", "--store", "y", "--provider", "fake", cwd=configured)
    assert code == 0, err
    assert "created store y" in out


def test_1_verify_on_a_missing_path_says_no_store_with_exit_2(configured):
    code, out, err = cli("verify", "nowhere", cwd=configured)
    one_line_error(code, err)
    assert "no store at nowhere" in err and "rebuild" not in out + err


# --- trap 2: query is read-only and works beside a running index ---------------------------------


def test_2_query_works_while_index_is_running(configured, docs):
    assert cli("index", "docs", cwd=configured)[0] == 0
    for i in range(60):
        (docs / f"note{i}.txt").write_text(f"Note number {i} about birds that sing at dawn.")
    (configured / "slow.toml").write_text('[embedder]\nprovider = "fake"\ndim = 64\nbatch_size = 1\n[embedder.options]\ndelay = 0.5\n'
                    '[store]\npath = "store"\n')
    writer = subprocess.Popen([*command(), "index", "docs", "--config", "slow.toml", "-q"], cwd=configured,
                              env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_writer(configured / "store" / "lock", writer)
        code, out, err = cli("query", "which animal purrs", "-k", "1", "--json", cwd=configured)
        assert code == 0, err
        assert json.loads(out)[0]["id"] == f"{Path('docs') / 'cats.md'}#0"
        code, _, err = cli("info", "store", cwd=configured)
        assert code == 0, err
        code, _, err = cli("compact", "store", cwd=configured)  # a second writer: refused, with advice for the CLI
        one_line_error(code, err)
        assert "wait for it to finish" in err and "read_only=True" not in err
    finally:
        writer.kill()
        writer.wait()


def _wait_for_writer(lock: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        with lock.open("a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # the index process holds the writer lock
            fcntl.flock(fh, fcntl.LOCK_UN)
        time.sleep(0.1)
    raise AssertionError("the index process never took the writer lock")


# --- trap 3: a folder stays in sync; skipped files are counted; gzip is read ---------------------


def test_3_deleted_files_are_removed_and_no_longer_returned(configured, docs):
    assert cli("index", "docs", cwd=configured)[0] == 0
    (docs / "cats.md").unlink()
    code, out, err = cli("index", "docs", cwd=configured)
    assert code == 0, err
    assert "1 sources gone from the folder removed (1 chunks)" in out and "store holds 1" in out
    code, out, _ = cli("query", "cats purr", "-k", "5", "--json", cwd=configured)
    assert all("cats" not in hit["id"] for hit in json.loads(out))


def test_3_keep_missing_opts_out(configured, docs):
    assert cli("index", "docs", cwd=configured)[0] == 0
    (docs / "cats.md").unlink()
    code, out, err = cli("index", "docs", "--keep-missing", cwd=configured)
    assert code == 0 and "store holds 2" in out, out + err


def test_3_gzip_is_read_and_skipped_files_are_counted_by_reason(configured, tmp_path):
    folder = tmp_path / "bash-doc"  # like /usr/share/doc/bash: mostly .gz files without a text suffix
    folder.mkdir()
    for name in ("CHANGES.gz", "NEWS.gz", "README.Debian.gz"):
        with gzip.open(folder / name, "wt") as fh:
            fh.write(f"{name}: notes about the shell.\n\nMore notes about builtins and startup files.")
    (folder / "RBASH").write_text("The restricted shell.")
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (folder / "data.bin2").write_bytes(b"\x00\x01\x02" * 50)
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (folder / "empty.txt").write_text("")
    (folder / ".hidden").write_text("secret")
    code, out, err = cli("index", "bash-doc", cwd=configured)
    assert code == 0, err
    assert "indexed 4 files" in out
    assert "5 files skipped: " in out
    for part in ("1 binary format (.png 1)", "1 binary content", "1 not UTF-8 text", "1 empty", "1 hidden"):
        assert part in out, out
    code, out, _ = cli("query", "builtins and startup files", "-k", "1", "--json", cwd=configured)
    assert json.loads(out)[0]["id"].startswith(str(Path("bash-doc") / "CHANGES.gz"))


# --- trap 4: progress on a terminal; the demo (slow: the packaged model) ---------------------------


def in_terminal(args: list[str], cwd: Path, timeout: float = 300) -> str:
    """Run the CLI with stdout and stderr on a pseudo-terminal; everything it drew."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))  # rows, columns: a real terminal
    proc = subprocess.Popen([*command(), *args], cwd=cwd, env=environment(), stdin=slave,
                            stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the terminal closed: the process is done
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


def test_4_index_shows_a_progress_bar_on_a_terminal_only(configured, docs):
    for i in range(30):
        (docs / f"note{i}.txt").write_text(f"Note {i} about birds.")
    drawn = in_terminal(["index", "docs"], configured)
    assert "indexing:" in drawn and "/32" in drawn and "file/s" in drawn, drawn  # total, rate (and ETA)
    (docs / "more.txt").write_text("More birds.")
    assert "indexing:" not in in_terminal(["index", "docs", "--quiet"], configured)
    (docs / "again.txt").write_text("Even more birds.")
    code, out, err = cli("index", "docs", cwd=configured)  # not a terminal: no bar in logs or pipes
    assert code == 0 and "indexing:" not in out + err and "indexed" in out


# --- the demo (slow: the packaged model) -----------------------------------------------------------


@pytest.mark.slow
def test_4_demo_explains_itself_and_its_next_command_works_as_printed(tmp_path):
    pytest.importorskip("sentence_transformers")
    code, out, err = cli("demo", "--limit", "40", cwd=tmp_path, timeout=900)
    assert code == 0, err[-3000:]
    assert "about" in out and "passages/s per core" in out  # an honest estimate up front
    assert "Why exact search keeps up here" in out and "20,000" in out  # the trade-off, measured
    assert "full-width HNSW in RAM" in out and "1M x 1024" in out  # the footprint table
    assert "files: mrl-demo/store/" in out
    next_line = [line for line in out.splitlines() if line.startswith("next: ")]
    assert len(next_line) == 1
    args = shlex.split(next_line[0].removeprefix("next: "))
    assert args[0] == "mrl-retrievers"
    code, answer, err = cli(*args[1:], cwd=tmp_path, timeout=600)  # works as printed, no config
    assert code == 0, err
    assert answer.startswith("1. ") and "pydoc:" in answer


# --- trap 5: fail fast on provider mistakes -------------------------------------------------------


def test_5_local_provider_with_a_hosted_model_fails_at_once(configured):
    (configured / "mrl.toml").write_text('[embedder]\nprovider = "local"\nmodel = "text-embedding-3-large"\n'
                                         '[store]\npath = "store"\n')
    started = time.monotonic()
    code, _, err = cli("index", "docs", cwd=configured, timeout=120)
    one_line_error(code, err)
    assert "'text-embedding-3-large' is an OpenAI model" in err and 'provider = "openai"' in err
    assert time.monotonic() - started < 100  # not the model hub's minutes of retries
    assert not (configured / "store").exists()


# --- trap 6: init writes a config that index then uses --------------------------------------------


def test_6_init_writes_a_commented_config_that_index_uses(tmp_path, docs):
    code, out, err = cli("init", cwd=tmp_path)
    assert code == 0, err
    text = (tmp_path / "mrl.toml").read_text()
    assert text.startswith("# mrl.toml") and "[embedder]" in text and 'path = "mrl-index"' in text
    assert "next: mrl-retrievers index" in out
    code, _, err = cli("init", cwd=tmp_path)
    one_line_error(code, err)
    assert "--force" in err
    # the written config works as is; the fake provider stands in for the packaged model here
    code, out, err = cli("index", "docs", cwd=tmp_path, env={"MRL_EMBEDDER_PROVIDER": "fake", "MRL_EMBEDDER_DIM": "256"})
    assert code == 0, err
    assert "created store mrl-index" in out


# --- trap 7: CLI polish ---------------------------------------------------------------------------


def test_7_version(tmp_path):
    from mrl_retrievers import __version__

    code, out, _ = cli("--version", cwd=tmp_path)
    assert code == 0 and out.strip() == f"mrl-retrievers {__version__}"


def test_7_a_closed_pipe_is_not_a_traceback(configured):
    assert cli("index", "docs", cwd=configured)[0] == 0
    for args in (("info", "store"), ("query", "cats", "--json")):
        proc = subprocess.Popen([*command(), *args], cwd=configured, env=environment(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        proc.stdout.close()  # the reader is gone before the first byte, as `| head -0` would be
        err = proc.stderr.read().decode()
        proc.wait(timeout=120)
        assert "Traceback" not in err and "BrokenPipe" not in err, err
        assert proc.returncode == 141, (args, proc.returncode, err)


def test_7_info_is_human_readable_and_json_on_request(configured):
    assert cli("index", "docs", cwd=configured)[0] == 0
    code, out, _ = cli("info", "store", cwd=configured)
    assert code == 0
    assert "KiB" in out and "fake/fake-mrl-v1, 64 dims" in out and "{'" not in out and "disk_bytes" not in out
    code, out, _ = cli("info", "store", "--json", cwd=configured)
    assert json.loads(out)["count"] == 2


def test_7_query_shows_the_text_not_only_its_first_line(configured, docs):
    (docs / "warning.md").write_text("```{warning}\nNever feed the cat after midnight, it purrs too loudly.\n```")
    assert cli("index", "docs", cwd=configured)[0] == 0
    code, out, _ = cli("query", "feed the cat after midnight", "-k", "1", cwd=configured)
    assert code == 0 and "Never feed the cat after midnight" in out


def test_7_every_flag_has_help():
    from mrl_retrievers.cli import _parser

    def undocumented(parser: argparse.ArgumentParser, name: str):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    yield from undocumented(sub, sub_name)
            elif not action.help:
                yield f"{name} {'/'.join(action.option_strings) or action.dest}"

    assert list(undocumented(_parser(), "mrl-retrievers")) == []


def test_7_tune_on_a_small_store_exits_non_zero_and_says_why(configured):
    assert cli("index", "docs", cwd=configured)[0] == 0
    code, out, err = cli("tune", "store", cwd=configured)
    assert code == 1 and "nothing recorded" in err and "exact" in err, out + err


def test_7_prefix_dim_wider_than_dim_is_an_error(configured):
    (configured / "mrl.toml").write_text(FAKE.format(store="store").replace("prefix_dim = 16", "prefix_dim = 256"))
    code, _, err = cli("index", "docs", cwd=configured)
    one_line_error(code, err)
    assert "prefix_dim = 256 is wider than [embedder] dim = 64" in err
    assert not (configured / "store").exists()


@pytest.mark.slow
def test_7_bench_at_small_n_does_not_judge_goals_stated_for_1m(tmp_path):
    code, out, err = cli("bench", "--n", "2000", "--dim", "256", "--methods", "ours,numpy", "--queries", "20",
                         "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "--budget-s", "2",
                         "--qps-seconds", "0.1", "--cold-queries", "5", "--no-frameworks", "--tune-sample", "20",
                         cwd=tmp_path, timeout=900)
    assert code == 0, err[-3000:]
    targets = out[out.index("| target |"):]
    assert "**no**" not in targets and "goal stated for 1,000,000 vectors; this run has 2,000" in targets


# --- trap 9: packaging ----------------------------------------------------------------------------


def test_9_packaging_metadata():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"] and "version" not in project["project"]
    assert project["tool"]["hatch"]["version"]["path"] == "mrl_retrievers/__init__.py"
    classifiers = project["project"]["classifiers"]
    assert "Operating System :: POSIX" in classifiers and "Typing :: Typed" in classifiers
    assert not any(c.startswith("Operating System :: Microsoft") for c in classifiers)
    assert {"Homepage", "Documentation", "Issues"} <= set(project["project"]["urls"])
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert (ROOT / "mrl_retrievers" / "py.typed").is_file()
