"""Progress bars for the command line (tqdm): totals, rate and ETA on a terminal, nothing otherwise.

Bars go to stderr and are silent when stderr is not a terminal (pipes, CI logs, tests) or when the
user asked for quiet, so output meant for machines never carries them.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def bar(total: int | None, *, unit: str, desc: str, quiet: bool = False, **options: Any) -> Any:
    """A ``tqdm`` bar (use as a context manager; ``update(n)`` as work is done), disabled when quiet
    or when stderr is not a terminal."""
    from tqdm import tqdm

    shown = not quiet and sys.stderr.isatty()
    if shown and _columns() == 0:  # a terminal that reports no size (some ptys): tqdm would draw nothing
        options.setdefault("ncols", 100)
        options.setdefault("nrows", 24)
    else:
        options.setdefault("dynamic_ncols", True)
    return tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, leave=False, disable=not shown, **options)


def _columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        return 0


__all__ = ["bar"]
