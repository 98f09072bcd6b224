"""access derogations: a named client may read a unit's subtree before its délai de
communicabilité expires (Code du patrimoine L213-3), until revoked or an optional end date

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 00:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_derogations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("unit_id", sa.String(length=40), nullable=False),
        sa.Column("root_id", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("reference", sa.String(length=300), nullable=False),
        sa.Column("decision_date", sa.Date(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("granted_by", sa.String(length=200), nullable=False),
        sa.Column("granted_by_client", sa.String(length=200), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.Date(), nullable=True),
        sa.Column("revoked_by", sa.String(length=200), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_access_derogations_client_id_clients")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_access_derogations_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_derogations")),
    )
    with op.batch_alter_table("access_derogations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_access_derogations_client", ["tenant_id", "client_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_access_derogations_tenant_id"), ["tenant_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_access_derogations_unit_id"), ["unit_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("access_derogations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_derogations_unit_id"))
        batch_op.drop_index(batch_op.f("ix_access_derogations_tenant_id"))
        batch_op.drop_index("ix_access_derogations_client")
    op.drop_table("access_derogations")
