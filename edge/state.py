"""The edge runner's state directory: installed releases, the ``current``/``previous`` links, state.json.

Layout of ``StateDir(path)``::

    releases/<version>/     model file + manifest.json, complete and fsynced (never edited in place)
    releases/<version>.partial-XXXX/   a copy in progress (``install``); recover() quarantines leftovers
    current -> releases/<v> previous -> releases/<v>   relative symlinks, swapped atomically
    staging/                fetch_release's destination (edge.releases)
    tuf/                    the python-tuf metadata cache
    quarantine/             anything found broken: moved here, never deleted
    state.json              {activation: {version, activated_at, previous}, blocked: {version: reason}, events}
    runner.lock             exclusive flock held by the one runner using this directory
    spool.db, recent.db     the upload spool and the recent labelled rows (edge.spool; ``SPOOL_FILE``, ``RECENT_FILE``)
    status.json             what the running daemon last reported (edge.reporting; ``STATUS_FILE``)

The links are the truth about what runs; ``state.json`` (written atomically) records when and why. A
link is swapped by creating a temporary link beside it and ``os.replace``-ing it over, then fsyncing the
directory, so a reader (or a runner restarted after kill -9) sees the old target or the new one.

Crash safety, step by step. ``install`` copies into a ``.partial`` folder, fsyncs every file and the
folder, then renames it to ``releases/<version>``: a release folder either is complete or has a
``.partial`` name. ``activate(v)`` first points ``previous`` at the current release, then ``current``
at ``v``, then records state.json: at every instant ``current`` names a complete release.
``rollback`` first records the bad version as blocked, then points ``current`` at ``previous``, then
drops ``previous``; ``recover`` finishes a rollback a crash interrupted (``current`` blocked while a
good ``previous`` exists). ``recover`` also quarantines partial or incomplete release folders (checked
against their manifest's size and sha256), removes leftover temporary links and half-pruned folders,
falls back to ``previous`` when ``current`` is dangling or incomplete, and makes state.json agree with
the links.

Only one process may change a state directory: ``lock()`` takes ``runner.lock`` (non-blocking) and
fails with ``another edge-runner holds <dir>`` otherwise. Within a process, calls are serialised.

Leaves out: fetching (edge.releases), deciding whether a release is good (edge.shadow, edge.updates),
running models (edge.inference). Standard library only.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.atomic import fsync_dir, write_text_atomic
from edge.contracts.manifest import Manifest, ManifestError
from edge.contracts.names import VERSION_PATTERN
from edge.contracts.release_layout import MANIFEST_FILE

__all__ = [
    "KEEP_RELEASES",
    "MAX_EVENTS",
    "RECENT_FILE",
    "SPOOL_FILE",
    "STATUS_FILE",
    "Activation",
    "StateDir",
    "StateError",
    "StateLock",
    "StateLocked",
    "release_problem",
]

SPOOL_FILE = "spool.db"
RECENT_FILE = "recent.db"
STATUS_FILE = "status.json"
KEEP_RELEASES = 3  # newest release folders kept besides current and previous
MAX_EVENTS = 100  # newest events kept in state.json
_PARTIAL = ".partial-"
_REMOVING = ".removing-"
_LINKS = ("current", "previous")


class StateError(RuntimeError):
    """The state directory cannot do what was asked (nothing to roll back to, release not installed)."""


class StateLocked(StateError):
    """Another runner holds the state directory."""


@dataclass(frozen=True)
class Activation:
    version: str
    activated_at: str  # ISO-8601 UTC
    previous: str | None


class StateLock:
    """The exclusive lock on ``runner.lock``; released by ``release()``, on exit, or when the process dies."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _version_key(name: str) -> tuple[int, int, str]:
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def release_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a complete release (manifest valid, named after its version, model size and
    sha256 as the manifest says), or None when it is."""
    try:
        manifest = Manifest.from_json((folder / MANIFEST_FILE).read_bytes())
    except FileNotFoundError:
        return f"{MANIFEST_FILE} is missing"
    except (ManifestError, OSError) as exc:
        return f"{MANIFEST_FILE}: {exc}"
    if manifest.version != folder.name:
        return f"manifest says version {manifest.version!r}, the folder is {folder.name!r}"
    model = folder / manifest.model.file
    try:
        digest = hashlib.sha256()
        size = 0
        with model.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
    except OSError as exc:
        return f"{manifest.model.file}: {exc.strerror or exc}"
    if size != manifest.model.bytes or digest.hexdigest() != manifest.model.sha256:
        return f"{manifest.model.file} is not the model the manifest names (size or sha256)"
    return None


class StateDir:
    """One runner's state directory (see the module docstring). Create the folders with ``recover()``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.releases_dir = self.path / "releases"
        self.staging_dir = self.path / "staging"
        self.tuf_dir = self.path / "tuf"
        self.quarantine_dir = self.path / "quarantine"
        self.state_file = self.path / "state.json"
        self.lock_file = self.path / "runner.lock"
        self._mutex = threading.RLock()

    def __repr__(self) -> str:
        return f"StateDir({str(self.path)!r})"

    # -- locking --

    def lock(self) -> StateLock:
        """Take the runner lock for the life of the runner; ``StateLocked`` when another runner holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise StateLocked(f"another edge-runner holds {self.path}{who}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return StateLock(fd)

    # -- reading --

    def release_folder(self, version: str) -> Path:
        if not VERSION_PATTERN.match(version) or _PARTIAL in version or _REMOVING in version:
            raise StateError(f"{version!r} is not a release version")
        return self.releases_dir / version

    def _link(self, name: str) -> str | None:
        """The version a link names (None when absent), without checking the folder."""
        try:
            target = os.readlink(self.path / name)
        except (FileNotFoundError, OSError):
            return None
        parts = Path(target).parts
        return parts[1] if len(parts) == 2 and parts[0] == "releases" else None

    def current_version(self) -> str | None:
        return self._link("current")

    def previous_version(self) -> str | None:
        return self._link("previous")

    def current_folder(self) -> Path | None:
        version = self._link("current")
        return None if version is None else self.releases_dir / version

    def previous_folder(self) -> Path | None:
        version = self._link("previous")
        return None if version is None else self.releases_dir / version

    def installed(self) -> list[str]:
        """Versions with a release folder (complete ones, once ``recover`` ran), oldest first."""
        if not self.releases_dir.is_dir():
            return []
        names = [p.name for p in self.releases_dir.iterdir() if p.is_dir() and VERSION_PATTERN.match(p.name)
                 and _PARTIAL not in p.name and _REMOVING not in p.name]
        return sorted(names, key=_version_key)

    def activation(self) -> Activation | None:
        raw = self._read().get("activation")
        if not isinstance(raw, dict) or not isinstance(raw.get("version"), str):
            return None
        previous = raw.get("previous")
        return Activation(
            raw["version"], str(raw.get("activated_at", "")), previous if isinstance(previous, str) else None
        )

    def blocked_versions(self) -> dict[str, str]:
        """Versions refused or rolled back on this device -> why. Not installed again."""
        return dict(self._read().get("blocked", {}))

    def events(self) -> list[dict[str, Any]]:
        """The newest events (oldest first): {seq, at, event, version, detail}; ``seq`` only grows."""
        return list(self._read().get("events", []))

    # -- state.json --

    def _read(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # recover() quarantines an unreadable file; readers see an empty record meanwhile
        return raw if isinstance(raw, dict) else {}

    def _write(self, state: dict[str, Any]) -> None:
        sequence = int(state.get("next_seq", 1))
        for event in state.get("events", []):  # a sequence number per event: the heartbeat sends the new ones
            if "seq" not in event:
                event["seq"], sequence = sequence, sequence + 1
        state["next_seq"] = sequence
        state["events"] = state.get("events", [])[-MAX_EVENTS:]
        write_text_atomic(self.state_file, json.dumps(state, indent=2, sort_keys=True) + "\n")

    def record(self, event: str, version: str | None = None, detail: str = "") -> None:
        """Append an event to state.json (kept: the newest ``MAX_EVENTS``)."""
        with self._mutex:
            state = self._read()
            state.setdefault("events", []).append({"at": _now(), "event": event, "version": version, "detail": detail})
            self._write(state)

    def block(self, version: str, reason: str) -> None:
        """Refuse ``version`` from now on (until a newer release appears); records an event."""
        with self._mutex:
            state = self._read()
            state.setdefault("blocked", {})[version] = reason
            state.setdefault("events", []).append({"at": _now(), "event": "blocked", "version": version,
                                                   "detail": reason})
            self._write(state)

    # -- links --

    def _set_link(self, name: str, version: str | None) -> None:
        link = self.path / name
        if version is None:
            if os.path.lexists(link):
                link.unlink()
                fsync_dir(self.path)
            return
        temporary = self.path / f".{name}.tmp-{uuid.uuid4().hex}"
        os.symlink(f"releases/{version}", temporary)
        os.replace(temporary, link)
        fsync_dir(self.path)

    # -- changing --

    def install(self, staged: Path) -> Path:
        """Copy the release in ``staged`` (manifest.json + its model) into ``releases/<version>``, durably.

        Idempotent: an already complete folder is kept. The copy is checked against the manifest's digest.
        """
        staged = Path(staged)
        manifest = Manifest.from_json((staged / MANIFEST_FILE).read_bytes())
        with self._mutex:
            final = self.release_folder(manifest.version)
            if final.is_dir():
                if release_problem(final) is None:
                    return final
                self._quarantine(final, "incomplete release folder")
            self.releases_dir.mkdir(parents=True, exist_ok=True)
            partial = Path(tempfile.mkdtemp(prefix=f"{manifest.version}{_PARTIAL}", dir=self.releases_dir))
            try:
                _copy_verified(staged / manifest.model.file, partial / manifest.model.file, manifest)
                _copy_durable(staged / MANIFEST_FILE, partial / MANIFEST_FILE)
            except (OSError, StateError) as exc:
                self._quarantine(partial, f"copy of {staged} failed: {exc}")
                raise
            partial.chmod(0o755)
            fsync_dir(partial)
            os.rename(partial, final)
            fsync_dir(self.releases_dir)
            return final

    def activate(self, version: str) -> Activation:
        """Serve ``version`` (installed): previous := current, current := version, then state.json."""
        with self._mutex:
            folder = self.release_folder(version)
            problem = release_problem(folder)
            if problem is not None:
                raise StateError(f"release {version} is not installed completely: {problem}")
            current = self.current_version()
            if current == version:
                activation = self.activation()
                if activation is not None and activation.version == version:
                    return activation
            previous = current if current is not None and current != version else self.previous_version()
            if previous is not None and previous != version:
                self._set_link("previous", previous)
            self._set_link("current", version)
            if previous == version:
                previous = None
                self._set_link("previous", None)
            activation = Activation(version, _now(), previous)
            state = self._read()
            state["activation"] = _activation_dict(activation)
            state.setdefault("events", []).append({"at": activation.activated_at, "event": "activated",
                                                   "version": version, "detail": f"previous: {previous}"})
            self._write(state)
            self.prune()
            return activation

    def rollback(self, reason: str) -> str:
        """current := previous, previous := none; the rolled-back version is blocked. Returns the version
        now current. ``StateError`` when there is no complete previous release."""
        with self._mutex:
            bad, good = self.current_version(), self.previous_version()
            if good is None or good == bad or release_problem(self.releases_dir / good) is not None:
                raise StateError(f"no previous release to roll back to (current: {bad})")
            if bad is not None:
                self.block(bad, f"rolled back: {reason}")
            self._finish_rollback(good, bad, reason)
            return good

    def _finish_rollback(self, good: str, bad: str | None, reason: str) -> None:
        self._set_link("current", good)
        self._set_link("previous", None)
        state = self._read()
        now = _now()
        state["activation"] = _activation_dict(Activation(good, now, None))
        state.setdefault("events", []).append({"at": now, "event": "rolled_back", "version": bad,
                                               "detail": f"now serving {good}: {reason}"})
        self._write(state)

    def prune(self) -> list[str]:
        """Remove release folders beyond current, previous and the newest ``KEEP_RELEASES``; returns them."""
        with self._mutex:
            keep = {self.current_version(), self.previous_version()}
            installed = self.installed()
            keep.update(installed[-KEEP_RELEASES:])
            removed = [v for v in installed if v not in keep]
            for version in removed:
                doomed = self.releases_dir / f".{version}{_REMOVING}{uuid.uuid4().hex}"
                os.rename(self.releases_dir / version, doomed)
                fsync_dir(self.releases_dir)
                shutil.rmtree(doomed)
            return removed

    # -- start-up --

    def recover(self) -> list[Path]:
        """Make the directory consistent after any crash (see the module docstring); returns what was
        quarantined. Call once at start, holding the lock, before loading ``current``."""
        with self._mutex:
            for folder in (self.releases_dir, self.staging_dir, self.tuf_dir, self.quarantine_dir):
                folder.mkdir(parents=True, exist_ok=True)
            moved: list[Path] = []
            self._recover_state_file(moved)
            for leftover in self.path.glob(".*.tmp-*"):
                if leftover.is_symlink():
                    leftover.unlink()
            for entry in sorted(self.releases_dir.iterdir()):
                if _REMOVING in entry.name:
                    shutil.rmtree(entry, ignore_errors=True)  # a prune that was interrupted: finish it
                elif _PARTIAL in entry.name:
                    moved.append(self._quarantine(entry, "partial copy"))
                elif not entry.is_dir() or entry.is_symlink():
                    moved.append(self._quarantine(entry, "not a release folder"))
                else:
                    problem = release_problem(entry)
                    if problem is not None:
                        moved.append(self._quarantine(entry, problem))
            for entry in sorted(self.staging_dir.glob(f".*{_PARTIAL}*")):
                moved.append(self._quarantine(entry, "partial download"))
            self._recover_links()
            return moved

    def _recover_state_file(self, moved: list[Path]) -> None:
        if not self.state_file.exists():
            return
        try:
            raw = json.loads(self.state_file.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("not an object")
        except (OSError, ValueError):
            moved.append(self._quarantine(self.state_file, "unreadable state.json"))

    def _complete(self, version: str | None) -> bool:
        return version is not None and (self.releases_dir / version).is_dir()  # recover checked the folders

    def _recover_links(self) -> None:
        current, previous = self.current_version(), self.previous_version()
        blocked = self.blocked_versions()
        if not self._complete(current):
            if os.path.lexists(self.path / "current"):
                self.record("recovered", current, "current release missing or incomplete")
            current = previous if self._complete(previous) else None
            self._set_link("current", current)
            previous = None
        elif current in blocked and self._complete(previous) and previous not in blocked and previous != current:
            assert previous is not None and current is not None
            self._finish_rollback(previous, current, "finishing an interrupted rollback")
            current, previous = previous, None
        if previous is not None and (not self._complete(previous) or previous == current or previous in blocked):
            previous = None
        if previous != self.previous_version():
            self._set_link("previous", previous)
        self._recover_activation(current, previous)

    def _recover_activation(self, current: str | None, previous: str | None) -> None:
        state = self._read()
        recorded = state.get("activation")
        wanted = None if current is None else {"version": current, "previous": previous}
        have = None if not isinstance(recorded, dict) else {k: recorded.get(k) for k in ("version", "previous")}
        if have == wanted:
            return
        state["activation"] = None if current is None else _activation_dict(Activation(current, _now(), previous))
        state.setdefault("events", []).append({"at": _now(), "event": "recovered", "version": current,
                                               "detail": f"links say current {current}, previous {previous}"})
        self._write(state)

    def _quarantine(self, path: Path, reason: str) -> Path:
        """Move ``path`` under quarantine/ (never delete it) and record why."""
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = self.quarantine_dir / f"{stamp}-{path.parent.name}-{path.name.lstrip('.')}"
        os.rename(path, target)
        fsync_dir(path.parent)
        fsync_dir(self.quarantine_dir)
        self.record("quarantined", None, f"{path.relative_to(self.path)}: {reason}")
        return target

    def quarantine(self, path: Path, reason: str) -> Path:
        """Move a bad bundle (e.g. a staged release the device refused) under quarantine/."""
        with self._mutex:
            return self._quarantine(Path(path), reason)


def _activation_dict(activation: Activation) -> dict[str, Any]:
    return {"version": activation.version, "activated_at": activation.activated_at, "previous": activation.previous}


def _copy_durable(source: Path, target: Path) -> None:
    with source.open("rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.flush()
        os.fsync(dst.fileno())


def _copy_verified(source: Path, target: Path, manifest: Manifest) -> None:
    """Stream ``source`` to ``target`` hashing it on the way; StateError unless it is the manifest's model."""
    digest = hashlib.sha256()
    size = 0
    with source.open("rb") as src, target.open("wb") as dst:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
            dst.write(block)
        dst.flush()
        os.fsync(dst.fileno())
    if size != manifest.model.bytes or digest.hexdigest() != manifest.model.sha256:
        raise StateError(f"{source} is not the model manifest {manifest.version} names (size or sha256)")
