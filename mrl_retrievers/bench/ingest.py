"""Ingestion throughput against the loopback OpenAI emulator with latency and rate limits.

Compares ``MRLIndex.add_texts`` (our OpenAI provider: token-aware batching, 512-text requests, 4 in
flight, one retry policy honouring Retry-After; steps pipelined so step N+1 is embedded while step N
is written to the durable store) with LangChain's ``OpenAIEmbeddings`` +
``InMemoryVectorStore.add_texts`` on the same texts (or, if ``langchain-openai`` is not installed, a
plain sequential OpenAI-SDK loop, and the result says so).

Each client runs in its own subprocess against a fresh emulator subprocess (so the rate-limit
window starts empty and the server's CPU does not share a GIL with the client). The emulator is
``mrl_retrievers/emulators/openai_server.py``: it answers 429 with ``Retry-After`` beyond ``rpm`` /
``tpm`` and counts what it answered. It ships with the source tree (not the wheel): run this from a
checkout.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

MODEL = "text-embedding-3-small"
_WORDS = ("vector store index query shortlist rerank prefix matryoshka embedding retrieval document passage "
          "latency memory disk cache cluster centre spectrum recall exact approximate graph layer neighbour "
          "model token batch request limit minute retry server client throughput benchmark result table").split()


def make_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct pseudo-sentences of 40-120 words (~250-750 characters), seeded."""
    rng = np.random.default_rng(seed)
    texts = []
    for i in range(n):
        words = rng.choice(_WORDS, size=int(rng.integers(40, 121)))
        texts.append(f"passage {i}: " + " ".join(words.tolist()) + ".")
    return texts


