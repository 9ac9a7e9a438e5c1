"""provisioning fetch: the address the gateway saw

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 19:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('provisioning_fetch', sa.Column('forwarded_for', sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column('provisioning_fetch', 'forwarded_for')
