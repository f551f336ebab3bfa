"""The real queries a calibration measured on, kept beside the manifest so the store can measure on
them again as it grows.

``calibrate(queries=...)`` and ``tune(queries=...)`` measure on the user's queries; a checkpoint past
``calibration.GROWTH`` recalibrates, and on probes it would measure a different distribution (on real
text the two disagree: docs/benchmarks.md, "The probes against the queries"). So the sample measured
on (at most ``probes`` rows, float32 as given) is saved as ``calibration-queries.<crc32>.npy`` and
the calibration records that CRC (``Calibration.queries_crc``); a checkpoint loads it and measures
on it again. The file is written (atomically, durably) before the manifest that names it, and files
no manifest names are removed after the manifest is saved and on open: a crash between the two
leaves an orphan, never a manifest naming a missing file. If the file is gone or damaged anyway, the
next checkpoint says so in the log and measures on probes; ``verify`` warns (the items are intact).
"""

from __future__ import annotations

import io
import logging
import re
import zlib
from pathlib import Path

import numpy as np

from ..effort import Calibration
from .fs import atomic_write_bytes, fsync_dir

log = logging.getLogger("mrl_retrievers.store")

PATTERN = re.compile(r"^calibration-queries\.[0-9a-f]{8}\.npy$")


def file_name(crc: int) -> str:
    return f"calibration-queries.{crc:08x}.npy"


def save(directory: Path, sample: np.ndarray) -> int:
    """Write ``sample`` (unless a file of the same content is there) and return its CRC-32."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(sample, dtype=np.float32), allow_pickle=False)
    data = buffer.getvalue()
    crc = zlib.crc32(data)
    path = directory / file_name(crc)
    if not path.exists():
        atomic_write_bytes(path, data, point="calibration-queries")
    return crc


def _read(directory: Path, cal: Calibration, full_dim: int) -> tuple[np.ndarray | None, str | None]:
    """(the sample ``cal`` names, None) when it reads back intact, else (None, what is wrong)."""
    path = directory / file_name(cal.queries_crc)  # type: ignore[arg-type]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, f"{path.name} (the queries the calibration measured on) is missing"
    if zlib.crc32(data) != cal.queries_crc:
        return None, f"{path.name} (the queries the calibration measured on) does not match its checksum"
    sample = np.load(io.BytesIO(data), allow_pickle=False)
    if sample.ndim != 2 or sample.shape[1] != full_dim or len(sample) != cal.probes:
        return None, f"{path.name} holds {sample.shape}, not the calibration's {cal.probes} x {full_dim} queries"
    return sample, None


def problem(directory: Path, cal: Calibration | None, full_dim: int) -> str | None:
    """What is wrong with the sample ``cal`` names (None: nothing, or it names none)."""
    if cal is None or cal.queries_crc is None:
        return None
    return _read(directory, cal, full_dim)[1]


def load(directory: Path, cal: Calibration, full_dim: int) -> np.ndarray | None:
    """The sample ``cal`` was measured on, or None (logged) when it cannot be read back intact."""
    sample, found = _read(directory, cal, full_dim)
    if found is not None:
        log.warning("%s: %s; the search effort is recalibrated on probes instead (calibrate(queries=...) again)",
                    directory, found)
    return sample


def remove_unused(directory: Path, cal: Calibration | None) -> list[str]:
    """Delete the samples the current calibration does not name; returns their names.

    Best effort: it runs after the manifest is saved, so a file that cannot be removed (a
    read-only directory, an I/O error) is logged and left for the next open to remove; it names
    nothing the manifest uses, and the calibration just recorded must not be reported as failed.
    """
    keep = None if cal is None or cal.queries_crc is None else file_name(cal.queries_crc)
    removed = []
    try:
        for entry in directory.iterdir():
            if PATTERN.match(entry.name) and entry.name != keep:
                entry.unlink()
                removed.append(entry.name)
        if removed:
            fsync_dir(directory)
    except OSError as exc:
        log.warning("%s: could not remove an unused calibration query sample (%s); the next open retries", directory, exc)
    return removed


__all__ = ["PATTERN", "file_name", "load", "problem", "remove_unused", "save"]