def run_ingest(*, n_texts: int = 20_000, latency_ms: float = 100.0, rpm: int | None = 3_000, tpm: int | None = 1_000_000,
               dim: int = 1024, clients: tuple[str, ...] | None = None, timeout: float = 3600,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run each client against a fresh emulator; return throughputs, 429 counts and the ratio."""
    if clients is None:
        baseline = "langchain" if importlib.util.find_spec("langchain_openai") else "sdk"
        clients = ("ours", "ours-concurrent", baseline)
    with tempfile.TemporaryDirectory(prefix="mrl-ingest-") as tmp:
        texts_path = Path(tmp) / "texts.json"
        texts_path.write_text(json.dumps(make_texts(n_texts)))
        runs = {}
        for kind in clients:
            log(f"[ingest] {kind}: {n_texts} texts, {latency_ms:g} ms/request, rpm={rpm} tpm={tpm} ...")
            runs[kind] = _run_client(kind, texts_path, Path(tmp) / kind, latency_ms, rpm, tpm, dim, timeout)
            log(f"[ingest] {kind}: {runs[kind]}")
        if any(_turns(r, rpm, tpm) > 1 for r in runs.values()):
            # The ceiling's last stretch runs at the client's free speed: measure it, no limits.
            for kind in clients:
                log(f"[ingest] {kind}: the same without limits (for the ceiling) ...")
                free = _run_client(kind, texts_path, Path(tmp) / f"{kind}-free", latency_ms, None, None, dim, timeout)
                runs[kind]["ceiling"] = ceiling(runs[kind], rpm, tpm, free.get("seconds"))
        else:
            for kind in clients:
                runs[kind]["ceiling"] = ceiling(runs[kind], rpm, tpm, runs[kind].get("seconds"))
    result: dict[str, Any] = {"texts": n_texts, "latency_ms": latency_ms, "rpm": rpm, "tpm": tpm, "dim": dim, "runs": runs}
    base = next((k for k in clients if not k.startswith("ours")), None)
    if base and runs[base].get("texts_per_s"):
        result["baseline"] = base
        result["ratios"] = {k: r["texts_per_s"] / runs[base]["texts_per_s"] for k, r in runs.items()
                            if k.startswith("ours") and r.get("texts_per_s")}
    if base == "sdk":
        result["note"] = "langchain-openai is not installed: the baseline is a plain sequential OpenAI-SDK loop"
    return result


def _turns(run: dict[str, Any], rpm: int | None, tpm: int | None) -> int:
    """Windows the admitted work needs: the last one opens 60 s x (turns - 1) after the start."""
    admitted = run.get("status", {}).get("200", 0)
    turns = 1
    if rpm:
        turns = max(turns, math.ceil(admitted / rpm))
    if tpm:
        turns = max(turns, math.ceil(run.get("admitted_tokens", 0) / tpm))
    return turns


def ceiling(run: dict[str, Any], rpm: int | None, tpm: int | None, free_seconds: float | None) -> dict[str, Any]:
    """The physical ceiling of one run: its admitted requests and tokens under a 60 s sliding window.

    A perfect client sends one window's worth at once and the next when the window frees it, so the
    last share of the work cannot start before 60 s x (turns - 1); it then takes its share of the
    client's own no-limit time. ``fraction`` = that ideal / the measured seconds (1.0 = the ceiling).
    """
    turns = _turns(run, rpm, tpm)
    out: dict[str, Any] = {"turns": turns, "admitted_tokens": run.get("admitted_tokens", 0),
                           "admitted_requests": run.get("status", {}).get("200", 0)}
    if not run.get("seconds") or free_seconds is None:
        return out
    if turns > 1:
        shares = []
        if tpm and run.get("admitted_tokens"):
            shares.append((run["admitted_tokens"] - (turns - 1) * tpm) / run["admitted_tokens"])
        if rpm and out["admitted_requests"]:
            shares.append((out["admitted_requests"] - (turns - 1) * rpm) / out["admitted_requests"])
        last_share = max(0.0, min(1.0, max(shares, default=1.0)))
        ideal = 60.0 * (turns - 1) + free_seconds * last_share
    else:
        ideal = free_seconds
    out.update({"ideal_s": ideal, "fraction": ideal / run["seconds"],
                "tokens_per_min": 60.0 * out["admitted_tokens"] / run["seconds"],
                "requests_per_min": 60.0 * out["admitted_requests"] / run["seconds"]})
    return out


def format_result(result: dict[str, Any]) -> str:
    lines = [f"{result['texts']:,} texts, {result['latency_ms']:g} ms per request, rpm={result['rpm']}, tpm={result['tpm']}",
             "| client | seconds | of which self-calibration s | texts/s | requests | 429 answered | stored | window turns | ideal s | fraction of ceiling | error |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for kind, r in result["runs"].items():
        c = r.get("ceiling", {})
        ideal = f"{c['ideal_s']:.1f}" if "ideal_s" in c else "-"
        fraction = f"{c['fraction']:.2f}" if "fraction" in c and c.get("turns", 1) > 1 else "-"
        calibration_s = f"{r['calibration_s']:.1f}" if "calibration_s" in r else "-"
        lines.append(f"| {kind} | {r.get('seconds', 0):.1f} | {calibration_s} | {r.get('texts_per_s', 0):.0f} | {r.get('requests', '?')} | "
                     f"{r.get('status', {}).get('429', 0)} | {r.get('stored', 0)} | {c.get('turns', '?')} | {ideal} | {fraction} | "
                     f"{r.get('error') or ''} |")
    for kind, ratio in result.get("ratios", {}).items():
        lines.append(f"{kind} / {result['baseline']}: {ratio:.2f}x")
    if "note" in result:
        lines.append(f"note: {result['note']}")
    return "\n".join(lines)


# --- processes --------------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    # LangChain counts tokens with tiktoken, which downloads its table on first use: point it at
    # the copy llama-index-core ships (offline machines), unless the caller chose a cache.
    if "TIKTOKEN_CACHE_DIR" not in env and importlib.util.find_spec("llama_index.core"):
        static = Path(importlib.util.find_spec("llama_index.core").origin).parent / "_static" / "tiktoken_cache"
        if static.is_dir():
            env["TIKTOKEN_CACHE_DIR"] = str(static)
    return env


def _run_client(kind: str, texts_path: Path, workdir: Path, latency_ms: float, rpm, tpm, dim: int, timeout: float) -> dict[str, Any]:
    server = subprocess.Popen(
        [sys.executable, "-m", "mrl_retrievers.bench.ingest", "serve", str(latency_ms), str(rpm or 0), str(tpm or 0),
         str(texts_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=_root())
    try:
        line = server.stdout.readline()
        if not line:
            raise RuntimeError(f"the OpenAI emulator did not start: {server.stderr.read()[-500:]}")
        base_url = json.loads(line)["base_url"]
        proc = subprocess.run([sys.executable, "-m", "mrl_retrievers.bench.ingest", "client", kind, base_url, str(texts_path),
                               str(workdir), str(dim)], capture_output=True, text=True, timeout=timeout, env=_env(), cwd=_root())
        try:
            out = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            out = {"error": f"exit {proc.returncode}: {(proc.stderr or '').strip().splitlines()[-1:]}"}
    finally:
        stats, _ = server.communicate("stop\n", timeout=30)
    out.update(json.loads(stats.strip().splitlines()[-1]) if stats.strip() else {})
    return out


def _root() -> str:
    return str(Path(__file__).resolve().parents[2])


def _serve(latency_ms: float, rpm: int, tpm: int, texts_path: str | None = None) -> None:
    """Child: run the emulator until a line arrives on stdin, then print what it answered.

    The token counts of the benchmark's texts are computed before the server starts: a real API
    tokenizes on its own machines, while this emulator shares the client's cores, and tokenizing
    every text during the run would bill the client (that sends strings) for the server's work.
    """
    from mrl_retrievers.emulators.openai_server import OpenAIServer  # noqa: PLC0415 - ships in the package

    count = _token_counter()
    known = {text: count(text) for text in json.loads(Path(texts_path).read_text())} if texts_path else {}

    class Counting(OpenAIServer):
        def handle(self, req):  # noqa: ANN001
            reply = super().handle(req)
            admitted = self.count_tokens(req) if reply.status == 200 else 0
            with self._lock:
                self.status[str(reply.status)] = self.status.get(str(reply.status), 0) + 1
                self.admitted_tokens += admitted
            return reply

        def count_tokens(self, req) -> int:  # noqa: ANN001
            # Charge strings and token arrays alike (the emulator guesses ~4 bytes a token for
            # strings but counts token arrays exactly; LangChain sends token arrays, we send
            # strings): otherwise the rate limit would bind one client twice as hard as the other.
            raw = req.body.get("input") if isinstance(req.body, dict) else None
            items = [raw] if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)) else raw or []
            return sum(known[item] if isinstance(item, str) and item in known else count(item) for item in items)

    server = Counting(latency_ms=latency_ms, rpm=rpm or None, tpm=tpm or None)
    server.status = {}
    server.admitted_tokens = 0
    server.start()
    print(json.dumps({"base_url": server.base_url}), flush=True)
    sys.stdin.readline()
    server.stop()
    print(json.dumps({"requests": len(server.requests), "status": server.status, "admitted_tokens": server.admitted_tokens}),
          flush=True)


def _token_counter():
    """Tokens of one input: tiktoken's cl100k_base for strings when available, else ~4 bytes a token."""
    try:
        import tiktoken  # noqa: PLC0415

        encoding = tiktoken.get_encoding("cl100k_base")
    except Exception:  # noqa: BLE001 - not installed, or its table cannot be loaded offline
        encoding = None

    def count(item) -> int:
        if isinstance(item, list):
            return max(1, len(item))
        text = str(item)
        return max(1, len(encoding.encode(text))) if encoding else max(1, (len(text.encode()) + 3) // 4)

    return count


def _client(kind: str, base_url: str, texts_path: str, workdir: str, dim: int) -> None:
    """Child: ingest the texts with one client; print seconds, texts/s and how many were stored.

    Imports and client construction happen before the clock starts: throughput, not import time.
    """
    texts = json.loads(Path(texts_path).read_text())
    ids = [f"t{i}" for i in range(len(texts))]
    run = _INGESTERS[kind](base_url, Path(workdir), dim)
    started = time.perf_counter()
    error = None
    extra: dict[str, Any] = {}
    try:
        stored = run(texts, ids)
        if isinstance(stored, tuple):
            stored, extra = stored
    except Exception as exc:  # noqa: BLE001 - reported, not raised: a 429 left unhandled lands here
        stored, error = 0, f"{type(exc).__name__}: {str(exc)[:200]}"
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "texts_per_s": (stored / seconds) if stored else 0.0, "stored": stored, "error": error,
                      **extra}))


