"""``python -m mrl_retrievers.bench {bench,tune,ingest,tune-check,adaptive-*,cost-model} ...`` (see ``cli.py``)."""

from __future__ import annotations

import sys

from ..errors import MRLError
from .cli import main

if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except MRLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
