"""Alembic's environment for the hub: migrate on the connection the hub hands over (hub.migrations.upgrade).

There is no alembic.ini and no URL here: ``config.attributes["connection"]`` is an open connection inside
the caller's transaction, which holds the migration lock; Alembic runs every revision in it. SQLite gets
batch mode (table copies for the ALTERs it lacks). Leaves out offline (SQL script) mode.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=context.config.attributes.get("target_metadata"),
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
