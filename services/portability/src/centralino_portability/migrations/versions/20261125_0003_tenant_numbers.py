"""The tenants' numbers, from routing's number.assigned and number.released.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 19:20:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenant_number",
        sa.Column("e164", sa.String(length=20), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("area_code", sa.String(length=5), nullable=True),
        sa.PrimaryKeyConstraint("e164", name=op.f("pk_tenant_number")),
    )
    op.create_index(op.f("ix_tenant_number_tenant_id"), "tenant_number", ["tenant_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_tenant_number_tenant_id"), table_name="tenant_number")
    op.drop_table("tenant_number")
