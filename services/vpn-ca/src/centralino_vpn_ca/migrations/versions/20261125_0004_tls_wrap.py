"""certificate authority: how the VPN's TLS control channel is wrapped

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 19:15:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'certificate_authority',
        sa.Column('tls_wrap', sa.String(length=10), nullable=False, server_default='tls-crypt'),
    )


def downgrade() -> None:
    op.drop_column('certificate_authority', 'tls_wrap')
