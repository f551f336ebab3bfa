"""I/O errors on the write path: the N-th write / fsync / rename fails (EIO, ENOSPC), or a file-size
limit makes SQLite's and hnswlib's own writes fail (EFBIG) part-way through a scenario.

Two injectors, each run in a driver subprocess over a fresh copy of the same store per case:

* our Python file layer (``fs.py``, ``vectors.py``, compaction): ``os.pwrite``, ``os.write``,
  ``os.fsync``, ``os.replace`` and ``os.ftruncate`` are wrapped with a countdown; the N-th call
  fails once (ENOSPC for odd N, EIO for even N), for every N the scenario reaches;
* SQLite and hnswlib write from C: ``RLIMIT_FSIZE`` (with SIGXFSZ ignored, so writes fail with
  EFBIG), at sizes taken from a dry run: inside every stretch where the scenario grows its largest
  file, plus below the store's size (open fails) and above everything (nothing fails).

After the failing call the fault is lifted (space was freed) and the scenario goes on with the same
handle, as a user who catches the error would. Each case is then reopened by a fresh handle in this
process. Pass: every failure is a typed ``MRLError``; the failed operation is not acknowledged and
is either absent or whole after reopen; every acknowledged operation is intact; ``verify`` is
clean; no temp file is left; the handle keeps working after the error.

The bugs this file found are described in /work/notes/reliability.md (F2-F5, F9); the tests below
now pin their fixes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mrl_retrievers import MRLStore

DIM, PREFIX = 32, 8
ROOT = str(Path(__file__).resolve().parents[2])


def _ids(prefix: str, start: int, stop: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(start, stop)]


PRISTINE = _ids("p", 0, 200)
SCENARIO = [
    {"op": "open"},
    {"op": "add", "ids": _ids("n", 0, 50), "ver": "v1"},
    {"op": "delete", "ids": _ids("p", 0, 20)},
    {"op": "checkpoint"},
    {"op": "add", "ids": _ids("p", 20, 50), "ver": "v2"},  # upsert
    {"op": "compact"},
    {"op": "reindex", "prefix_dim": 4},
    {"op": "add", "ids": _ids("m", 0, 40), "ver": "v3"},
    {"op": "delete", "ids": _ids("n", 0, 10)},
    {"op": "checkpoint"},
    {"op": "close"},
]


def _vec(id_: str, ver: str) -> np.ndarray:
    digest = hashlib.sha256(f"{id_}|{ver}".encode()).digest()
    v = np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


DRIVER = textwrap.dedent(
    """
    import errno, hashlib, json, os, resource, shutil, signal, sys, traceback
    import numpy as np
    from mrl_retrievers import MRLStore
    from mrl_retrievers.errors import MRLError

    mode, pristine, work, scenario = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    DIM = %(dim)d

    def vec(id_, ver):
        digest = hashlib.sha256(f"{id_}|{ver}".encode()).digest()
        v = np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal(DIM).astype(np.float32)
        return v / np.linalg.norm(v)

    if os.environ.get("MRL_TEST_BREAK") == "swallow-vector-errors":
        # Canary: a broken build that logs and continues when the vector rows fail to write.
        from mrl_retrievers.store.local.vectors import VectorFile
        _append = VectorFile.append
        def append(self, *args, **kwargs):
            try:
                _append(self, *args, **kwargs)
            except OSError:
                pass
        VectorFile.append = append

    # --- injector 1: the N-th call of our Python file layer fails once ---------------------------
    NAMES = ("pwrite", "write", "fsync", "replace", "ftruncate")
    REAL = {name: getattr(os, name) for name in NAMES}
    fault = {"armed": False, "n": 0, "calls": 0, "fired": None, "sites": []}

    def wrap(name):
        real = REAL[name]
        def call(*args, **kwargs):
            if fault["armed"]:
                fault["calls"] += 1
                frame = sys._getframe(1)
                site = f"os.{name} in {os.path.basename(frame.f_code.co_filename)}:{frame.f_code.co_name}"
                fault["sites"].append(site)
                if fault["calls"] == fault["n"]:
                    fault["armed"] = False  # transient: the next call succeeds
                    code = errno.ENOSPC if fault["n"] %% 2 else errno.EIO
                    fault["fired"] = site
                    raise OSError(code, os.strerror(code))
            return real(*args, **kwargs)
        return call

    for name in NAMES:
        setattr(os, name, wrap(name))

    # --- injector 2: a file-size limit (SQLite, hnswlib and us alike) ----------------------------
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    SOFT, HARD = resource.getrlimit(resource.RLIMIT_FSIZE)

    def set_limit(limit):
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit if limit else SOFT, HARD))

    def lift():
        fault["armed"] = False
        set_limit(None)

    def largest(path):
        return max((os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)), default=0)

    def run_case(label, path, arm):
        shutil.copytree(pristine, path)
        store, results, sizes = None, [], []
        arm()
        for spec in scenario:
            op = spec["op"]
            entry = {"op": op}
            try:
                if op == "open" or store is None:
                    store = MRLStore.open(path)  # a user retries the open
                if op == "add":
                    ids, ver = spec["ids"], spec["ver"]
                    store.add(ids, np.stack([vec(i, ver) for i in ids]), texts=[f"{i}|{ver}" for i in ids])
                elif op == "delete":
                    store.delete(spec["ids"])
                elif op == "checkpoint":
                    store.checkpoint()
                elif op == "compact":
                    store.compact()
                elif op == "reindex":
                    store.reindex(prefix_dim=spec["prefix_dim"])
                elif op == "close":
                    store.close()
                entry["ok"] = True
            except BaseException as exc:
                entry.update(ok=False, error=type(exc).__name__, module=type(exc).__module__,
                             mrl=isinstance(exc, MRLError), message=str(exc)[:300],
                             where=traceback.extract_tb(exc.__traceback__)[-1].name)
                lift()  # the space is freed; the user carries on with the same handle
            results.append(entry)
            sizes.append(largest(path))
        lift()
        if store is not None and not store._closed:
            try:
                store.close()
            except BaseException as exc:
                results.append({"op": "close (again)", "ok": False, "error": type(exc).__name__, "mrl": isinstance(exc, MRLError),
                                "module": type(exc).__module__, "message": str(exc)[:300], "where": ""})
                store._finalizer()
        print(json.dumps({"case": label, "path": path, "ops": results, "fired": fault["fired"], "sizes": sizes}), flush=True)
        return fault["calls"]

    if mode == "countdown":
        def arm_count():
            fault.update(armed=True, n=0, calls=0, fired=None, sites=[])
        total = run_case("count", os.path.join(work, "count"), arm_count)
        print(json.dumps({"sites": fault["sites"]}), flush=True)
        for n in range(1, total + 1):
            def arm(n=n):
                fault.update(armed=True, n=n, calls=0, fired=None, sites=[])
            run_case(f"call-{n}", os.path.join(work, f"call-{n}"), arm)
    else:
        limits = [int(x) for x in sys.argv[5].split(",")]
        for limit in limits:
            run_case(f"fsize-{limit or 'none'}", os.path.join(work, f"fsize-{limit}"), lambda limit=limit: set_limit(limit))
    """
) % {"dim": DIM}


def _prepare(path: Path, n: int = 200) -> None:
    """A store with a crashed batch's tail and an orphan temp file, so that open must recover."""
    ids = PRISTINE if n == 200 else _ids("p", 0, n)
    with MRLStore.create(path, full_dim=DIM, prefix_dim=PREFIX, exact_below=0) as store:
        store.add(ids, np.stack([_vec(i, "p") for i in ids]), texts=[f"{i}|p" for i in ids])
        store.checkpoint()
    vector_file = next(path.glob("vectors.*"))
    with open(vector_file, "ab") as fh:
        fh.write(b"\x01" * (DIM * 2 * 3 + 5))
    (path / "manifest.json.tmp-mrl").write_bytes(b"{half a manifest")


