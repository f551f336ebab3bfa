"""``StoreState``: everything an open store holds, as plain data.

Opening fills it (``opening.py``); checkpoints, maintenance, calibration, following and searching
take it as an argument. It calls none of them, so none of them points back at another through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .coarse import CoarseIndex
from .docstore import DocStore
from .fs import WriterLock
from .manifest import Manifest
from .records import HitRecords
from .search import RowChecks
from .vectors import VectorFile


@dataclass
class StoreState:
    """Everything an open store holds. Never references the MRLStore (so GC can finalize it)."""

    directory: Path
    read_only: bool
    temporary: bool
    manifest: Manifest
    docs: DocStore
    vectors: VectorFile
    ann: CoarseIndex
    epoch: int
    rows: int
    lock: WriterLock | None = None
    released: bool = field(default=False)
    ann_note: str | None = None  # why the coarse index was rebuilt on open, if it was
    checked: RowChecks = field(default_factory=RowChecks)  # rows whose checksum this handle verified
    records: HitRecords = field(default_factory=HitRecords)  # hits' ids, texts and metadata, checked
    token: tuple = ()  # the committed state this handle's index and map reflect (read-only handles)
    tomb_seq: int = 0  # tombstone-log position applied to the index (read-only handles)
    auto_calibrate: bool = True  # writes recalibrate the search effort when needed (tune and loads pause it)

    def set_manifest(self, manifest: Manifest) -> None:
        """Replace the manifest (atomic); SQLite's copy follows when the store's settings changed,
        and a change of the search settings is announced to read-only handles (``follow``)."""
        manifest.save(self.directory)
        if manifest.copy_text() != self.manifest.copy_text():
            self.docs.save_manifest_copy(manifest.copy_text())
        announce = manifest.search_settings() != self.manifest.search_settings()
        self.manifest = manifest
        if announce:
            self.docs.announce()


__all__ = ["StoreState"]
