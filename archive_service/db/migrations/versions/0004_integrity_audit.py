"""integrity audit: when each copy was last verified and with which outcome, superseded
versions, audit runs

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("offers", sa.JSON(), nullable=False),
        sa.Column("scope", sa.JSON(), nullable=False),
        sa.Column("copies", sa.Integer(), nullable=False),
        sa.Column("problems", sa.Integer(), nullable=False),
        sa.Column("repaired", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_audit_runs_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_runs")),
    )
    with op.batch_alter_table("audit_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_runs_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_runs_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "superseded_copies",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("package_id", sa.String(length=40), nullable=False),
        sa.Column("offer", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("version_id", sa.String(length=200), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("found_sha256", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("superseded_by", sa.String(length=200), nullable=True),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["package_id"], ["packages.id"], name=op.f("fk_superseded_copies_package_id_packages")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_superseded_copies_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_superseded_copies")),
    )
    with op.batch_alter_table("superseded_copies", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_superseded_copies_package_id"), ["package_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_superseded_copies_tenant_id"), ["tenant_id"], unique=False
        )

    with op.batch_alter_table("stored_copies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("verified_outcome", sa.String(length=20), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_stored_copies_verified_at"), ["verified_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("stored_copies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stored_copies_verified_at"))
        batch_op.drop_column("verified_outcome")
        batch_op.drop_column("verified_at")

    with op.batch_alter_table("superseded_copies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_superseded_copies_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_superseded_copies_package_id"))
    op.drop_table("superseded_copies")

    with op.batch_alter_table("audit_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_runs_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_audit_runs_run_id"))
    op.drop_table("audit_runs")
