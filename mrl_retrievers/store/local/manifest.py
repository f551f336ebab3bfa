"""manifest.json: what a store is (format version, spec, widths, dtype, search defaults) and which
coarse-index file is current (with its row epoch, watermark and checksum).

It is small, JSON, and always replaced atomically. Since format 2 it carries a CRC-32 of its own
content (``checksum``), so a changed digit (``full_dim`` 64 -> 44) is damage, found before any
number in it is trusted; docs.sqlite keeps a copy without the derived ``ann`` state, from which
``rebuild`` can reconstruct a damaged manifest. A manifest from a newer format version raises
``UnsupportedFormatError`` (not damage: never rebuild it); a malformed one raises
``CorruptStoreError``. Format 1 manifests (no checksum) are read as before and rewritten as format 2
by the next writer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...checks import positive_int
from ...errors import ConfigError, CorruptStoreError, UnsupportedFormatError
from ...types import EmbeddingSpec
from ..defaults import (
    DEFAULT_EF,
    DEFAULT_EF_CONSTRUCTION,
    DEFAULT_EXACT_BELOW,
    DEFAULT_M,
    DEFAULT_SEGMENT_ROWS,
    DEFAULT_SHORTLIST,
    DEFAULT_TARGET_RECALL,
    MAX_EF_CONSTRUCTION,
    MAX_M,
    MIN_CALIBRATED_LIVE,
)
from ..effort import Calibration
from .fs import atomic_write_bytes

log = logging.getLogger("mrl_retrievers.store")

FORMAT_VERSION = 2
MANIFEST_NAME = "manifest.json"
REPAIR_HINT = "run `mrl-retrievers verify {path}` to see what is wrong and `mrl-retrievers rebuild {path}` to repair it"

@dataclass(frozen=True)
class SegmentState:
    """One checkpoint file of the coarse index: the segment's rows below ``watermark`` are in it."""

    file: str
    watermark: int
    size: int
    crc32: int

@dataclass(frozen=True)
class AnnState:
    """The coarse index's checkpoint files: derived data, valid only for the row ``epoch`` they were
    built on, at ``prefix_dim``, cut into segments of ``segment_rows`` (0: one unbounded segment).
    ``segments[i]`` is segment i's file, or None if it has none yet (rebuilt from the vector file)."""

    epoch: int = 0
    prefix_dim: int = 0
    segment_rows: int = 0
    segments: tuple[SegmentState | None, ...] = ()

    @property
    def files(self) -> set[str]:
        return {s.file for s in self.segments if s is not None}

    def watermark(self, number: int) -> int:
        """Rows (absolute) below which segment ``number``'s file holds its rows (0: no file)."""
        if number >= len(self.segments) or self.segments[number] is None:
            return 0
        return self.segments[number].watermark


# What a search reads beside the index: a read-only handle takes these from a newer manifest while its
# rows and index stay (``follow``), and the writer announces a change of them (``StoreState.set_manifest``).
SEARCH_SETTINGS = ("target_recall", "calibration", "shortlist", "ef")


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
    segment_rows: int = DEFAULT_SEGMENT_ROWS
    ann: AnnState = field(default_factory=AnnState)
    format_version: int = FORMAT_VERSION
    # Optional fields (manifests written before them read as these defaults): the recall searches
    # aim for (None: the fixed shortlist/ef above), and what calibration measured (derived).
    target_recall: float | None = DEFAULT_TARGET_RECALL
    calibration: Calibration | None = None

    def search_settings(self) -> tuple:
        return tuple(getattr(self, name) for name in SEARCH_SETTINGS)

    def with_search_settings_of(self, newer: "Manifest") -> "Manifest":
        return dataclasses.replace(self, **{name: getattr(newer, name) for name in SEARCH_SETTINGS})

    def to_json(self) -> bytes:
        data = dataclasses.asdict(dataclasses.replace(self, calibration=None))
        data["spec"] = self.spec.to_dict() if self.spec else None
        data["calibration"] = self.calibration.to_dict() if self.calibration else None
        data["format_version"] = FORMAT_VERSION
        data["checksum"] = _checksum(data)
        return json.dumps(data, indent=2, sort_keys=True).encode()

    def copy_text(self) -> str:
        """The manifest without its derived index state: what docs.sqlite keeps for ``rebuild``."""
        return dataclasses.replace(self, ann=AnnState(), calibration=None).to_json().decode()

    def save(self, directory: Path) -> None:
        atomic_write_bytes(directory / MANIFEST_NAME, self.to_json(), point="manifest")


