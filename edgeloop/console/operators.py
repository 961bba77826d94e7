"""Who is logged in to the console: the ``Operator`` value (a name, a session id, its CSRF token, how).

Its own module so the page shell (layout) and authentication (auth) both use it without importing each
other. Leaves out how an operator is recognised (edgeloop.console.auth).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Operator"]


@dataclass(frozen=True)
class Operator:
    """A logged-in operator: ``via`` is ``"session"`` (the login form) or ``"certificate"`` (mTLS)."""

    name: str
    session_id: str
    csrf: str
    via: str = "session"