def _drive(tmp_path: Path, mode: str, *extra: str, env_extra: dict | None = None) -> list[dict]:
    pristine, work = tmp_path / "pristine", tmp_path / "cases"
    if not pristine.exists():
        _prepare(pristine)
    work.mkdir(exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-c", DRIVER, mode, str(pristine), str(work), json.dumps(SCENARIO), *extra],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, f"driver died (exit {proc.returncode}): {proc.stderr[-3000:]}"
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


# --- the model ------------------------------------------------------------------------------------


def _apply(docs: dict[str, str], spec: dict) -> None:
    if spec["op"] == "add":
        docs.update({i: spec["ver"] for i in spec["ids"]})
    elif spec["op"] == "delete":
        for i in spec["ids"]:
            docs.pop(i, None)


def _candidates(ops: list[dict]) -> list[dict[str, str]]:
    """Every state the store may hold: acknowledged ops applied, each failed op applied or not."""
    failed = [k for k, entry in enumerate(ops[: len(SCENARIO)]) if not entry["ok"] and SCENARIO[k]["op"] in ("add", "delete")]
    states = []
    for chosen in itertools.chain.from_iterable(itertools.combinations(failed, r) for r in range(len(failed) + 1)):
        docs = {i: "p" for i in PRISTINE}
        for k, spec in enumerate(SCENARIO):
            if ops[k]["ok"] or k in chosen:
                _apply(docs, spec)
        states.append(docs)
    return states


def reopen_problems(case: dict) -> list[str]:
    """Reopen a case's store with a fresh handle; what is wrong with it (empty: nothing)."""
    path = Path(case["path"])
    try:
        store = MRLStore.open(path)
    except Exception as exc:  # noqa: BLE001 - any failure to open is the finding
        return [f"does not reopen: {type(exc).__name__}: {exc}"]
    problems = []
    try:
        files = sorted(p.name for p in path.iterdir())
        if any(f.endswith(".tmp-mrl") for f in files) or len([f for f in files if f.startswith("vectors.")]) != 1:
            problems.append(f"leftover files after reopen: {files}")
        report = MRLStore.verify(path)
        if not report.ok:
            problems.append(f"verify: {report.problems}")
        universe = PRISTINE + _ids("n", 0, 50) + _ids("m", 0, 40)
        records = {r.id: r for r in store.get(universe, include_vectors=True)}
        got = {i: r.text.split("|")[1] for i, r in records.items()}
        if len(store) != len(records):
            problems.append(f"len(store)={len(store)} but {len(records)} items readable")
        if got not in _candidates(case["ops"]):
            problems.append("holds neither the acknowledged state nor it plus the failed operation "
                            f"({len(got)} items; failed: {[e['op'] for e in case['ops'] if not e['ok']]})")
        bad = [i for i, r in records.items() if not np.allclose(r.vector, _vec(i, got[i]), atol=2e-3)]
        if bad:
            problems.append(f"{len(bad)} vectors differ from what was written, e.g. {bad[0]}")
        for i in list(records)[::25]:
            if i not in [h.id for h in store.search(records[i].vector, k=10)]:
                problems.append(f"{i} is not found by its own vector")
    except Exception as exc:  # noqa: BLE001 - a reopened store that fails to answer is the finding
        problems.append(f"reopened store fails: {type(exc).__name__}: {exc}")
    finally:
        store.close()
    return problems


def _untyped(cases: list[dict]) -> list[str]:
    return [f"{c['case']}: {e['op']} raised {e['module']}.{e['error']} in {e['where']}: {e['message'][:120]}"
            for c in cases for e in c["ops"] if not e["ok"] and not e["mrl"]]


def _secondary(cases: list[dict]) -> list[str]:
    """Operations that failed after the one injected failure (the handle was left broken)."""
    out = []
    for c in cases:
        failures = [e for e in c["ops"] if not e["ok"]]
        out += [f"{c['case']}: after {failures[0]['op']} failed, {e['op']} raised {e['error']}: {e['message'][:120]}"
                for e in failures[1:]]
    return out


def _summary(label: str, cases: list[dict]) -> None:
    failed = sum(1 for c in cases if any(not e["ok"] for e in c["ops"]))
    print(f"\n{label}: {len(cases)} cases, {failed} with a failed operation, {len(_untyped(cases))} untyped errors, "
          f"{len(_secondary(cases))} later operations failing on the same handle")


# --- injector 1: our Python file layer --------------------------------------------------------------


@pytest.fixture(scope="module")
def countdown(tmp_path_factory):
    results = _drive(tmp_path_factory.mktemp("countdown"), "countdown")
    sites, cases = results[1]["sites"], results[2:]
    assert len(cases) == len(sites) >= 20, f"the scenario reached only {len(sites)} file-layer calls"
    _summary("countdown", cases)
    return cases


def test_countdown_every_call_fails_once(countdown):
    """Every call of the sweep fired, and an operation reported it (none was swallowed)."""
    assert all(c["fired"] for c in countdown)
    swallowed = [f"{c['case']} ({c['fired']})" for c in countdown if all(e["ok"] for e in c["ops"])]
    assert not swallowed, f"an injected I/O error was swallowed: {swallowed}"


def test_countdown_reopens_consistent(countdown):
    problems = [f"{c['case']} ({c['fired']}): {p}" for c in countdown for p in reopen_problems(c)]
    assert not problems, "\n".join(problems)


def test_countdown_errors_are_typed(countdown):
    """Regression (F4): OSError from the store's own file layer reached the caller untyped."""
    untyped = _untyped(countdown)
    assert not untyped, "\n".join(untyped)


def test_countdown_handle_keeps_working_after_the_error(countdown):
    """Regression (F5): after a reindex whose checkpoint failed, the next add committed and then
    raised hnswlib's RuntimeError (the handle held an index of the new width, the old manifest)."""
    secondary = _secondary(countdown)
    assert not secondary, "\n".join(secondary)


def test_canary_swallowed_vector_errors_are_caught(tmp_path):
    """Against a build that ignores failed vector writes, the same checks find the damage."""
    cases = _drive(tmp_path, "countdown", env_extra={"MRL_TEST_BREAK": "swallow-vector-errors"})[2:]
    hit = [c for c in cases if c["fired"] and "vectors.py:append" in c["fired"]]
    assert hit
    assert any(reopen_problems(c) for c in hit)


# --- injector 2: a file-size limit -------------------------------------------------------------------


def _limits(pristine: Path, sizes: list[int]) -> list[int]:
    """Limits inside every stretch of the scenario where the largest file grows (from a dry run),
    so each operation that extends a file meets the limit at a few points; plus two below the
    store's largest file (open must fail cleanly) and one above everything (nothing fails)."""
    start = max(p.stat().st_size for p in pristine.iterdir())
    limits = {start // 2, start - 1, int(max(sizes) * 1.5)}
    reached = start
    for size in sizes:
        if size > reached:
            limits.update(int(x) for x in np.linspace(reached, size, 6)[1:-1])
            reached = size
    return sorted(limits)


@pytest.fixture(scope="module")
def fsize(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsize")
    (dry,) = _drive(root, "fsize", "0")
    assert all(e["ok"] for e in dry["ops"]), dry
    limits = _limits(root / "pristine", dry["sizes"])
    cases = _drive(root, "fsize", ",".join(map(str, limits)))
    assert len(cases) == len(limits) >= 12
    _summary(f"file-size limit ({min(limits)}..{max(limits)} bytes)", cases)
    return cases


def test_fsize_sweep_reaches_every_operation(fsize):
    """The sweep makes each kind of write operation fail at least once."""
    failed_ops = {e["op"] for c in fsize for e in c["ops"] if not e["ok"]}
    assert {"add", "delete", "compact"} <= failed_ops, failed_ops
    assert any(all(e["ok"] for e in c["ops"]) for c in fsize)  # and the largest limits do not bite


def test_fsize_reopens_consistent(fsize):
    problems = [f"{c['case']}: {p}" for c in fsize for p in reopen_problems(c)]
    assert not problems, "\n".join(problems)


def test_fsize_errors_are_typed(fsize):
    """Regression (F3): SQLite's disk-full/I/O errors reached the caller as sqlite3.OperationalError,
    masked by a second error from the ROLLBACK."""
    untyped = _untyped(fsize)
    assert not untyped, "\n".join(untyped)


def test_fsize_disk_full_is_not_called_corruption(fsize):
    """Regression (F9): a full disk at open was reported as CorruptStoreError (whose hint is
    `rebuild`); the store is not damaged."""
    called_corrupt = [f"{c['case']}: {e['op']}: {e['message'][:120]}" for c in fsize for e in c["ops"]
                      if not e["ok"] and e["error"] == "CorruptStoreError"]
    assert not called_corrupt, "\n".join(called_corrupt)


def test_checkpoint_cut_short_by_a_full_disk_is_caught(tmp_path):
    """Regression (F2): hnswlib's save_index does not report a short write, and the manifest then
    vouched (size, CRC) for a truncated checkpoint that made open, verify and rebuild raise hnswlib's
    RuntimeError. With the file-size limit 16 bytes below the checkpoint's size: the checkpoint is
    either refused with a typed error or whole, and the store opens with every item and verifies."""
    code = textwrap.dedent(
        """
        import resource, signal, sys
        import numpy as np
        from mrl_retrievers import MRLStore
        from mrl_retrievers.errors import MRLError
        path, limit = sys.argv[1], int(sys.argv[2])
        store = MRLStore.open(path)
        store.add(["extra"], np.ones((1, %(dim)d), dtype=np.float32))
        if limit:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        try:
            store.checkpoint()
            print("acknowledged")
        except Exception as exc:
            print("raised", type(exc).__name__, isinstance(exc, MRLError))
        """
    ) % {"dim": DIM}
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full_size, outcome = 0, ""
    for name in ("dry", "cut"):
        path = tmp_path / name
        ids = _ids("p", 0, 2000)
        with MRLStore.create(path, full_dim=DIM, prefix_dim=PREFIX, exact_below=0) as store:
            store.add(ids, np.stack([_vec(i, "p") for i in ids]))
        limit = 0 if name == "dry" else full_size - 16
        out = subprocess.run([sys.executable, "-c", code, str(path), str(limit)], capture_output=True, text=True,
                             env=env, timeout=120, check=False)
        assert out.returncode == 0, out.stderr
        outcome = out.stdout.strip()
        if name == "dry":
            assert outcome == "acknowledged"
            full_size = (path / json.loads((path / "manifest.json").read_text())["ann"]["segments"][0]["file"]).stat().st_size
    assert outcome in ("acknowledged", "raised StoreIOError True") or outcome.endswith(" True"), (
        f"the short checkpoint write: {outcome}")
    try:
        with MRLStore.open(tmp_path / "cut") as store:
            assert len(store) == 2001
            assert store.get(["extra"])
    except Exception as exc:  # noqa: BLE001 - F2: open raised hnswlib's RuntimeError
        pytest.fail(f"open after a short checkpoint write ({outcome}): {type(exc).__name__}: {exc}")
    report = MRLStore.verify(tmp_path / "cut")
    assert report.ok, report.problems
