"""``device_events`` and ``device_samples``: each device's history (hub.store.device_history).

``device_events`` keeps every model event a device's heartbeats carried (activated, rejected with the
shadow numbers, rolled back, ...), once: UNIQUE (device_id, kind, version, at). ``device_samples`` keeps a
bounded series of its state (version, health and reason, rolling accuracy, largest drift, backlog), at
most one per sampling slot: UNIQUE (device_id, slot), and an index on ``at`` for pruning. New tables
only: every existing row stays as it is, and a downgrade drops just these two.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "device_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.device_id"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("detail", sa.String(500), nullable=False),
        sa.Column("received_at", TIME, nullable=False),
        sa.UniqueConstraint("device_id", "kind", "version", "at", name="one_event_per_device"),
    )
    op.create_table(
        "device_samples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.device_id"), nullable=False),
        sa.Column("slot", sa.BigInteger, nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("health", sa.String(16), nullable=False),
        sa.Column("health_reason", sa.String(200), nullable=False),
        sa.Column("rolling_accuracy", sa.Float, nullable=True),
        sa.Column("drift_feature", sa.String(64), nullable=True),
        sa.Column("drift_psi", sa.Float, nullable=True),
        sa.Column("backlog", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("device_id", "slot", name="one_sample_per_slot"),
    )
    op.create_index("ix_device_samples_at", "device_samples", ["at"])


def downgrade() -> None:
    op.drop_index("ix_device_samples_at", table_name="device_samples")
    op.drop_table("device_samples")
    op.drop_table("device_events")
