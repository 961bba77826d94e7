"""Who is using the console: operator sessions (a signed cookie), client-certificate operators, CSRF checks.

An operator logs in once with the hub's admin token and a name ("who", recorded with each action). The
session is a stateless cookie, ``<payload>.<HMAC-SHA256>`` (stdlib ``hmac``), carrying the name, issued-at,
expiry (8 h) and a random session id; its key is derived from the admin token file the hub itself reads,
so every ``--workers N`` process accepts it and rotating the admin token ends every session. The token
itself is never put in a cookie, a URL, a page or a log. Cookie flags: HttpOnly, SameSite=Strict,
Path=/console, Secure when the request came over HTTPS.

When the hub runs with client certificates, a request whose certificate was issued by the plant CA and
names ``urn:edgeloop:operator:<name>`` is an operator without the form (``via="certificate"``).

Forms: every POST carries ``csrf`` = HMAC(key, session id) (``csrf_field`` in layout) and must not come
from another origin (``Origin``/``Referer``); the login form uses a double-submit cookie. Failed logins
are rate-limited per client address (``LOGIN_ATTEMPTS`` per minute, per process) and logged at WARNING
without what was typed. Refusals inside console routes (``console_router``) render as console pages.
Leaves out rendering (edgeloop.console.layout) and operator accounts (there is one admin token).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from cryptography import x509
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.routing import APIRoute

from edgeloop.console.operators import Operator
from hub import tokens
from hub.peer import presented_certificate
from hub.peer_certificates import issued_by, read_peer
from hub.store.plant_ca import ca_certificate

__all__ = [
    "COOKIE", "LOGIN_ATTEMPTS", "LOGIN_COOKIE", "SESSION_S", "LoginRequired", "Operator", "PageError",
    "check_login_token", "check_origin", "checked_form", "console_router", "csrf_of", "login_allowed",
    "login_cookie_value", "note_failed_login", "operator", "optional_operator", "read_form", "safe_next",
    "session_cookie", "set_login_cookie", "set_session_cookie", "clear_session_cookie",
]

log = logging.getLogger("edgeloop.console")

COOKIE = "edgeloop_console"
LOGIN_COOKIE = "edgeloop_console_login"  # login-CSRF double-submit value
COOKIE_PATH = "/console"
SESSION_S = 8 * 3600
LOGIN_ATTEMPTS = 5  # failed logins per client address per minute, then 429
LOGIN_WINDOW_S = 60.0
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$")
OPERATOR_URI = "urn:edgeloop:operator:"
FORM_LIMIT = 64 * 1024
_KEY_LABEL = b"edgeloop console session key v1"


class PageError(HTTPException):
    """A refusal shown as a console page (status, a title, one readable sentence) inside console routes."""

    def __init__(self, status_code: int, title: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.title = title
        self.message = message


class LoginRequired(HTTPException):
    """Not logged in: 303 to the login page, which comes back to ``next`` afterwards."""

    def __init__(self, next_path: str) -> None:
        location = f"{COOKIE_PATH}/login?next={quote(next_path, safe='/')}"
        super().__init__(status_code=303, detail="log in first", headers={"Location": location})


# --- the key -------------------------------------------------------------------------------------------

def _key(request: Request) -> bytes:
    """HMAC key for this hub's sessions: derived from the admin token file (read once per process)."""
    state = request.app.state
    key: bytes | None = getattr(state, "console_key", None)
    if key is None:
        token = state.settings.admin_token_file.read_text(encoding="utf-8").strip()
        key = hmac.new(token.encode(), _KEY_LABEL, hashlib.sha256).digest()
        state.console_key = key
    return key


def csrf_of(key: bytes, session_id: str) -> str:
    return hmac.new(key, b"csrf:" + session_id.encode(), hashlib.sha256).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, b"session:" + payload.encode(), hashlib.sha256).digest())


def session_cookie(key: bytes, name: str, now_s: float, session_s: int = SESSION_S) -> str:
    """A signed session cookie value for ``name``, issued at ``now_s`` (epoch seconds)."""
    body = json.dumps({"n": name, "iat": int(now_s), "exp": int(now_s) + session_s, "sid": secrets.token_hex(16)},
                      separators=(",", ":"))
    payload = _b64(body.encode())
    return f"{payload}.{_sign(key, payload)}"


def _read_session(key: bytes, value: str, now_s: float) -> tuple[str, str] | None:
    """(name, session id) of a valid, unexpired cookie value, else None."""
    payload, _, signature = value.partition(".")
    if not payload or not signature or not hmac.compare_digest(_sign(key, payload), signature):
        return None
    try:
        data = json.loads(_unb64(payload))
        name, sid, issued, expires = str(data["n"]), str(data["sid"]), int(data["iat"]), int(data["exp"])
    except (ValueError, KeyError, TypeError):
        return None
    if not (issued - 60 <= now_s < expires) or expires - issued > SESSION_S:
        return None
    return name, sid


def _now_s(request: Request) -> float:
    return float(request.app.state.clock.now().timestamp())


# --- who is asking -------------------------------------------------------------------------------------

def _operator_name(certificate: x509.Certificate) -> str | None:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    operators = [uri[len(OPERATOR_URI):] for uri in names.get_values_for_type(x509.UniformResourceIdentifier)
                 if uri.startswith(OPERATOR_URI)]
    return operators[0] if len(operators) == 1 and NAME_PATTERN.match(operators[0]) else None


