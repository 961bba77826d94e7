"""Find candidate batch files in the landing-zone folders, in a deterministic processing order.

Layout: ``<source>/<device_id>/<file>.{parquet,csv}``. Files that cannot be a batch (outside a valid
device folder, nested deeper, other extensions) are returned with a ``problem`` so the stage can
quarantine them under ``_unsorted``. ``README*`` files at a source's top level and hidden files or
folders (names starting with ``.``, e.g. the temp files of an atomic writer that is still writing or
crashed) are skipped. Reads no file contents and never modifies a source. Leaves out: hashing and
reading (the caller's job). A source is a local folder or an object-store prefix (``flows.storage``):
both are walked with the same pathlib calls.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge.contracts.names import is_valid_device_id
from edge.contracts.record import BATCH_EXTENSIONS
from flows.storage import StoragePath, check_reachable, location

if TYPE_CHECKING:
    from edge.contracts.layout import Paths
    from flows.params import Params

UNSORTED = "_unsorted"  # quarantine folder for files that are not in a valid <device_id>/ folder


@dataclass(frozen=True)
class Found:
    """One file in a source folder; ``problem`` says why it cannot be a batch (None: it can)."""

    path: StoragePath  # a pathlib.Path, or a upath.UPath for an object-store source
    source_index: int
    device_id: str  # the folder's device id, or UNSORTED when ``problem`` is set
    extension: str  # lower-case suffix without the dot ("" when none)
    problem: str | None = None

    @property
    def sort_key(self) -> tuple[str, str, int, str]:
        return (self.device_id, self.path.name, self.source_index, str(self.path))


def extension_of(path: StoragePath) -> str:
    return path.suffix[1:].lower()


def _hidden(path: StoragePath) -> bool:
    return path.name.startswith(".")


def _entries(folder: StoragePath) -> list[StoragePath]:
    """The folder's entries by name (one listing request for an object-store prefix)."""
    return sorted(folder.iterdir(), key=lambda p: p.name)


def _files_below(folder: StoragePath) -> Iterator[StoragePath]:
    """Every non-hidden file below ``folder`` (hidden folders are not entered)."""
    for entry in _entries(folder):
        if _hidden(entry):
            continue
        if entry.is_dir():
            yield from _files_below(entry)
        elif entry.is_file():
            yield entry


def _unsorted(path: StoragePath, index: int, problem: str) -> Found:
    return Found(path, index, UNSORTED, extension_of(path), problem)


def _in_device_folder(folder: StoragePath, index: int) -> Iterator[Found]:
    device_id = folder.name
    for path in _files_below(folder):
        if path.parent != folder:
            yield _unsorted(path, index, f"nested below the device folder {device_id!r}")
        elif extension_of(path) not in BATCH_EXTENSIONS:
            shown = path.suffix or "no extension"
            yield _unsorted(path, index, f"unsupported file type {shown!r} (expected .parquet or .csv)")
        else:
            yield Found(path, index, device_id, extension_of(path))


def _in_source(source: StoragePath, index: int) -> Iterator[Found]:
    if not source.is_dir():
        return
    for entry in _entries(source):
        if _hidden(entry):
            continue
        if entry.is_file():
            if not entry.name.upper().startswith("README"):
                yield _unsorted(entry, index, "not inside a <device_id>/ folder")
        elif entry.is_dir() and is_valid_device_id(entry.name):
            yield from _in_device_folder(entry, index)
        elif entry.is_dir():
            problem = f"folder {entry.name!r} is not a valid device id"
            yield from (_unsorted(p, index, problem) for p in _files_below(entry))


def source_locations(params: Params, paths: Paths) -> list[StoragePath]:
    """``ingest.sources`` as paths: local folders relative to the project, or ``s3://bucket/prefix``."""
    endpoint = params.storage.endpoint_url
    return [check_reachable(location(source, paths.root, endpoint)) for source in params.ingest.sources]


def discover(sources: Sequence[StoragePath]) -> list[Found]:
    """Candidates sorted by (device id, file name, source order), then the unsorted files.

    A missing source folder is simply empty.
    """
    found = [item for index, source in enumerate(sources) for item in _in_source(source, index)]
    batches = sorted((f for f in found if f.problem is None), key=lambda f: f.sort_key)
    strays = sorted((f for f in found if f.problem is not None), key=lambda f: (f.source_index, str(f.path)))
    return batches + strays
