"""Named crash points on the write and checkpoint paths: a hook for the reliability tests.

A test's writer subprocess calls ``arm(point, skip)`` before it works the store; when execution then
reaches that point (after passing it ``skip`` times) the process SIGKILLs itself, exactly as a power
cut or OOM kill would stop it. Nothing arms a point but an explicit ``arm`` call (no environment
variable is read), so a production process can never kill itself here; unarmed, the hook is one
comparison.

Points (``POINTS`` below) cover every step between "validated" and "acknowledged" plus the
checkpoint, compaction and reindex paths.
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "add:vectors-written",
    "add:vectors-synced",
    "add:mid-transaction",
    "add:committed",
    "add:ann-updated",
    "delete:mid-transaction",
    "delete:committed",
    "ann:temp-synced",
    "ann:renamed",
    "manifest:temp-written",
    "manifest:temp-synced",
    "manifest:renamed",
    "checkpoint:done",
    "compact:vectors-written",
    "compact:committed",
    "reindex:built",
)

_target: str | None = None
_skip = 0


def arm(point: str | None, skip: int = 0) -> None:
    """Make this process SIGKILL itself the ``skip + 1``-th time it reaches ``point`` (None: disarm)."""
    global _target, _skip
    if point is not None and point not in POINTS:
        raise ValueError(f"unknown crash point {point!r}; known: {', '.join(POINTS)}")
    _target, _skip = point, int(skip)


def crash_point(name: str) -> None:
    """SIGKILL this process if a test armed ``name``."""
    global _skip
    if _target is None or name != _target:
        return
    if _skip > 0:
        _skip -= 1
        return
    os.kill(os.getpid(), signal.SIGKILL)