def _finish(index) -> tuple[int, dict[str, Any]]:  # noqa: ANN001 - an MRLIndex
    """Close the index (its last checkpoint included, as a user's close); return how many items it
    holds and the seconds of the store's self-calibration (the last one: each run's store is new,
    so it ran inside the timed run; 0 if none did, e.g. a fixed effort)."""
    count = len(index)
    store = index.store
    index.close()
    calibrated = store.manifest.calibration  # the state outlives the handle
    return count, {"calibration_s": calibrated.seconds if calibrated is not None else 0.0}


def _ours(base_url: str, workdir: Path, dim: int, *, fixed_effort: bool = False):
    """Our default ingestion. ``fixed_effort`` (the ``ours-fixed`` client): ``shortlist``/``ef``
    given, the expert override with no recall target, so the store never calibrates itself:
    ingestion alone, for comparison (not a default)."""
    from ..index import MRLIndex  # noqa: PLC0415
    from ..providers.openai import OpenAIProvider  # noqa: PLC0415
    from ..store.defaults import DEFAULT_EF, DEFAULT_SHORTLIST  # noqa: PLC0415

    effort = {"shortlist": DEFAULT_SHORTLIST, "ef": DEFAULT_EF} if fixed_effort else {}
    index = MRLIndex(OpenAIProvider(model=MODEL, dim=dim, api_key="test-key", base_url=base_url), store=workdir / "store",
                     prefix_dim=128, **effort)

    def run(texts, ids) -> tuple[int, dict[str, Any]]:
        index.add_texts(texts, ids=ids)
        return _finish(index)

    return run