def calibrates(manifest: Manifest, live: int) -> bool:
    """Whether a store with this manifest and ``live`` items calibrates its search effort: it has a
    target, no funnel (the climb needs every candidate's full score), and more items than it scans
    exactly and than a calibration can probe (``MIN_CALIBRATED_LIVE``). Reads only those fields."""
    return (manifest.target_recall is not None and manifest.funnel_dim is None
            and live > max(manifest.exact_below, MIN_CALIBRATED_LIVE))


def _checksum(data: dict[str, Any]) -> int:
    body = {k: v for k, v in data.items() if k != "checksum"}
    return zlib.crc32(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


_INT_FIELDS = ("full_dim", "prefix_dim", "shortlist", "ef", "exact_below", "M", "ef_construction")


def load_manifest(directory: Path) -> Manifest:
    """Read and validate ``directory/manifest.json``."""
    path = directory / MANIFEST_NAME
    return parse_manifest(path.read_bytes(), where=str(path), hint=REPAIR_HINT.format(path=directory), directory=directory)


def parse_manifest(raw: bytes | str, *, where: str, hint: str, directory: Path) -> Manifest:
    """Validate manifest JSON (the file, or the copy in docs.sqlite)."""
    path = where
    try:
        data = json.loads(raw)
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
    if "checksum" in data and (not _is_int(data["checksum"]) or data["checksum"] != _checksum(data)):
        raise CorruptStoreError(f"{path} fails its checksum (a byte of it changed); {hint}")
    if version >= 2 and "checksum" not in data:
        raise CorruptStoreError(f"{path} has no checksum; {hint}")
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
    ann_state = _parse_ann(data.get("ann") or {})
    if data["M"] > MAX_M or data["ef_construction"] > MAX_EF_CONSTRUCTION:
        raise ValueError(f"M={data['M']} / ef_construction={data['ef_construction']} beyond what the index format holds")
    segment_rows = positive_int("segment_rows", data.get("segment_rows", DEFAULT_SEGMENT_ROWS), error=ValueError)
    spec = EmbeddingSpec.from_dict(data["spec"]) if data.get("spec") else None
    if spec is not None and spec.dim != data["full_dim"]:
        raise ValueError(f"spec.dim ({spec.dim}) differs from full_dim ({data['full_dim']})")
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
        segment_rows=segment_rows,
        ann=ann_state,
        format_version=data["format_version"],
        target_recall=None if target is None else float(target),
        calibration=_calibration(data.get("calibration")),
    )


def _parse_ann(ann: Any) -> AnnState:
    """The ``ann`` object; format 1's single file ({file, epoch, watermark, ...}) is one unbounded segment."""
    if not isinstance(ann, dict):
        raise ValueError("ann must be an object")
    if "segments" not in ann:  # format 1
        legacy = {k: ann.get(k, 0) for k in ("epoch", "watermark", "prefix_dim", "size", "crc32")}
        segment = None
        if ann.get("file") is not None:
            segment = {"file": ann["file"], "watermark": legacy["watermark"], "size": legacy["size"], "crc32": legacy["crc32"]}
        ann = {"epoch": legacy["epoch"], "prefix_dim": legacy["prefix_dim"], "segment_rows": 0,
               "segments": [segment] if segment else []}
    if set(ann) != {"epoch", "prefix_dim", "segment_rows", "segments"} or not isinstance(ann["segments"], list):
        raise ValueError(f"ann has unexpected fields {sorted(ann)}")
    for name in ("epoch", "prefix_dim", "segment_rows"):
        if not _is_int(ann[name]) or ann[name] < 0:
            raise ValueError(f"ann.{name} must be a non-negative integer")
    segments = []
    for i, seg in enumerate(ann["segments"]):
        if seg is None:
            segments.append(None)
            continue
        if not isinstance(seg, dict) or set(seg) != {"file", "watermark", "size", "crc32"}:
            raise ValueError(f"ann.segments[{i}] must be an object with file, watermark, size and crc32")
        for name in ("watermark", "size", "crc32"):
            if not _is_int(seg[name]) or seg[name] < 0:
                raise ValueError(f"ann.segments[{i}].{name} must be a non-negative integer")
        name = seg["file"]
        if not isinstance(name, str) or "/" in name or name.startswith(".") or not name.endswith(".hnsw"):
            raise ValueError(f"ann.segments[{i}].file must be a plain .hnsw file name, got {name!r}")
        segments.append(SegmentState(**seg))
    return AnnState(epoch=ann["epoch"], prefix_dim=ann["prefix_dim"], segment_rows=ann["segment_rows"], segments=tuple(segments))


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
