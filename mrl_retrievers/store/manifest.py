"""manifest.json: what a store is (format version, spec, widths, dtype, search defaults) and which
coarse-index file is current (with its row epoch, watermark and checksum).

It is small, JSON, and always replaced atomically. A manifest from a newer format version raises
``UnsupportedFormatError`` (not damage: never rebuild it); a malformed one raises
``CorruptStoreError``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, CorruptStoreError, UnsupportedFormatError
from ..types import EmbeddingSpec
from .effort import Calibration
from .fs import atomic_write_bytes

log = logging.getLogger("mrl_retrievers.store")

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
REPAIR_HINT = "run `mrl-retrievers verify {path}` to see what is wrong and `mrl-retrievers rebuild {path}` to repair it"

# Measured on seeded MRL-like data (`python -m mrl_retrievers.bench.defaults`): see docs/defaults.md.
DEFAULT_SHORTLIST = 200
DEFAULT_EF = 400
DEFAULT_EXACT_BELOW = 2048
DEFAULT_M = 16
# Build effort of the coarse graph. Measured at 1M x 1024 (docs/benchmarks.md, "Build"): 100 or 150
# save only 25% or 12% of the build, and the graph then misses neighbours that no setting in tune's
# grid recovers (recall@10 <= 0.987 at shortlist 400 / ef 800), while 200 reaches 0.998 there.
DEFAULT_EF_CONSTRUCTION = 200
# The recall@10 searches aim for when no shortlist/ef is given (per call: ``target_recall=``).
DEFAULT_TARGET_RECALL = 0.99


@dataclass(frozen=True)
class AnnState:
    """The current coarse-index file: derived data, valid only for the row ``epoch`` it was built on."""

    file: str | None = None  # None: no checkpoint yet (rebuilt from the vector file on open)
    epoch: int = 0  # vector-file generation the labels refer to
    watermark: int = 0  # rows [0, watermark) are in the file
    prefix_dim: int = 0
    size: int = 0
    crc32: int = 0


@dataclass(frozen=True)
class Manifest:
    full_dim: int
    prefix_dim: int
    dtype: str
    spec: EmbeddingSpec | None = None
    funnel_dim: int | None = None
    shortlist: int = DEFAULT_SHORTLIST
    ef: int = DEFAULT_EF
    exact_below: int = DEFAULT_EXACT_BELOW
    M: int = DEFAULT_M
    ef_construction: int = DEFAULT_EF_CONSTRUCTION
    ann: AnnState = field(default_factory=AnnState)
    format_version: int = FORMAT_VERSION
    # Added within format 1 (older manifests lack them and read as these defaults): the recall
    # searches aim for (None: the fixed shortlist/ef above), and what calibration measured.
    target_recall: float | None = DEFAULT_TARGET_RECALL
    calibration: Calibration | None = None

    def to_json(self) -> bytes:
        data = dataclasses.asdict(dataclasses.replace(self, calibration=None))
        data["spec"] = self.spec.to_dict() if self.spec else None
        data["calibration"] = self.calibration.to_dict() if self.calibration else None
        return json.dumps(data, indent=2, sort_keys=True).encode()

    def save(self, directory: Path) -> None:
        atomic_write_bytes(directory / MANIFEST_NAME, self.to_json(), point="manifest")


_INT_FIELDS = ("full_dim", "prefix_dim", "shortlist", "ef", "exact_below", "M", "ef_construction")


def load_manifest(directory: Path) -> Manifest:
    """Read and validate ``directory/manifest.json``."""
    path = directory / MANIFEST_NAME
    hint = REPAIR_HINT.format(path=directory)
    try:
        data = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptStoreError(f"{path} is not valid JSON ({exc}); {hint}") from None
    if not isinstance(data, dict):
        raise CorruptStoreError(f"{path} is not a JSON object; {hint}")
    version = data.get("format_version")
    if not _is_int(version) or version < 1:
        raise CorruptStoreError(f"{path} has no valid format_version ({version!r}); {hint}")
    if version > FORMAT_VERSION:
        raise UnsupportedFormatError(
            f"store {directory} was written by format version {version}; this mrl-retrievers reads "
            f"up to version {FORMAT_VERSION}. Upgrade mrl-retrievers (the store is not damaged: do not rebuild it)."
        )
    try:
        return _parse(data)
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CorruptStoreError(f"{path} is malformed ({type(exc).__name__}: {exc}); {hint}") from None


def _parse(data: dict[str, Any]) -> Manifest:
    for name in _INT_FIELDS:
        if not _is_int(data[name]) or data[name] < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {data[name]!r}")
    if not 1 <= data["prefix_dim"] <= data["full_dim"] or data["full_dim"] > 65536:
        raise ValueError(f"bad widths: prefix_dim={data['prefix_dim']} full_dim={data['full_dim']}")
    if data["dtype"] not in ("float16", "float32"):
        raise ValueError(f"unknown dtype {data['dtype']!r}")
    funnel = data.get("funnel_dim")
    if funnel is not None and (not _is_int(funnel) or not data["prefix_dim"] < funnel < data["full_dim"]):
        raise ValueError(f"bad funnel_dim {funnel!r}")
    ann = data.get("ann") or {}
    if not isinstance(ann, dict):
        raise ValueError("ann must be an object")
    ann_state = AnnState(**ann)
    for name in ("epoch", "watermark", "prefix_dim", "size", "crc32"):
        if not _is_int(getattr(ann_state, name)) or getattr(ann_state, name) < 0:
            raise ValueError(f"ann.{name} must be a non-negative integer")
    if ann_state.file is not None and (not isinstance(ann_state.file, str) or "/" in ann_state.file or ann_state.file.startswith(".")):
        raise ValueError(f"ann.file must be a plain file name, got {ann_state.file!r}")
    spec = EmbeddingSpec.from_dict(data["spec"]) if data.get("spec") else None
    target = data.get("target_recall", DEFAULT_TARGET_RECALL)
    if target is not None and (isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1):
        raise ValueError(f"target_recall must lie in (0, 1] or be null, got {target!r}")
    return Manifest(
        full_dim=data["full_dim"],
        prefix_dim=data["prefix_dim"],
        dtype=data["dtype"],
        spec=spec,
        funnel_dim=funnel,
        shortlist=max(1, data["shortlist"]),
        ef=max(1, data["ef"]),
        exact_below=data["exact_below"],
        M=max(2, data["M"]),
        ef_construction=max(1, data["ef_construction"]),
        ann=ann_state,
        format_version=data["format_version"],
        target_recall=None if target is None else float(target),
        calibration=_calibration(data.get("calibration")),
    )


def _calibration(data: Any) -> Calibration | None:
    """The recorded calibration, or None when absent or unreadable: it is derived (re-measured at the
    next checkpoint), so a damaged one must not make the store unopenable."""
    if data is None:
        return None
    try:
        return Calibration.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning("ignoring an unreadable calibration in a manifest (%s: %s); it is re-measured at the next checkpoint",
                    type(exc).__name__, exc)
        return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
