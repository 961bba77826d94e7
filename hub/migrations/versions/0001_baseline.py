"""Baseline: the hub's tables as ``create_all`` made them before migrations (devices, uploads, heartbeats,
device_certificates, enrollment_codes).

Each table is created only when it is missing, so an older hub's database (no ``alembic_version``, and
from before TLS perhaps without the certificate and code tables) is taken over as it is, rows kept.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def _devices() -> None:
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("token_id", sa.String(16), nullable=False),
        sa.Column("token_salt", sa.String(32), nullable=False),
        sa.Column("token_digest", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("revoked_at", TIME, nullable=True),
    )
    op.create_index("ix_devices_token_id", "devices", ["token_id"], unique=True)


def _uploads() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.device_id"), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("stored_at", TIME, nullable=False),
        sa.UniqueConstraint("device_id", "batch_id", name="one_batch_per_device"),
    )
    op.create_index("ix_uploads_device_id", "uploads", ["device_id"])


def _heartbeats() -> None:
    op.create_table(
        "heartbeats",
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.device_id"), primary_key=True),
        sa.Column("received_at", TIME, nullable=False),
        sa.Column("state", sa.JSON, nullable=False),
    )


def _device_certificates() -> None:
    op.create_table(
        "device_certificates",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.device_id"), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("serial", sa.String(40), nullable=False),
        sa.Column("not_before", TIME, nullable=False),
        sa.Column("not_after", TIME, nullable=False),
        sa.Column("issued_at", TIME, nullable=False),
        sa.Column("revoked_at", TIME, nullable=True),
    )
    op.create_index("ix_device_certificates_device_id", "device_certificates", ["device_id"])
    op.create_index("ix_device_certificates_fingerprint", "device_certificates", ["fingerprint"], unique=True)


def _enrollment_codes() -> None:
    op.create_table(
        "enrollment_codes",
        sa.Column("code_id", sa.String(16), primary_key=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.device_id"), nullable=False),
        sa.Column("salt", sa.String(32), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("expires_at", TIME, nullable=False),
        sa.Column("used_at", TIME, nullable=True),
    )
    op.create_index("ix_enrollment_codes_device_id", "enrollment_codes", ["device_id"])


TABLES = {  # in foreign-key order
    "devices": _devices,
    "uploads": _uploads,
    "heartbeats": _heartbeats,
    "device_certificates": _device_certificates,
    "enrollment_codes": _enrollment_codes,
}


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, create in TABLES.items():
        if name not in existing:
            create()


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
