"""lifecycle: growing dossiers (package sequence), dossier events, versioned retention
référentiels, legal holds, disposal requests with their visa, tombstones; unit status and
the end dates of its rules, for the due-date queries

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 23:32:35.622295
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "disposal_requests",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("message_identifier", sa.String(length=200), nullable=False),
        sa.Column("unit_ids", sa.JSON(), nullable=False),
        sa.Column("proposed_by", sa.String(length=200), nullable=False),
        sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("visa", sa.JSON(), nullable=True),
        sa.Column("executed_by", sa.String(length=200), nullable=True),
        sa.Column("executed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("documents", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_disposal_requests_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disposal_requests")),
    )
    with op.batch_alter_table("disposal_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_disposal_requests_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_disposal_requests_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "dossier_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("root_id", sa.String(length=40), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("event_date", sa.Date(), nullable=False),
        sa.Column("reference", sa.String(length=300), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("transfer_id", sa.String(length=40), nullable=True),
        sa.Column("recorded_by", sa.String(length=200), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_dossier_events_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dossier_events")),
    )
    with op.batch_alter_table("dossier_events", schema=None) as batch_op:
        batch_op.create_index("ix_dossier_events_root", ["tenant_id", "root_id"], unique=False)

    op.create_table(
        "legal_holds",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("unit_id", sa.String(length=40), nullable=False),
        sa.Column("root_id", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reference", sa.String(length=300), nullable=True),
        sa.Column("placed_by", sa.String(length=200), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lifted_by", sa.String(length=200), nullable=True),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lift_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_legal_holds_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
    )
    with op.batch_alter_table("legal_holds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_legal_holds_root_id"), ["root_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_legal_holds_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_legal_holds_unit_id"), ["unit_id"], unique=False)

    op.create_table(
        "retention_referentials",
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_retention_referentials_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "version", name=op.f("pk_retention_referentials")),
    )
    op.create_table(
        "tombstones",
        sa.Column("unit_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("root_id", sa.String(length=40), nullable=False),
        sa.Column("request_id", sa.String(length=40), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_tombstones_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("unit_id", name=op.f("pk_tombstones")),
    )
    with op.batch_alter_table("tombstones", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tombstones_request_id"), ["request_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_tombstones_root_id"), ["root_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_tombstones_tenant_id"), ["tenant_id"], unique=False)

    with op.batch_alter_table("archive_units", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=20), nullable=False, server_default="active")
        )
        batch_op.add_column(sa.Column("appraisal_end", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("access_end", sa.Date(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_archive_units_appraisal_end"), ["appraisal_end"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_archive_units_status"), ["status"], unique=False)

    with op.batch_alter_table("packages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sequence", sa.Integer(), nullable=False, server_default="1"))

    # Units archived before this revision: their rule end dates are in their JSON rules. A
    # unit without an appraisal rule of its own inherits its nearest ancestor's: the
    # recomputation (events API) fills those in; here only what the JSON holds is copied.
    units = sa.table(
        "archive_units",
        sa.column("id", sa.String),
        sa.column("appraisal", sa.JSON),
        sa.column("access", sa.JSON),
        sa.column("appraisal_end", sa.Date),
        sa.column("access_end", sa.Date),
    )
    bind = op.get_bind()
    rows = bind.execute(sa.select(units.c.id, units.c.appraisal, units.c.access)).all()
    for unit_id, appraisal, access in rows:
        values = {}
        for column, rule in (("appraisal_end", appraisal), ("access_end", access)):
            end = (rule or {}).get("end_date") if isinstance(rule, dict) else None
            if end:
                values[column] = date.fromisoformat(end)
        if values:
            bind.execute(units.update().where(units.c.id == unit_id).values(**values))


def downgrade() -> None:
    with op.batch_alter_table("packages", schema=None) as batch_op:
        batch_op.drop_column("sequence")

    with op.batch_alter_table("archive_units", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_archive_units_status"))
        batch_op.drop_index(batch_op.f("ix_archive_units_appraisal_end"))
        batch_op.drop_column("access_end")
        batch_op.drop_column("appraisal_end")
        batch_op.drop_column("status")

    with op.batch_alter_table("tombstones", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tombstones_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_tombstones_root_id"))
        batch_op.drop_index(batch_op.f("ix_tombstones_request_id"))

    op.drop_table("tombstones")
    op.drop_table("retention_referentials")
    with op.batch_alter_table("legal_holds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_legal_holds_unit_id"))
        batch_op.drop_index(batch_op.f("ix_legal_holds_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_legal_holds_root_id"))

    op.drop_table("legal_holds")
    with op.batch_alter_table("dossier_events", schema=None) as batch_op:
        batch_op.drop_index("ix_dossier_events_root")

    op.drop_table("dossier_events")
    with op.batch_alter_table("disposal_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_disposal_requests_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_disposal_requests_status"))

    op.drop_table("disposal_requests")
