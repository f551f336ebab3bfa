"""The command line as a subprocess: every command, and the user mistakes, with messages and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mrl_retrievers import EmbeddingSpec, MRLStore

FAKE_CONFIG = """
[embedder]
provider = "fake"
dim = 64

[store]
path = "{path}"
prefix_dim = 16
"""


def run(*args, cwd, env=None, timeout=300):
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "mrl_retrievers.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=full_env, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def workspace(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "cats.md").write_text("Cats purr when they are content.\n\nCats sleep most of the day.")
    (tmp_path / "docs" / "dogs.txt").write_text("Dogs bark at strangers.\n\nDogs love long walks in the park.")
    (tmp_path / "notes.jsonl").write_text(
        json.dumps({"id": "fish", "text": "Fish swim in schools.", "metadata": {"kind": "animal"}}) + "\n"
    )
    (tmp_path / "mrl.toml").write_text(FAKE_CONFIG.format(path=tmp_path / "store"))
    return tmp_path


def test_index_query_is_idempotent_and_reports(workspace):
    code, out, err = run("index", "docs", "notes.jsonl", "-q", cwd=workspace)
    assert code == 0, err
    code, out, err = run("index", "docs", "notes.jsonl", cwd=workspace)
    assert code == 0, err
    assert "0 embedded" in out and "unchanged" in out
    code, out, err = run("query", "which animal purrs", "-k", "2", "--json", cwd=workspace)
    assert code == 0, err
    hits = json.loads(out)
    assert len(hits) == 2 and all({"id", "score", "text", "metadata"} <= set(h) for h in hits)
    code, out, _ = run("query", "schools of fish", "--filter", '{"kind": "animal"}', "--json", cwd=workspace)
    assert [h["id"] for h in json.loads(out)] == ["fish#0"]
    code, out, err = run("query", "which animal purrs", "-k", "2", "--shortlist", "4", "--ef", "8", "--json", cwd=workspace)
    assert code == 0, err
    assert [h["id"] for h in json.loads(out)] == [h["id"] for h in hits]


def test_index_drops_chunks_of_a_shortened_file(workspace):
    assert run("index", "docs", "--chunk-chars", "40", "-q", cwd=workspace)[0] == 0
    (workspace / "docs" / "cats.md").write_text("Cats purr.")
    code, out, err = run("index", "docs", "--chunk-chars", "40", cwd=workspace)
    assert code == 0, err
    assert "1 removed" in out


def test_info_verify_reindex_compact_rebuild(workspace):
    run("index", "docs", "-q", cwd=workspace)
    store = str(workspace / "store")
    code, out, err = run("info", store, "--json", cwd=workspace)
    info = json.loads(out)
    assert code == 0 and info["count"] == 2 and info["full_dim"] == 64 and info["spec"]["provider"] == "fake"
    code, out, _ = run("info", store, cwd=workspace)
    assert code == 0 and "rerank  compiled kernel" in out  # the install built it (hatch_build.py)
    assert run("verify", store, cwd=workspace)[:2] == (0, f"ok: {store}\n")
    code, out, _ = run("reindex", store, "--prefix-dim", "32", cwd=workspace)
    assert code == 0 and "prefix_dim=32" in out
    assert json.loads(run("info", store, "--json", cwd=workspace)[1])["prefix_dim"] == 32
    code, out, _ = run("compact", store, cwd=workspace)
    assert code == 0 and "reclaimed 0 rows" in out
    assert run("rebuild", store, cwd=workspace)[0] == 0


def test_verify_reports_damage_with_exit_3(workspace):
    run("index", "docs", "-q", cwd=workspace)
    vectors = next((workspace / "store").glob("vectors.*"))
    data = bytearray(vectors.read_bytes())
    data[5] ^= 0xFF
    vectors.write_bytes(bytes(data))
    code, out, _ = run("verify", str(workspace / "store"), cwd=workspace)
    assert code == 3 and "fail their checksum" in out and "rebuild" in out


@pytest.mark.parametrize(
    "args,message",
    [
        (("index", "missing-folder"), "no such file or folder"),
        (("query", "x", "--config", "nope.toml"), "config file not found"),
        (("query", "x", "--provider", "nosuch"), "unknown embedding provider 'nosuch'; available:"),
        (("query", "x", "--filter", "{bad"), "--filter is not valid JSON"),
        (("query", "x", "--filter", '{"a": {"$regex": "x"}}'), "$regex"),
        (("info", "not-a-store"), "no store at"),
        (("verify", "mrl.toml"), "is a file"),
        (("reindex", "store", "--prefix-dim", "999"), "prefix_dim"),
        (("query", "x", "--ef", "0"), "ef"),
        (("query", "x", "--ef", "40", "--target-recall", "0.99"), "not both"),
    ],
)
def test_user_mistakes_are_one_line_errors(workspace, args, message):
    run("index", "docs", "-q", cwd=workspace)
    code, out, err = run(*args, cwd=workspace)
    assert code in (2, 3), (code, out, err)
    assert message in err + out
    assert "Traceback" not in err


def test_bad_config_and_mismatched_store(workspace):
    (workspace / "bad.toml").write_text("[store\n")
    code, _, err = run("query", "x", "--config", "bad.toml", cwd=workspace)
    assert code == 2 and "not valid TOML" in err and "Traceback" not in err
    run("index", "docs", "-q", cwd=workspace)
    code, _, err = run("query", "x", "--dim", "32", cwd=workspace)  # another width than the store holds
    assert code == 2 and "Traceback" not in err
    assert "32" in err and "64" in err


def test_no_store_path_is_a_clear_error(tmp_path):
    (tmp_path / "mrl.toml").write_text('[embedder]\nprovider = "fake"\ndim = 8\n')
    code, _, err = run("query", "x", cwd=tmp_path)
    assert code == 2 and "no store path" in err


def test_no_command_prints_help(tmp_path):
    code, _, err = run(cwd=tmp_path)
    assert code == 2 and "COMMAND" in err


@pytest.mark.slow
def test_demo_runs_offline_and_second_run_embeds_nothing(tmp_path):
    pytest.importorskip("sentence_transformers")
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    code, out, err = run("demo", "--workdir", "w", "--limit", "60", cwd=tmp_path, env=env, timeout=600)
    assert code == 0, err[-3000:]
    assert "indexed 60 passages" in out and "agreement" in out and "footprint" in out
    code, out, err = run("demo", "--workdir", "w", "--limit", "60", cwd=tmp_path, env=env, timeout=600)
    assert code == 0, err[-3000:]
    assert "nothing embedded" in out


def test_migrate_local_to_qdrant_and_back(workspace):
    run("index", "docs", "notes.jsonl", "-q", cwd=workspace)
    code, out, err = run("migrate", "store", f"qdrant+path://{workspace / 'q'}?collection=docs", cwd=workspace)
    assert code == 0, err
    assert "copied 3 items" in out and "nothing was re-embedded" in out
    code, out, err = run("migrate", f"qdrant+path://{workspace / 'q'}?collection=docs", "back", cwd=workspace)
    assert code == 0, err
    info = json.loads(run("info", "back", "--json", cwd=workspace)[1])
    assert info["count"] == 3 and info["spec"]["provider"] == "fake"
    code, _, err = run("migrate", "nowhere", "x", cwd=workspace)
    assert code == 2 and "Traceback" not in err


def test_demo_footprint_reports_the_coarse_index_ram_the_store_itself_estimates(tmp_path):
    # Observed: the demo printed the coarse index at 4 bytes a prefix component (715 MiB at 1M x 1024)
    # while the store's graph holds float16 prefixes (stats: 2 bytes a component).
    from types import SimpleNamespace

    from mrl_retrievers import demo

    rng = np.random.default_rng(0)
    data = rng.standard_normal((3000, 256)).astype(np.float32)
    lines: list[str] = []
    with MRLStore.create(tmp_path / "s", full_dim=256, prefix_dim=demo.PREFIX_DIM, exact_below=0) as store:
        store.add([str(i) for i in range(len(data))], data)
        stats = store.stats()
        demo._footprint(SimpleNamespace(store=store), lines.append)
    per_item = stats["estimated_ram_bytes"] / stats["count"]
    demo_row = next(line for line in lines if line.strip().startswith("this demo"))
    big_row = next(line for line in lines if line.strip().startswith("1M x 1024"))
    assert demo._size(stats["estimated_ram_bytes"]) in demo_row
    assert demo._size(per_item * 1_000_000) in big_row  # the same graph, scaled: same prefix width
