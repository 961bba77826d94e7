"""Device side of releases: fetch the release a channel points at, verified by TUF, into a staging folder.

``fetch_release`` makes a fresh python-tuf ``Updater`` per call (an Updater refreshes only once),
refreshes the top-level metadata (root rotations, timestamp, snapshot, targets), reads the signed
channel pointer ``channels/<channel>.json`` (its TUF ``custom`` field names the version and the
bundle's files), and, when the version differs from ``current_version``, downloads the pointer, the
manifest and the model into a private temporary folder inside ``staging_dir``. There it checks that the
pointer bytes say what the signed ``custom`` field says, that the manifest is valid and names this
version, and that the manifest's model digest and size are those of the model file (TUF already
checked each file against its signed length and hash). Only then are the files made durable and the
folder renamed to ``staging_dir/<version>``. On any failure the temporary folder is removed: nothing
is written to the destination, and ngclient itself only caches metadata that verified.

A no-change poll costs one request (``timestamp.json``): the cached snapshot and targets stay valid.

python-tuf bounds each file's size and the gap between reads, not the time a download takes; the
``DeadlineFetcher`` here adds an overall deadline per call (checked between reads of at most
``chunk_bytes``), and ``ClientLimits.max_bundle_bytes`` refuses releases whose signed sizes are too
large before any of their bytes are fetched. Proxies come from the usual ``*_proxy`` variables. Over
https the fetcher uses the runner's TLS context (``tls``: the plant CA, the device's client certificate;
edge.transport), the same one the hub client uses, never urllib3's default trust.

One process per ``metadata_dir``: an exclusive lock on ``metadata_dir/.lock`` is held for the call.

Leaves out: activating a release (swapping ``current``/``previous``), running the model, scheduling
polls, and any decision about whether a newer version is better. Standard library, urllib3 and tuf.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import ssl
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies

import urllib3
from tuf.api import exceptions
from tuf.api.metadata import TargetFile  # type: ignore[attr-defined]  # re-exported without __all__
from tuf.ngclient.config import UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.updater import Updater

from edge.atomic import fsync_dir, replace_dir
from edge.config import ReleasesConfig
from edge.contracts.manifest import Manifest, ManifestError
from edge.contracts.names import is_valid_channel
from edge.contracts.release_layout import MANIFEST_FILE, MODEL_FILE, channel_target
from edge.contracts.runner_policy import MAX_POLICY_BYTES, policy_target
from edge.hub_client import tls_failure

__all__ = [
    "MANIFEST_FILE",
    "MODEL_FILE",
    "ClientLimits",
    "DeadlineFetcher",
    "FetchedPolicy",
    "FetchedRelease",
    "PolicyRejected",
    "ReleaseError",
    "ReleaseRejected",
    "ReleaseUnavailable",
    "fetch_policy",
    "fetch_release",
    "refresh_metadata",
]

USER_AGENT = "edgeloop-runner"


@dataclass(frozen=True)
class ClientLimits:
    """Bounds on one ``fetch_release`` call (defaults: the runner configuration's, edge.config)."""

    max_bundle_bytes: int = ReleasesConfig.max_bundle_bytes  # bytes: pointer + manifest + model of one release
    deadline_seconds: float = ReleasesConfig.download_deadline_s  # seconds: the whole call, metadata and files
    read_timeout_seconds: float = ReleasesConfig.read_timeout_s  # seconds: connecting, the longest gap between bytes
    chunk_bytes: int = 64 * 1024  # bytes per read; the deadline is checked between reads


class ReleaseError(Exception):
    """The release could not be fetched; nothing was written to the staging folder."""


class ReleaseUnavailable(ReleaseError):
    """Network trouble: unreachable, HTTP error, too slow (deadline). Try again later."""


class ReleaseRejected(ReleaseError):
    """The repository served something that does not verify: tampered, replayed, expired, unsigned,
    oversized, or inconsistent with its manifest. Keep running the active release."""


class PolicyRejected(ReleaseRejected):
    """A runner policy whose signed metadata names ``version`` but whose bytes do not verify."""

    def __init__(self, version: int, message: str) -> None:
        super().__init__(message)
        self.version = version


@dataclass(frozen=True)
class FetchedRelease:
    channel: str
    version: int  # the version the channel points at
    changed: bool  # False: ``version == current_version``, nothing downloaded
    folder: Path | None  # ``staging_dir/<version>`` holding model.onnx and manifest.json
    manifest: Manifest | None
    requests: int  # HTTP requests this call made
    bytes_downloaded: int  # response body bytes this call received
    seconds: float

    @property
    def model_path(self) -> Path | None:
        return None if self.folder is None else self.folder / MODEL_FILE

    @property
    def manifest_path(self) -> Path | None:
        return None if self.folder is None else self.folder / MANIFEST_FILE


@dataclass(frozen=True)
class FetchedPolicy:
    """The runner policy ``config/<channel>.json`` as the signed metadata names it."""

    version: int | None  # the signed custom ``config_version`` (None: the channel has no policy)
    data: bytes | None  # the verified bytes (None: no policy, or the version was skipped)
    requests: int
    bytes_downloaded: int


class DeadlineFetcher(FetcherInterface):
    """urllib3 fetcher with one deadline for all its requests; counts requests and bytes. ``tls``: the
    context https requests use (verification against the plant CA, the device's certificate)."""

    def __init__(self, limits: ClientLimits, deadline: float | None = None, tls: ssl.SSLContext | None = None) -> None:
        self._limits = limits
        self._tls = tls
        self._deadline = deadline if deadline is not None else time.monotonic() + limits.deadline_seconds
        self._headers = {"User-Agent": USER_AGENT}
        self._managers: dict[str | None, urllib3.PoolManager] = {}
        self.requests = 0
        self.bytes = 0

    def _left(self, url: str) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise exceptions.SlowRetrievalError(f"deadline of {self._limits.deadline_seconds} s passed: {url}")
        return left

    def _manager(self, url: str) -> urllib3.PoolManager:
        parts = urlsplit(url)
        proxy = _proxy_for(parts.scheme, parts.hostname or "")
        if proxy not in self._managers:
            self._managers[proxy] = (
                urllib3.PoolManager(headers=self._headers, ssl_context=self._tls) if proxy is None
                else urllib3.ProxyManager(proxy, headers=self._headers, ssl_context=self._tls)
            )
        return self._managers[proxy]

    def _fetch(self, url: str) -> Iterator[bytes]:
        wait = min(self._limits.read_timeout_seconds, self._left(url))
        if url.startswith("https://") and self._tls is None:
            raise exceptions.DownloadError(f"{url}: https needs the runner's TLS context (tls.ca_file)")
        try:
            response = self._manager(url).request(
                "GET", url, preload_content=False, retries=False, timeout=urllib3.Timeout(connect=wait, read=wait)
            )
        except urllib3.exceptions.TimeoutError as exc:
            raise exceptions.SlowRetrievalError(f"{url}: {exc}") from exc
        except urllib3.exceptions.HTTPError as exc:
            failure = tls_failure(exc, urlsplit(url).hostname or "")
            raise exceptions.DownloadError(f"{url}: {failure or exc}") from exc
        self.requests += 1
        if response.status >= 400:
            _discard(response)
            raise exceptions.DownloadHTTPError(f"{url}: HTTP {response.status}", response.status)
        return self._chunks(url, response)

    def _chunks(self, url: str, response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
        finished = False
        try:
            while True:
                self._left(url)
                chunk = response.read1(self._limits.chunk_bytes)
                if not chunk:
                    finished = True
                    return
                self.bytes += len(chunk)
                yield chunk
        except urllib3.exceptions.TimeoutError as exc:
            raise exceptions.SlowRetrievalError(f"{url}: {exc}") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise exceptions.DownloadError(f"{url}: {exc}") from exc
        finally:
            if finished:
                response.release_conn()
            else:  # abandoned mid-body (too long, too slow): never hand a half-read connection back
                response.close()


ERROR_BODY_LIMIT = 64 * 1024  # bytes of an error response read to keep its connection reusable


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    """Free the connection of an error response: drain a small body (keep-alive), close on a large one."""
    length = response.headers.get("content-length")
    try:
        if length is not None and length.isdigit() and int(length) <= ERROR_BODY_LIMIT:
            response.drain_conn()
            response.release_conn()
            return
    except urllib3.exceptions.HTTPError:
        pass
    response.close()


def _proxy_for(scheme: str, host: str) -> str | None:
    proxies = getproxies()
    for bypass in (h.strip().lstrip(".") for h in proxies.get("no", "").split(",")):
        if bypass and (bypass == "*" or host == bypass or host.endswith(f".{bypass}")):
            return None
    return proxies.get(scheme) or proxies.get("all")


@contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def fetch_release(
    metadata_dir: Path,
    metadata_url: str,
    targets_url: str,
    channel: str,
    staging_dir: Path,
    root_bytes: bytes | None = None,
    limits: ClientLimits | None = None,
    current_version: int | None = None,
    skip_versions: Collection[int] = (),
    tls: ssl.SSLContext | None = None,
) -> FetchedRelease:
    """Fetch and verify the release ``channel`` points at into ``staging_dir/<version>``.

    ``root_bytes`` is the trusted root metadata to start from (required on first use; afterwards the
    root cached in ``metadata_dir`` is trusted). A pointed version equal to ``current_version`` or in
    ``skip_versions`` (releases the device refused or rolled back) is not downloaded: ``changed`` is
    False. ``tls`` is the context for https URLs. Raises ``ReleaseRejected`` or ``ReleaseUnavailable``.
    """
    if not is_valid_channel(channel):
        raise ValueError(f"channel {channel!r} is not a valid channel name")
    limits = limits or ClientLimits()
    started = time.monotonic()
    fetcher = DeadlineFetcher(limits, started + limits.deadline_seconds, tls)
    with _exclusive(Path(metadata_dir)), _classified():
        version, folder, manifest = _fetch(
            Path(metadata_dir), metadata_url, targets_url, channel, Path(staging_dir), root_bytes, limits,
            current_version, frozenset(skip_versions), fetcher,
        )
    return FetchedRelease(
        channel, version, folder is not None, folder, manifest, fetcher.requests, fetcher.bytes,
        time.monotonic() - started,
    )


def refresh_metadata(
    metadata_dir: Path, metadata_url: str, root_bytes: bytes | None = None, limits: ClientLimits | None = None,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Refresh and verify the top-level metadata into ``metadata_dir`` without fetching any target."""
    limits = limits or ClientLimits()
    with _exclusive(Path(metadata_dir)), _classified():
        _updater(Path(metadata_dir), metadata_url, None, root_bytes, DeadlineFetcher(limits, tls=tls)).refresh()


def fetch_policy(
    metadata_dir: Path,
    metadata_url: str,
    targets_url: str,
    channel: str,
    root_bytes: bytes | None = None,
    limits: ClientLimits | None = None,
    skip: Callable[[int], bool] = lambda version: False,
    tls: ssl.SSLContext | None = None,
) -> FetchedPolicy:
    """The channel's runner policy ``config/<channel>.json``, verified by TUF (hashes, length, signatures,
    expiry) against the same trusted metadata as the channel pointer.

    The signed custom field ``config_version`` names the version; when ``skip(version)`` is true (applied
    or refused before) nothing is downloaded. A policy larger than ``MAX_POLICY_BYTES`` is refused before
    any of its bytes are fetched. Raises ``ReleaseRejected`` (does not verify) or ``ReleaseUnavailable``.
    """
    if not is_valid_channel(channel):
        raise ValueError(f"channel {channel!r} is not a valid channel name")
    limits = limits or ClientLimits()
    fetcher = DeadlineFetcher(limits, tls=tls)
    with _exclusive(Path(metadata_dir)), _classified():
        updater = _updater(Path(metadata_dir), metadata_url, targets_url, root_bytes, fetcher)
        updater.refresh()
        info = updater.get_targetinfo(policy_target(channel))
        if info is None:
            return FetchedPolicy(None, None, fetcher.requests, fetcher.bytes)
        custom = info.custom if isinstance(info.custom, dict) else {}
        version = custom.get("config_version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ReleaseRejected(f"policy of channel {channel!r}: the signed config_version is {version!r}")
        if skip(version):
            return FetchedPolicy(version, None, fetcher.requests, fetcher.bytes)
        if info.length > MAX_POLICY_BYTES:
            raise ReleaseRejected(f"policy {version} is {info.length} bytes, over the {MAX_POLICY_BYTES} byte limit")
        with tempfile.TemporaryDirectory(prefix=".policy-", dir=metadata_dir) as folder:
            try:
                data = Path(updater.download_target(info, str(Path(folder) / "policy.json"))).read_bytes()
            except (exceptions.RepositoryError, exceptions.DownloadLengthMismatchError) as exc:
                raise PolicyRejected(version, f"{type(exc).__name__}: {exc}") from exc
    return FetchedPolicy(version, data, fetcher.requests, fetcher.bytes)


@contextmanager
def _classified() -> Iterator[None]:
    """python-tuf's errors as ReleaseRejected (does not verify) or ReleaseUnavailable (network)."""
    try:
        yield
    except (exceptions.RepositoryError, exceptions.DownloadLengthMismatchError) as exc:
        raise ReleaseRejected(f"{type(exc).__name__}: {exc}") from exc
    except exceptions.DownloadError as exc:
        raise ReleaseUnavailable(f"{type(exc).__name__}: {exc}") from exc


def _updater(metadata_dir: Path, metadata_url: str, targets_url: str | None, root_bytes: bytes | None,
             fetcher: DeadlineFetcher) -> Updater:
    if root_bytes is None and not (metadata_dir / "root.json").is_file():
        raise ReleaseError(f"no trusted root in {metadata_dir}: pass the root metadata (root_bytes)")
    return Updater(
        str(metadata_dir), metadata_url, None, targets_url, fetcher, UpdaterConfig(app_user_agent=USER_AGENT),
        bootstrap=root_bytes,
    )


def _fetch(
    metadata_dir: Path, metadata_url: str, targets_url: str, channel: str, staging_dir: Path,
    root_bytes: bytes | None, limits: ClientLimits, current_version: int | None, skip: frozenset[int],
    fetcher: DeadlineFetcher,
) -> tuple[int, Path | None, Manifest | None]:
    updater = _updater(metadata_dir, metadata_url, targets_url, root_bytes, fetcher)
    updater.refresh()
    pointer_info = _targetinfo(updater, channel_target(channel), f"channel {channel!r} has no release")
    version, model_path, manifest_path = _pointer(pointer_info.custom)
    if version == current_version or version in skip:
        return version, None, None
    model_info = _targetinfo(updater, model_path, f"release {version} has no {model_path}")
    manifest_info = _targetinfo(updater, manifest_path, f"release {version} has no {manifest_path}")
    size = pointer_info.length + model_info.length + manifest_info.length
    if size > limits.max_bundle_bytes:
        raise ReleaseRejected(f"release {version} is {size} bytes, over the {limits.max_bundle_bytes} byte limit")
    staging_dir.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{version}.partial-", dir=staging_dir))
    try:
        pointer_file = Path(updater.download_target(pointer_info, str(temporary / "pointer.json")))
        _check_pointer(pointer_file.read_bytes(), channel, pointer_info.custom)
        pointer_file.unlink()
        manifest_file = updater.download_target(manifest_info, str(temporary / MANIFEST_FILE))
        model_file = updater.download_target(model_info, str(temporary / MODEL_FILE))
        manifest = _check_bundle(Path(manifest_file), Path(model_file), version)
        folder = _commit(temporary, staging_dir / str(version))
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return version, folder, manifest


def _targetinfo(updater: Updater, path: str, missing: str) -> TargetFile:
    info = updater.get_targetinfo(path)
    if info is None:
        raise ReleaseRejected(missing)
    return info


def _pointer(custom: Any) -> tuple[int, str, str]:
    """(version, model target, manifest target) from a channel pointer's signed custom field."""
    if not isinstance(custom, dict):
        raise ReleaseRejected("channel pointer has no custom field")
    version, model, manifest = custom.get("version"), custom.get("model"), custom.get("manifest")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ReleaseRejected(f"channel pointer names no valid version: {version!r}")
    if not isinstance(model, str) or not isinstance(manifest, str):
        raise ReleaseRejected("channel pointer names no model or manifest")
    return version, model, manifest


def _check_pointer(data: bytes, channel: str, custom: Any) -> None:
    try:
        content = json.loads(data)
    except ValueError:
        raise ReleaseRejected("channel pointer file is not JSON") from None
    if content != {"channel": channel, **custom}:
        raise ReleaseRejected("channel pointer file disagrees with its signed custom field")


def _check_bundle(manifest_file: Path, model_file: Path, version: int) -> Manifest:
    try:
        manifest = Manifest.from_json(manifest_file.read_bytes())
    except ManifestError as exc:
        raise ReleaseRejected(f"manifest of release {version}: {exc}") from None
    if manifest.version != str(version):
        raise ReleaseRejected(f"manifest says version {manifest.version!r}, the channel says {version}")
    digest = hashlib.sha256()
    with model_file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    size = model_file.stat().st_size
    if digest.hexdigest() != manifest.model.sha256 or size != manifest.model.bytes:
        raise ReleaseRejected(f"model of release {version} is not the model its manifest names")
    return manifest


def _commit(temporary: Path, final: Path) -> Path:
    """Make the files durable, then rename the folder into place (replacing an older copy)."""
    for path in temporary.iterdir():
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    fsync_dir(temporary)
    replace_dir(temporary, final)
    return final
