"""Build hook: compile the search's two extensions.

- ``mrl_retrievers/store/local/_kernel.c``: the rerank's scoring kernel (C).
- ``mrl_retrievers/store/local/_graph.cpp``: the coarse index's HNSW graph (hnswlib's headers,
  vendored under ``_hnswlib/``) and the fused search (C++17).

Each is one source file with no dependencies beyond Python's headers, so the hook calls the compiler
itself (no setuptools). A failed build is not a failed install: without the kernel the package scores
with its numpy twin (``store/local/kernel.py``), without the graph it uses the hnswlib package
(``store/local/ann.py``); both are slower and hand the GIL over more often, and ``mrl-retrievers info`` says which serves.
An editable install builds the extensions next to their sources (ignored by git); a wheel carries them.

The graph is compiled for the machine it is installed on (``-march=native``, as hnswlib's own build
does: its distance functions pick AVX/AVX-512 at compile time); ``MRL_RETRIEVERS_PORTABLE=1`` drops
that for a wheel meant for other machines.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sysconfig
import tempfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = "mrl_retrievers/store/local/_kernel.c"
GRAPH_SOURCE = "mrl_retrievers/store/local/_graph.cpp"
# -ffp-contract=off: no fused multiply-add, so every CPU sums a score the same way (deterministic).
FLAGS = ["-O3", "-ffp-contract=off", "-fPIC", "-shared", "-std=c11", "-Wall"]
GRAPH_FLAGS = ["-O3", "-ffp-contract=off", "-fPIC", "-shared", "-std=c++17", "-Wall", "-Wno-unused-function",
               "-fvisibility=hidden", "-pthread"]


def extension_name(stem: str = "_kernel") -> str:
    return stem + (sysconfig.get_config_var("EXT_SUFFIX") or ".so")


def graph_flags() -> list[str]:
    portable = os.environ.get("MRL_RETRIEVERS_PORTABLE", "").lower() in ("1", "true", "yes")
    return GRAPH_FLAGS if portable else [*GRAPH_FLAGS, "-march=native"]


def compile_kernel(root: Path, out: Path, source: str = SOURCE) -> str | None:
    """Compile an extension to ``out``; None on success, else the reason it could not be built."""
    if source == GRAPH_SOURCE:
        compiler, flags = shlex.split(os.environ.get("CXX") or "c++"), graph_flags()
    else:
        compiler, flags = shlex.split(os.environ.get("CC") or "cc"), FLAGS
    include = sysconfig.get_paths()["include"]
    command = [*compiler, *flags, f"-I{include}", str(root / source), "-o", str(out)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{' '.join(command)}: {exc}"
    if done.returncode != 0:
        return f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-2000:]}"
    return None


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel" or os.environ.get("MRL_RETRIEVERS_KERNEL", "").lower() == "numpy":
            return
        root = Path(self.root)
        for source, instead in ((SOURCE, "searches score with numpy instead"),
                                (GRAPH_SOURCE, "the coarse index uses the hnswlib package instead")):
            name = extension_name(Path(source).stem)
            if version == "editable":
                out = root / Path(source).parent / name
            else:
                out = Path(tempfile.mkdtemp(prefix="mrl-kernel-")) / name
            problem = compile_kernel(root, out, source)
            if problem is not None:
                self.app.display_warning(f"mrl-retrievers: {Path(source).name} was not built; {instead} ({problem})")
                continue
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
            if version != "editable":
                build_data["force_include"][str(out)] = f"{Path(source).parent.as_posix()}/{name}"
