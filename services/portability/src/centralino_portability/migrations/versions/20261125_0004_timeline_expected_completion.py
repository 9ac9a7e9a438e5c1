"""The date a timeline step announced.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 19:25:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("port_timeline", sa.Column("expected_completion", sa.Date(), nullable=True))


def downgrade() -> None:
    op.drop_column("port_timeline", "expected_completion")