def _by_certificate(request: Request) -> Operator | None:
    policy = request.app.state.auth_policy
    if not policy.certificates or policy.ca_dir is None:
        return None
    presented = presented_certificate(request.scope, policy.proxies)
    peer = read_peer(presented.pem) if presented is not None and presented.pem else None
    if peer is None:
        return None
    name = _operator_name(peer.certificate)
    ca = ca_certificate(policy.ca_dir) if name else None
    if name is None or ca is None or not issued_by(peer, ca, request.app.state.clock.now()):
        return None
    session_id = "cert-" + peer.fingerprint[:32]
    return Operator(name, session_id, csrf_of(_key(request), session_id), "certificate")


def optional_operator(request: Request) -> Operator | None:
    """The operator of this request (session cookie, else operator certificate), or None."""
    value = request.cookies.get(COOKIE)
    if value:
        key = _key(request)
        found = _read_session(key, value, _now_s(request))
        if found is not None:
            name, sid = found
            return Operator(name, sid, csrf_of(key, sid), "session")
    return _by_certificate(request)


def operator(request: Request) -> Operator:
    """FastAPI dependency: the logged-in operator, else a 303 to /console/login?next=<this page>."""
    found = optional_operator(request)
    if found is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(safe_next(path))
    return found


def safe_next(value: str | None) -> str:
    """``value`` when it is a same-site console path, else /console/fleet (no open redirect)."""
    default = f"{COOKIE_PATH}/fleet"
    if not value or not value.startswith(COOKIE_PATH + "/") or "\\" in value or any(ord(c) < 32 for c in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//"):
        return default
    return value


# --- forms ---------------------------------------------------------------------------------------------

def check_origin(request: Request) -> None:
    """403 when ``Origin`` (or, without it, ``Referer``) names another host name than this request's. ``Origin:
    null`` names none (Chromium sends it for every form POST from a page with ``Referrer-Policy:
    no-referrer``, which console pages have): then the form's token alone decides."""
    origin = request.headers.get("origin")
    source = origin if origin not in (None, "null") else request.headers.get("referer")
    if not source:
        return
    # host names only: a TLS proxy on another port may pass ``Host: $host`` without it (docs/hub.md's nginx)
    host = urlsplit("//" + request.headers.get("host", "")).hostname
    if urlsplit(source).hostname != host:
        raise PageError(403, "Refused", "This form was sent from another site; open the console and try again.")


async def read_form(request: Request) -> dict[str, str]:
    """A POSTed ``application/x-www-form-urlencoded`` form (what HTML forms send), first value per field;
    another content type or more than FORM_LIMIT bytes: a readable 4xx page."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not kind and not await request.body():
        return {}
    if kind != "application/x-www-form-urlencoded":
        raise PageError(415, "Refused", "Console forms are sent as application/x-www-form-urlencoded.")
    body = await request.body()
    if len(body) > FORM_LIMIT:
        raise PageError(413, "Refused", "That form is too large.")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        raise PageError(400, "Refused", "That form could not be read.") from None
    return {name: values[0] for name, values in fields.items()}


async def checked_form(request: Request, who: Operator) -> dict[str, str]:
    """The POSTed form when it carries this operator's CSRF token and came from this site (else 403)."""
    check_origin(request)
    form = await read_form(request)
    sent = form.get("csrf")
    if not isinstance(sent, str) or not hmac.compare_digest(sent, who.csrf):
        raise PageError(403, "Refused", "The form's security token is missing or out of date; reload the page "
                                        "and try again.")
    return form


def login_cookie_value(request: Request) -> str:
    """The login form's double-submit value: the one in the cookie, or a new one (set it with set_login_cookie)."""
    current = request.cookies.get(LOGIN_COOKIE, "")
    return current if re.fullmatch(r"[0-9a-f]{32}", current) else secrets.token_hex(16)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_login_cookie(request: Request, response: Response, value: str) -> None:
    response.set_cookie(LOGIN_COOKIE, value, max_age=3600, path=COOKIE_PATH, httponly=True, samesite="strict",
                        secure=_secure(request))


def set_session_cookie(request: Request, response: Response, name: str) -> None:
    value = session_cookie(_key(request), name, _now_s(request))
    response.set_cookie(COOKIE, value, max_age=SESSION_S, path=COOKIE_PATH, httponly=True, samesite="strict",
                        secure=_secure(request))


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request))


# --- login attempts ------------------------------------------------------------------------------------

_failures: dict[str, deque[float]] = {}
_failures_lock = threading.Lock()


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def login_allowed(request: Request) -> bool:
    """False when this client address failed LOGIN_ATTEMPTS times in the last minute."""
    now = time.monotonic()
    with _failures_lock:
        recent = _failures.get(_client(request))
        while recent and now - recent[0] > LOGIN_WINDOW_S:
            recent.popleft()
        return not recent or len(recent) < LOGIN_ATTEMPTS


def note_failed_login(request: Request, reason: str) -> None:
    """Count a failed login for this address and log it (never what was typed)."""
    client = _client(request)
    with _failures_lock:
        if len(_failures) > 10_000:
            _failures.clear()
        _failures.setdefault(client, deque()).append(time.monotonic())
    log.warning("console login refused from %s: %s", client, reason)


def check_login_token(request: Request, token: str) -> bool:
    """Whether ``token`` is the hub's admin token (salted hash, constant time)."""
    salt, stored = request.app.state.admin_digest
    return bool(token) and tokens.matches(token, salt, stored)


# --- routes that answer refusals as pages --------------------------------------------------------------

class ConsoleRoute(APIRoute):
    """An APIRoute whose PageError refusals render as console pages (edgeloop.console.layout)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except PageError as refusal:
                from edgeloop.console.layout import error_page

                return error_page(refusal.status_code, refusal.title, refusal.message, optional_operator(request),
                                  headers=refusal.headers)

        return handle


def console_router() -> APIRouter:
    """An APIRouter for console pages: PageError refusals become readable pages; LoginRequired redirects."""
    return APIRouter(route_class=ConsoleRoute)
