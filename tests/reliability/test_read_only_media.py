"""A healthy store on a read-only file system, or without write permission, is not damaged
(issue 13, failure 10): read-only handles, ``verify`` and the CLI's read commands work, and a
writer gets ``ReadOnlyStoreError`` (never ``CorruptStoreError``, never advice to rebuild).

The read-only file system is a read-only bind mount in a user + mount namespace (``unshare -rm``);
"no permission" makes the store's files and directory read-only (0444/0555) and runs the check
without the capabilities that let root ignore permissions (``setpriv --bounding-set``). Where the
machine allows neither, the test says so and skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mrl_retrievers import MRLStore

ROOT = str(Path(__file__).resolve().parents[2])

CHECK = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from mrl_retrievers import MRLStore
    from mrl_retrievers.cli import main as cli
    from mrl_retrievers.errors import ReadOnlyStoreError
    path = sys.argv[1]
    out = {}
    with MRLStore.open(path, read_only=True) as store:
        q = store.get(["d7"], include_vectors=True)[0].vector
        out["search"] = store.search(q, k=1)[0].id
        out["len"] = len(store)
    report = MRLStore.verify(path)
    out["verify_ok"], out["problems"] = report.ok, report.problems
    try:
        MRLStore.open(path)
        out["writer"] = "opened"
    except ReadOnlyStoreError as exc:
        out["writer"] = "ReadOnlyStoreError"
    except Exception as exc:
        out["writer"] = f"{type(exc).__name__}: {exc}"
    out["cli_verify"] = cli(["verify", path])
    print(json.dumps(out))
    """
)


@pytest.fixture
def healthy_store():
    base = Path(tempfile.mkdtemp(prefix="mrl-ro-"))
    os.chmod(base, 0o755)  # reachable by the unprivileged user too
    path = base / "s"
    data = np.random.default_rng(4).standard_normal((3000, 32)).astype(np.float32)
    with MRLStore.create(path, full_dim=32, prefix_dim=8) as store:
        store.add([f"d{i}" for i in range(3000)], data)
    for p in [path, *path.iterdir()]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    yield path
    shutil.rmtree(base, ignore_errors=True)


def _run(prefix: list[str], path: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, *sys.path]))
    proc = subprocess.run([*prefix, sys.executable, "-c", CHECK, str(path)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    return json.loads(proc.stdout.strip().splitlines()[-1])


def _expect_served(out: dict) -> None:
    assert out["search"] == "d7" and out["len"] == 3000, out
    assert out["verify_ok"], out["problems"]
    assert out["writer"] == "ReadOnlyStoreError", out["writer"]
    assert out["cli_verify"] == 0


def test_a_store_on_a_read_only_file_system_is_served_not_called_corrupt(healthy_store):
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed: cannot make a read-only mount here")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"user + mount namespaces are not allowed here: {probe.stderr.decode().strip()}")
    ro = healthy_store  # bind-mount the store's directory read-only onto itself, inside the namespace
    script = f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} && exec \"$@\""
    out = _run(["unshare", "-rm", "sh", "-c", script, "sh"], ro)
    _expect_served(out)


def test_a_store_without_write_permission_is_served_not_called_corrupt(healthy_store):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv(1) is not installed: cannot drop the capabilities that bypass permissions")
    for p in [*healthy_store.iterdir(), healthy_store]:
        os.chmod(p, 0o555 if p.is_dir() else 0o444)
    try:
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"] if os.geteuid() == 0 else []
        out = _run(prefix, healthy_store)
    finally:
        os.chmod(healthy_store, 0o755)
    _expect_served(out)
