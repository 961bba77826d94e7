"""``devices.token_issued_at``: when the device's current token was issued.

Before it, re-keying a device (revoke, then add again) overwrote ``created_at``, so the hub forgot when a
device was first registered; now ``created_at`` stays the first registration and ``token_issued_at``
moves with every new token. Existing rows get ``token_issued_at = created_at`` (what they meant until
now). Nullable, so rows written without it (an older hub still running during a rolling upgrade) stay
valid: readers take ``created_at`` then.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("devices", sa.Column("token_issued_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE devices SET token_issued_at = created_at WHERE token_issued_at IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("token_issued_at")
