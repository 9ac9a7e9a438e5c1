"""Port requests, their numbers, timeline and attachments.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 18:32:23.617368
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('port_request',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('line_type', sa.String(length=10), nullable=False),
    sa.Column('customer_name', sa.String(length=200), nullable=False),
    sa.Column('tax_code', sa.String(length=16), nullable=True),
    sa.Column('vat_number', sa.String(length=11), nullable=True),
    sa.Column('temporary_number', sa.String(length=20), nullable=True),
    sa.Column('donor_operator', sa.String(length=100), nullable=True),
    sa.Column('donor', sa.String(length=40), nullable=False),
    sa.Column('donor_reference', sa.String(length=100), nullable=True),
    sa.Column('reject_reason', sa.String(length=40), nullable=True),
    sa.Column('expected_completion', sa.Date(), nullable=True),
    sa.Column('expected_closure', sa.Date(), nullable=True),
    sa.Column('reschedules', sa.Integer(), nullable=False),
    sa.Column('warnings', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('state_changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_port_request'))
    )
    op.create_index(op.f('ix_port_request_tenant_id'), 'port_request', ['tenant_id'], unique=False)
    op.create_table('port_attachment',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('request_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('filename', sa.String(length=200), nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('uploaded_by', sa.String(length=200), nullable=False),
    sa.Column('uploaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['port_request.id'], name=op.f('fk_port_attachment_request_id_port_request'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_port_attachment'))
    )
    op.create_index(op.f('ix_port_attachment_request_id'), 'port_attachment', ['request_id'], unique=False)
    op.create_table('port_number',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('request_id', sa.Uuid(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('e164', sa.String(length=20), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('migration_code', sa.String(length=18), nullable=False),
    sa.Column('primary_e164', sa.String(length=20), nullable=True),
    sa.Column('gnr_root', sa.String(length=20), nullable=True),
    sa.Column('open', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['port_request.id'], name=op.f('fk_port_number_request_id_port_request'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_port_number'))
    )
    op.create_index(op.f('ix_port_number_request_id'), 'port_number', ['request_id'], unique=False)
    op.create_index('uq_port_number_open_e164', 'port_number', ['e164'], unique=True, postgresql_where=sa.text('open'))
    op.create_table('port_timeline',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('request_id', sa.Uuid(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('from_state', sa.String(length=20), nullable=True),
    sa.Column('to_state', sa.String(length=20), nullable=True),
    sa.Column('reason', sa.String(length=40), nullable=True),
    sa.Column('comment', sa.String(), nullable=True),
    sa.Column('public', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['port_request.id'], name=op.f('fk_port_timeline_request_id_port_request'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_port_timeline'))
    )
    op.create_index(op.f('ix_port_timeline_request_id'), 'port_timeline', ['request_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_port_timeline_request_id'), table_name='port_timeline')
    op.drop_table('port_timeline')
    op.drop_index('uq_port_number_open_e164', table_name='port_number', postgresql_where=sa.text('open'))
    op.drop_index(op.f('ix_port_number_request_id'), table_name='port_number')
    op.drop_table('port_number')
    op.drop_index(op.f('ix_port_attachment_request_id'), table_name='port_attachment')
    op.drop_table('port_attachment')
    op.drop_index(op.f('ix_port_request_tenant_id'), table_name='port_request')
    op.drop_table('port_request')
