"""merkle logbook: canonical entry bytes, leaf indices, tree nodes, heads and checkpoints

Entries written by earlier versions get their canonical bytes here (form v1 of
``LogEvent.canonical``, frozen in this file so that later changes of the code cannot change
what an old entry hashes to); they are integrated into the tree by the next checkpoint.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:00:00.000000
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from archive_service.core.logbook.canonical import canonical_json

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BATCH = 1000


def _canonical_v1(row: Any) -> bytes:
    at: datetime = row.at if row.at.tzinfo is not None else row.at.replace(tzinfo=UTC)
    return canonical_json(
        {
            "v": 1,
            "tenant": row.tenant_id,
            "id": row.id,
            "at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "type": row.event_type,
            "outcome": row.outcome,
            "actor": row.actor,
            "subject": {"type": row.subject_type, "id": row.subject_id},
            "details": row.details,
        }
    )


def _fill_canonical() -> None:
    entries = sa.table(
        "logbook_entries",
        sa.column("id", sa.Integer()),
        sa.column("tenant_id", sa.String()),
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("event_type", sa.String()),
        sa.column("outcome", sa.String()),
        sa.column("actor", sa.String()),
        sa.column("subject_type", sa.String()),
        sa.column("subject_id", sa.String()),
        sa.column("details", sa.JSON()),
        sa.column("canonical", sa.LargeBinary()),
    )
    conn = op.get_bind()
    last = 0
    while True:
        rows = conn.execute(
            sa.select(entries).where(entries.c.id > last).order_by(entries.c.id).limit(BATCH)
        ).all()
        if not rows:
            return
        conn.execute(
            entries.update()
            .where(entries.c.id == sa.bindparam("entry_id"))
            .values(canonical=sa.bindparam("bytes")),
            [{"entry_id": r.id, "bytes": _canonical_v1(r)} for r in rows],
        )
        last = rows[-1].id


def upgrade() -> None:
    with op.batch_alter_table("logbook_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("canonical", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("leaf_index", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=True))
    _fill_canonical()
    with op.batch_alter_table("logbook_entries", schema=None) as batch_op:
        batch_op.alter_column("canonical", existing_type=sa.LargeBinary(), nullable=False)
        batch_op.create_unique_constraint(
            batch_op.f("uq_logbook_entries_tenant_id"), ["tenant_id", "leaf_index"]
        )

    op.create_table(
        "merkle_nodes",
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("index", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "level", "index", name=op.f("pk_merkle_nodes")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "log_heads",
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_log_heads_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_log_heads")),
    )
    op.create_table(
        "checkpoints",
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.LargeBinary(), nullable=False),
        sa.Column("token", sa.LargeBinary(), nullable=False),
        sa.Column("key_name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("copies", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_checkpoints_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "size", name=op.f("pk_checkpoints")),
    )


def downgrade() -> None:
    op.drop_table("checkpoints")
    op.drop_table("log_heads")
    op.drop_table("merkle_nodes")
    with op.batch_alter_table("logbook_entries", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_logbook_entries_tenant_id"), type_="unique")
        batch_op.drop_column("leaf_hash")
        batch_op.drop_column("leaf_index")
        batch_op.drop_column("canonical")
