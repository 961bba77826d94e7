"""``edge-runner enroll``: a new gateway gets its identity from the hub with a one-time code.

``enroll(hub_url, code, ca_file, config_dir, state_dir)``:

1. checks the URL (https; plain http only to loopback, edge.config's insecure rule) and reads the plant
   CA the operator brought (``--ca``): the hub is verified against it and nothing else;
2. refuses a config dir that holds an enrolled ``runner.toml`` unless ``force``;
3. generates the device's private key here (ECDSA P-256, edge.device_keys) and a CSR; the key never
   leaves the device and is written only once the hub has answered;
4. ``POST <hub>/v1/enroll`` ``{"code", "csr"}`` (edge.contracts.wire ``ENROLL_PATH``) over TLS verified
   against ``ca_file``, hostname checked;
5. on 201 checks the answer (``ENROLLMENT_FIELDS``: a certificate for the new key, naming the device,
   issued by the plant CA in ``ca`` or the CA in ``ca_file`` (a hub may serve a certificate of another
   CA); a valid device id and channel; a TUF root), then writes, each
   atomically (edge.atomic): the key and certificate as a pair (``identity/``, edge.credentials; key
   0600), ``ca.pem`` (the operator's CA), ``root.json`` (the release repository's trusted root) and
   last ``runner.toml`` (device id and channel from the answer, the state dir, ``[hub] url``, ``[tls]``
   files, ``[releases] trusted_root`` and channel), checked with ``load_config`` so ``edge-runner run
   --config DIR/runner.toml`` starts with it as is.

Every failure is an ``EnrollError`` (a UserError, one line): 401 means the code is unknown, used or
expired; 422 carries the hub's detail; a hub certificate that does not verify says so, naming the CA
file; an unreachable hub says so. The enrollment code is never written to any file, log line or
message (every message is scrubbed of it, in case a hub echoes it back). A crash after the hub answered
and before the files are written loses that enrollment: the code is used, ask for a new one.

Leaves out: renewing the certificate later (edge.cert_renewal), argument parsing (edge.cli).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import urllib3

from edge.atomic import write_bytes_atomic, write_text_atomic
from edge.config import TOKEN_ENV, ConfigError, load_config, plain_http_problem
from edge.contracts.errors import UserError
from edge.contracts.names import is_valid_channel, is_valid_device_id
from edge.contracts.tls import client_context
from edge.contracts.wire import ENROLL_PATH, ENROLLMENT_FIELDS, JSON
from edge.credentials import CERT_FILE, CURRENT, IDENTITY_DIR, KEY_FILE, CredentialStore
from edge.device_keys import (
    CertificateError,
    check_issued,
    key_pem,
    load_certificate,
    new_key,
    not_after,
    signing_request,
)
from edge.hub_client import tls_failure

__all__ = ["CA_FILE", "CONFIG_FILE", "DEFAULT_CONFIG_DIR", "DEFAULT_STATE_DIR", "ROOT_FILE", "UNKNOWN_CODE",
           "EnrollError", "Enrollment", "enroll"]

DEFAULT_CONFIG_DIR = Path("/etc/edge-runner")
DEFAULT_STATE_DIR = Path("/var/lib/edge-runner")
CONFIG_FILE, CA_FILE, ROOT_FILE = "runner.toml", "ca.pem", "root.json"
UNKNOWN_CODE = "the enrollment code is unknown, used or expired: ask for a new one (edgeloop devices enroll-code NAME)"
ANSWER_MAX_BYTES = 4 * 1024 * 1024  # certificate, CA and root.json: a few KB
CSR_NAME = "edgeloop-enrollment"  # the CSR's subject; the hub ignores it and names the device itself


class EnrollError(UserError):
    """Enrollment failed; the message (one line, never the code) says why."""


@dataclass(frozen=True)
class Enrollment:
    device_id: str
    channel: str
    config_file: Path
    not_after: datetime


def enroll(hub_url: str, code: str, ca_file: Path, config_dir: Path = DEFAULT_CONFIG_DIR,
           state_dir: Path = DEFAULT_STATE_DIR, force: bool = False, timeout_s: float = 30.0) -> Enrollment:
    """Enroll this device (see the module docstring); EnrollError says why not."""
    code = code.strip()
    try:
        return _enroll(hub_url, code, Path(ca_file), Path(config_dir), Path(state_dir), force, timeout_s)
    except EnrollError as exc:
        raise EnrollError(_scrub(str(exc), code)) from None


def _scrub(text: str, code: str) -> str:
    text = " ".join(text.split())  # one line
    return text.replace(code, "***") if code else text


def _enroll(hub_url: str, code: str, ca_file: Path, config_dir: Path, state_dir: Path, force: bool,
            timeout_s: float) -> Enrollment:
    base = _hub_url(hub_url)
    if not code:
        raise EnrollError("--code: the enrollment code is empty")
    ca_pem = _read_ca(ca_file)
    config_file = config_dir / CONFIG_FILE
    if config_file.exists() and not force:
        raise EnrollError(f"{config_file} exists: this gateway is enrolled already (pass --force to enroll it "
                          f"again with a new key and certificate)")
    key = new_key()
    answer = _post(base, {"code": code, "csr": signing_request(key, CSR_NAME)}, ca_file, timeout_s)
    fields = _check_answer(answer, key, ca_pem)
    config_dir.mkdir(parents=True, exist_ok=True)
    certificate = fields["certificate"].encode("utf-8")
    CredentialStore(config_dir / IDENTITY_DIR).install(certificate, key_pem(key))
    write_bytes_atomic(config_dir / CA_FILE, ca_pem, mode=0o644)
    write_text_atomic(config_dir / ROOT_FILE, fields["trusted_root"], mode=0o644)
    if config_file.exists():
        shutil.copyfile(config_file, config_dir / f"{CONFIG_FILE}.bak")
    text = runner_toml(fields["device_id"], fields["channel"], base, state_dir.resolve())
    write_text_atomic(config_file, text, mode=0o644)
    _check_config(config_file, base)
    return Enrollment(fields["device_id"], fields["channel"], config_file, not_after(load_certificate(certificate)))


def _hub_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EnrollError(f"--hub: expected the hub's URL, such as https://hub.plant.local:8700, got {url!r}")
    problem = plain_http_problem(url)
    if problem is not None:
        raise EnrollError(f"--hub: {problem}: the enrollment would travel in the clear; use https://")
    return url.rstrip("/")


def _read_ca(ca_file: Path) -> bytes:
    try:
        data = ca_file.read_bytes()
    except OSError as exc:
        raise EnrollError(f"--ca: cannot read {ca_file}: {exc.strerror or exc}") from None
    try:
        load_certificate(data)
        client_context(ca_file)
    except (CertificateError, ValueError, OSError):
        raise EnrollError(f"--ca: {ca_file} is not a PEM certificate (the plant CA, ca.pem)") from None
    return data


def _post(base: str, body: dict[str, str], ca_file: Path, timeout_s: float) -> dict[str, Any]:
    https = base.startswith("https://")
    pool = urllib3.PoolManager(ssl_context=client_context(ca_file) if https else None, retries=False,
                               timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s))
    try:
        response = pool.request("POST", base + ENROLL_PATH, body=json.dumps(body).encode("utf-8"),
                                headers={"Content-Type": JSON, "Accept": JSON}, redirect=False,
                                preload_content=False)
        data = response.read(ANSWER_MAX_BYTES + 1)
        response.release_conn()
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        failure = tls_failure(exc, urlsplit(base).hostname or "", str(ca_file))
        if failure is not None:
            raise EnrollError(failure) from None
        raise EnrollError(f"cannot reach the hub at {base}: {_network_reason(exc)}") from None
    finally:
        pool.clear()
    status = response.status
    if status == 401:
        raise EnrollError(UNKNOWN_CODE)
    if status in (200, 201):
        if len(data) > ANSWER_MAX_BYTES:
            raise EnrollError(f"the hub's answer is larger than {ANSWER_MAX_BYTES} bytes: not an enrollment")
        try:
            answer = json.loads(data)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise EnrollError(f"the hub answered {status} without a JSON object: is {base} the hub?")
        return answer
    detail = _detail(data, status)
    if status == 422:
        raise EnrollError(f"the hub refused the enrollment: {detail}")
    if status >= 500 or status in (408, 425, 429):
        raise EnrollError(f"the hub could not enroll this device now (HTTP {status}: {detail}): try again later")
    raise EnrollError(f"the hub refused the enrollment (HTTP {status}): {detail}")


def _network_reason(exc: BaseException) -> str:
    seen: set[int] = set()
    item: BaseException | None = exc
    while item is not None and id(item) not in seen:
        seen.add(id(item))
        if isinstance(item, OSError) and item.strerror:
            return item.strerror
        nested = getattr(item, "reason", None) or item.__cause__ or item.__context__
        item = nested if isinstance(nested, BaseException) else None
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return "timed out"
    text = str(exc)
    return re.sub(r"^<[^>]+>:\s*", "", text) or type(exc).__name__


def _detail(data: bytes, status: int) -> str:
    try:
        decoded = json.loads(data)
    except ValueError:
        decoded = None
    detail: Any = decoded.get("detail") if isinstance(decoded, dict) else None
    if detail is None:
        detail = data.decode("utf-8", "replace").strip() or f"HTTP {status}"
    text = detail if isinstance(detail, str) else json.dumps(detail, default=str)
    return text[:500]


def _check_answer(answer: dict[str, Any], key: Any, ca_pem: bytes) -> dict[str, str]:
    def bad(reason: str) -> EnrollError:
        return EnrollError(f"the hub's answer cannot be used ({reason}); nothing was written, and the code is "
                           f"spent: ask for a new one")

    fields: dict[str, str] = {}
    for name in ENROLLMENT_FIELDS:
        value = answer.get(name)
        if not isinstance(value, str) or not value:
            raise bad(f"{name!r} is missing")
        fields[name] = value
    if not is_valid_device_id(fields["device_id"]):
        raise bad(f"device_id {fields['device_id'][:80]!r} is not a valid device id")
    if not is_valid_channel(fields["channel"]):
        raise bad(f"channel {fields['channel'][:80]!r} is not a valid channel name")
    try:
        certificate = load_certificate(fields["certificate"])
        issuer = fields["ca"].encode("utf-8")
        load_certificate(issuer)
        # issued by the plant CA the hub names, or by --ca (when the hub's own certificate is the plant CA's)
        check_issued(certificate, key, fields["device_id"], ca_pem + b"\n" + issuer)
    except CertificateError as exc:
        raise bad(str(exc)) from None
    try:
        root = json.loads(fields["trusted_root"])
    except ValueError:
        root = None
    if not isinstance(root, dict) or not isinstance(root.get("signed"), dict) or root["signed"].get("_type") != "root":
        raise bad("trusted_root is not a TUF root.json")
    return fields


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a TOML basic string


def runner_toml(device_id: str, channel: str, hub_url: str, state_dir: Path) -> str:
    """The enrolled device's runner.toml (paths relative to the config dir)."""
    written = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [
        f"# Written by `edge-runner enroll` on {written}. Every key with its default:",
        "# docs/edge-runner.example.toml. Relative paths are relative to this file.",
        f"device_id = {_toml_string(device_id)}",
        f"state_dir = {_toml_string(str(state_dir))}",
        "",
        "[hub]",
        f"url = {_toml_string(hub_url)}",
        "",
        "[tls]",
        f'ca_file = "{CA_FILE}"                          # the plant CA the hub is verified against',
        f'cert_file = "{IDENTITY_DIR}/{CURRENT}/{CERT_FILE}"   # renewed by the runner before it ends',
        f'key_file = "{IDENTITY_DIR}/{CURRENT}/{KEY_FILE}"    # made on this device, mode 0600, never sent',
        "",
        "[releases]",
        f'trusted_root = "{ROOT_FILE}"',
        f"channel = {_toml_string(channel)}",
    ]
    if not hub_url.startswith("https://"):
        lines[5:5] = ["# plain http (loopback): the client certificate is not presented; set hub.token_file",
                      f"# or {TOKEN_ENV} for the runner to authenticate"]
    return "\n".join(lines) + "\n"


def _check_config(config_file: Path, base: str) -> None:
    environ = {} if base.startswith("https://") else {TOKEN_ENV: "checked-without-a-token"}
    try:
        load_config(config_file, environ=environ)
    except ConfigError as exc:
        raise EnrollError(f"{config_file} was written but does not load: {exc}") from None
