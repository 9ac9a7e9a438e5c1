"""Rate rows keyed by (deck, CSV line): no sequence, no per-row FK trigger under COPY.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index(op.f("ix_rate_deck_id_prefix"), table_name="rate")
    op.drop_constraint(op.f("fk_rate_deck_id_rate_deck"), "rate", type_="foreignkey")
    op.drop_column("rate", "id")  # takes pk_rate with it
    op.create_primary_key("pk_rate", "rate", ["deck_id", "line"])


def downgrade() -> None:
    op.drop_constraint("pk_rate", "rate", type_="primary")
    op.add_column("rate", sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False))
    op.create_primary_key("pk_rate", "rate", ["id"])
    op.create_foreign_key(
        op.f("fk_rate_deck_id_rate_deck"),
        "rate",
        "rate_deck",
        ["deck_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_index(op.f("ix_rate_deck_id_prefix"), "rate", ["deck_id", "prefix"], unique=False)