def _ours_concurrent(base_url: str, workdir: Path, dim: int):
    """Ours configured by hand: 512-text requests, 4 in flight (today's defaults), 4096-text steps."""
    from ..index import MRLIndex  # noqa: PLC0415
    from ..providers.openai import OpenAIProvider  # noqa: PLC0415

    provider = OpenAIProvider(model=MODEL, dim=dim, api_key="test-key", base_url=base_url, batch_size=512, max_concurrency=4)
    index = MRLIndex(provider, store=workdir / "store", prefix_dim=128)

    def run(texts, ids) -> tuple[int, dict[str, Any]]:
        index.add_texts(texts, ids=ids, step=4096)
        return _finish(index)

    return run


def _langchain(base_url: str, workdir: Path, dim: int):
    import tiktoken  # noqa: PLC0415
    from langchain_core.vectorstores import InMemoryVectorStore  # noqa: PLC0415
    from langchain_openai import OpenAIEmbeddings  # noqa: PLC0415

    tiktoken.get_encoding("cl100k_base")  # load the token table before the clock starts
    store = InMemoryVectorStore(embedding=OpenAIEmbeddings(model=MODEL, dimensions=dim, api_key="test-key", base_url=base_url))

    def run(texts, ids) -> int:
        store.add_texts(texts, ids=ids)
        return len(store.store)

    return run


def _sdk(base_url: str, workdir: Path, dim: int):
    import openai  # noqa: PLC0415

    client = openai.OpenAI(api_key="test-key", base_url=base_url)

    def run(texts, ids) -> int:
        stored = {}
        for start in range(0, len(texts), 1000):
            response = client.embeddings.create(model=MODEL, input=texts[start : start + 1000], dimensions=dim)
            for item in response.data:
                stored[ids[start + item.index]] = item.embedding
        return len(stored)

    return run


_INGESTERS = {"ours": _ours, "ours-concurrent": _ours_concurrent, "ours-fixed": functools.partial(_ours, fixed_effort=True),
              "langchain": _langchain, "sdk": _sdk}


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "serve":
        _serve(float(rest[0]), int(rest[1]), int(rest[2]), rest[3] if len(rest) > 3 else None)
    elif command == "client":
        _client(rest[0], rest[1], rest[2], rest[3], int(rest[4]))
    else:
        raise SystemExit(f"unknown command {command!r}")
