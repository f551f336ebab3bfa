"""Named crash points on the write and checkpoint paths: a test-only hook.

The reliability tests start a writer subprocess with ``MRL_CRASH_AT=<point>`` (optionally
``MRL_CRASH_SKIP=<n>`` to pass the point n times first); when execution reaches that point the
process SIGKILLs itself, exactly as a power cut or OOM kill would stop it. Without the variable the
hook is a dictionary lookup and nothing else.

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

_target = os.environ.get("MRL_CRASH_AT")
_skip = int(os.environ.get("MRL_CRASH_SKIP", "0") or 0)


def crash_point(name: str) -> None:
    """SIGKILL this process if the tests asked to crash at ``name``."""
    global _skip
    if _target is None or name != _target:
        return
    if _skip > 0:
        _skip -= 1
        return
    os.kill(os.getpid(), signal.SIGKILL)
