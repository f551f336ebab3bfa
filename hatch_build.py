"""Build hook: compile the search's scoring kernel (``mrl_retrievers/store/local/_kernel.c``).

One C file, no dependencies beyond Python's headers, so the hook calls the C compiler itself (no
setuptools). A failed build is not a failed install: the package then scores with its numpy twin
(``store/local/kernel.py``), slower and with more GIL hand-overs, and says so in ``doctor``. An
editable install builds the extension next to its source (ignored by git); a wheel carries it.
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
# -ffp-contract=off: no fused multiply-add, so every CPU sums a score the same way (deterministic).
FLAGS = ["-O3", "-ffp-contract=off", "-fPIC", "-shared", "-std=c11", "-Wall"]


def extension_name() -> str:
    return "_kernel" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so")


def compile_kernel(root: Path, out: Path) -> str | None:
    """Compile the kernel to ``out``; None on success, else the reason it could not be built."""
    compiler = shlex.split(os.environ.get("CC") or "cc")
    include = sysconfig.get_paths()["include"]
    command = [*compiler, *FLAGS, f"-I{include}", str(root / SOURCE), "-o", str(out)]
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
        name = extension_name()
        if version == "editable":
            out = root / Path(SOURCE).parent / name
        else:
            out = Path(tempfile.mkdtemp(prefix="mrl-kernel-")) / name
        problem = compile_kernel(root, out)
        if problem is not None:
            self.app.display_warning(
                f"mrl-retrievers: the compiled scoring kernel was not built; searches use numpy instead ({problem})"
            )
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            build_data["force_include"][str(out)] = f"{Path(SOURCE).parent.as_posix()}/{name}"
