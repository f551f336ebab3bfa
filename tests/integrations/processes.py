"""A Python process the test drives line by line: a web worker or an indexing job beside the test.

``Worker`` starts ``python`` with the repository (and each distribution under ``integrations/``) on its path and evaluates
what the test sends it in one namespace, so a test can hold a writer open in one process while it
constructs framework objects in another (the "many workers, one writer" deployments).

Example::

    with Worker() as writer:
        writer.exec("from mrl_retrievers import MRLStore; s = MRLStore.open(path)")
        assert writer.eval("len(s)") == 3
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

_LOOP = r"""
import json, sys
namespace = {}
for line in sys.stdin:
    request = json.loads(line)
    try:
        if request["mode"] == "exec":
            exec(request["code"], namespace)
            answer = {"value": None}
        else:
            answer = {"value": eval(request["code"], namespace)}
    except BaseException as exc:  # reported to the test, which decides
        answer = {"error": type(exc).__name__, "message": str(exc)}
    print(json.dumps(answer, default=repr), flush=True)
"""


class WorkerError(Exception):
    """The code a worker ran raised; ``name`` is the exception's class name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


class Worker:
    """A child Python process evaluating the test's code; closed (and killed if stuck) on exit."""

    def __init__(self, timeout: float = 120.0) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *(str(p) for p in sorted((ROOT / "integrations").iterdir()) if p.is_dir())])}
        self.timeout = timeout
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _LOOP], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env, cwd=str(ROOT),
        )

    def _send(self, mode: str, code: str) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"mode": mode, "code": code}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited ({self.proc.wait(self.timeout)}): {self.proc.stderr.read()[-2000:]}")
        answer = json.loads(line)
        if "error" in answer:
            raise WorkerError(answer["error"], answer["message"])
        return answer["value"]

    def exec(self, code: str) -> None:
        self._send("exec", code)

    def eval(self, code: str) -> Any:
        return self._send("eval", code)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(self.timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
