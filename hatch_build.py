"""Build hook: compile the search's two extensions.

- ``mrl_retrievers/store/local/_kernel.c``: the rerank's scoring kernel (C).
- ``mrl_retrievers/store/local/_graph.cpp``: the coarse index's HNSW graph (hnswlib's headers,
  vendored under ``_hnswlib/``) and the fused search (C++17).

Each is one source file with no dependencies beyond Python's headers, so the hook calls the compiler
itself (no setuptools). A failed build is not a failed install: without the kernel the package scores
with its numpy twin (``store/local/kernel.py``), without the graph it uses the hnswlib package
(``store/local/ann.py``); both are slower and hand the GIL over more often, and ``mrl-retrievers
info`` says which serves. ``MRL_RETRIEVERS_KERNEL=numpy`` / ``MRL_RETRIEVERS_GRAPH=hnswlib`` at install
time skip building the one they replace. An editable install builds the extensions next to their sources (ignored by git); a wheel carries them.

The graph is compiled for the machine it is installed on (``-march=native``, as hnswlib's own build
does: its distance functions pick AVX/AVX-512 at compile time, and its float16 prefixes need F16C);
``MRL_RETRIEVERS_PORTABLE=1`` drops that for a wheel meant for other machines (float32 prefixes).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sysconfig
import tempfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class Extension:
    """One compiled module: its source, compiler, flags, and what serves without it. (A plain class:
    hatchling loads this file without registering it as a module, which ``dataclass`` needs.)"""

    def __init__(self, source: str, compiler: tuple[str, str], flags: tuple[str, ...], fallback: tuple[str, str],
                 instead: str, native: bool = False) -> None:
        self.source = source
        self.compiler = compiler  # (environment variable, default)
        self.flags = flags
        self.fallback = fallback  # (environment variable, value): the fallback asked for, so not built
        self.instead = instead  # what serves where it is not built
        self.native = native  # compiled for this CPU (-march=native) unless MRL_RETRIEVERS_PORTABLE is set

    @property
    def name(self) -> str:
        return Path(self.source).stem + (sysconfig.get_config_var("EXT_SUFFIX") or ".so")


# -ffp-contract=off: no fused multiply-add, so every CPU sums a score the same way (deterministic).
KERNEL = Extension("mrl_retrievers/store/local/_kernel.c", ("CC", "cc"),
                   ("-O3", "-ffp-contract=off", "-fPIC", "-shared", "-std=c11", "-Wall"),
                   ("MRL_RETRIEVERS_KERNEL", "numpy"), "searches score with numpy instead")
GRAPH = Extension("mrl_retrievers/store/local/_graph.cpp", ("CXX", "c++"),
                  ("-O3", "-ffp-contract=off", "-fPIC", "-shared", "-std=c++17", "-Wall", "-Wno-unused-function",
                   "-fvisibility=hidden", "-pthread"),
                  ("MRL_RETRIEVERS_GRAPH", "hnswlib"), "the coarse index uses the hnswlib package instead", native=True)


def flags(extension: Extension) -> list[str]:
    portable = os.environ.get("MRL_RETRIEVERS_PORTABLE", "").lower() in ("1", "true", "yes")
    return [*extension.flags, "-march=native"] if extension.native and not portable else [*extension.flags]


def compile_extension(root: Path, out: Path, extension: Extension = KERNEL) -> str | None:
    """Compile an extension to ``out``; None on success, else the reason it could not be built."""
    variable, default = extension.compiler
    compiler = shlex.split(os.environ.get(variable) or default)
    include = sysconfig.get_paths()["include"]
    command = [*compiler, *flags(extension), f"-I{include}", str(root / extension.source), "-o", str(out)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{' '.join(command)}: {exc}"
    if done.returncode != 0:
        return f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-2000:]}"
    return None


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        for extension in (KERNEL, GRAPH):
            variable, value = extension.fallback
            if os.environ.get(variable, "").lower() == value:
                continue
            if version == "editable":
                out = root / Path(extension.source).parent / extension.name
            else:
                out = Path(tempfile.mkdtemp(prefix="mrl-kernel-")) / extension.name
            problem = compile_extension(root, out, extension)
            if problem is not None:
                self.app.display_warning(
                    f"mrl-retrievers: {Path(extension.source).name} was not built; {extension.instead} ({problem})")
                continue
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
            if version != "editable":
                build_data["force_include"][str(out)] = f"{Path(extension.source).parent.as_posix()}/{extension.name}"
