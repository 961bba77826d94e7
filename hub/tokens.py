"""Device tokens, admin tokens and enrollment codes: random, shown once, stored only as salted hashes,
compared in constant time.

A token is ``elt_<token_id>_<secret>``: the id finds the row (so a token for device A posting as B is
recognised as A's and refused with 403), the 256-bit secret is checked against
``sha256(salt + secret)``. A one-time enrollment code is the same shape with ``elc_`` (``issue_code``,
``parse_code``): its id finds the code's row, its secret is checked the same way. A slow KDF buys
nothing for 256-bit random secrets (they cannot be guessed) and would cost tens of milliseconds per
request. Never logs or stores a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

TOKEN_PATTERN = re.compile(r"^elt_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
CODE_PATTERN = re.compile(r"^elc_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class IssuedToken:
    token: str  # give to the device once; never stored
    token_id: str
    salt: str
    digest: str


def digest(secret: str, salt: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def _issue(prefix: str) -> IssuedToken:
    token_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), secrets.token_hex(16)
    return IssuedToken(f"{prefix}_{token_id}_{secret}", token_id, salt, digest(secret, salt))


def issue() -> IssuedToken:
    """A new device token."""
    return _issue("elt")


def issue_code() -> IssuedToken:
    """A new one-time enrollment code (the same shape as a token, prefix ``elc_``)."""
    return _issue("elc")


def parse(token: str) -> tuple[str, str] | None:
    """(token_id, secret) of a well-formed token, else None."""
    match = TOKEN_PATTERN.match(token)
    return (match.group(1), match.group(2)) if match else None


def parse_code(code: str) -> tuple[str, str] | None:
    """(code_id, secret) of a well-formed enrollment code, else None."""
    match = CODE_PATTERN.match(code.strip())
    return (match.group(1), match.group(2)) if match else None


def matches(secret: str, salt: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret, salt), stored_digest)
