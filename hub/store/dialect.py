"""The one dialect-specific piece of the hub's SQL: the ``INSERT`` that knows ``ON CONFLICT``.

``insert_for(dialect_name)`` returns SQLite's or PostgreSQL's ``insert`` construct (both offer
``on_conflict_do_nothing`` / ``on_conflict_do_update`` with the same arguments), so an upsert or an
insert-once is one race-free statement on either database. Leaves out every other dialect: hub.db
accepts only these two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite

__all__ = ["insert_for"]

_INSERTS: dict[str, Callable[..., Any]] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def insert_for(dialect_name: str) -> Callable[..., Any]:
    """The ``insert`` of ``dialect_name`` (``sqlite`` or ``postgresql``)."""
    try:
        return _INSERTS[dialect_name]
    except KeyError:
        raise ValueError(f"the hub's SQL runs on SQLite or PostgreSQL, not {dialect_name!r}") from None
