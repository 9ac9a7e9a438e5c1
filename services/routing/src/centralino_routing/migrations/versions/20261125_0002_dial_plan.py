"""Dial plan: extensions, forwarding, schedules, IVR menus, numbers, link groups, plan versions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 18:33:46.184801
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
    # Plan versions come from one sequence, so every change gets a new, larger one.
    op.execute("CREATE SEQUENCE dialplan_version_seq")
    op.create_table('dialplan_version',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_dialplan_version'))
    )
    op.create_table('extension',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('number', sa.String(length=6), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('allow_national_fixed', sa.Boolean(), nullable=False),
    sa.Column('allow_mobile', sa.Boolean(), nullable=False),
    sa.Column('allow_international', sa.Boolean(), nullable=False),
    sa.Column('allow_premium', sa.Boolean(), nullable=False),
    sa.Column('allow_toll_free', sa.Boolean(), nullable=False),
    sa.Column('allow_shared_cost', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_extension')),
    sa.UniqueConstraint('tenant_id', 'number', name=op.f('uq_extension_tenant_id'))
    )
    op.create_index(op.f('ix_extension_tenant_id'), 'extension', ['tenant_id'], unique=False)
    op.create_table('ivr_menu',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('prompt', sa.String(length=100), nullable=False),
    sa.Column('timeout_seconds', sa.Integer(), nullable=False),
    sa.Column('options', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('direct_dial', sa.Boolean(), nullable=False),
    sa.Column('direct_dial_allow', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('direct_dial_deny', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('timeout_target', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('invalid_target', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ivr_menu')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_ivr_menu_tenant_id'))
    )
    op.create_index(op.f('ix_ivr_menu_tenant_id'), 'ivr_menu', ['tenant_id'], unique=False)
    op.create_table('link_group',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_link_group')),
    sa.UniqueConstraint('name', name=op.f('uq_link_group_name'))
    )
    op.create_table('schedule',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('closed_on_holidays', sa.Boolean(), nullable=False),
    sa.Column('opening_hours', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('closed_dates', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedule')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_schedule_tenant_id'))
    )
    op.create_index(op.f('ix_schedule_tenant_id'), 'schedule', ['tenant_id'], unique=False)
    op.create_table('forwarding_rule',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('extension_id', sa.Uuid(), nullable=False),
    sa.Column('condition', sa.String(length=20), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('target_extension', sa.String(length=6), nullable=True),
    sa.Column('target_e164', sa.String(length=16), nullable=True),
    sa.Column('after_seconds', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['extension_id'], ['extension.id'], name=op.f('fk_forwarding_rule_extension_id_extension'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_forwarding_rule')),
    sa.UniqueConstraint('extension_id', 'condition', name=op.f('uq_forwarding_rule_extension_id'))
    )
    op.create_index(op.f('ix_forwarding_rule_tenant_id'), 'forwarding_rule', ['tenant_id'], unique=False)
    op.create_table('link_member',
    sa.Column('link_group_id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('digit', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['link_group_id'], ['link_group.id'], name=op.f('fk_link_member_link_group_id_link_group'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('link_group_id', 'tenant_id', name=op.f('pk_link_member')),
    sa.UniqueConstraint('link_group_id', 'digit', name=op.f('uq_link_member_link_group_id')),
    sa.UniqueConstraint('tenant_id', name=op.f('uq_link_member_tenant_id'))
    )
    op.create_table('number',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('e164', sa.String(length=16), nullable=False),
    sa.Column('target', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('night_target', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('schedule_id', sa.Uuid(), nullable=True),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['schedule_id'], ['schedule.id'], name=op.f('fk_number_schedule_id_schedule'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_number')),
    sa.UniqueConstraint('e164', name=op.f('uq_number_e164'))
    )
    op.create_index(op.f('ix_number_tenant_id'), 'number', ['tenant_id'], unique=False)
    # ### end Alembic commands ###


def downgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.drop_index(op.f('ix_number_tenant_id'), table_name='number')
    op.drop_table('number')
    op.drop_table('link_member')
    op.drop_index(op.f('ix_forwarding_rule_tenant_id'), table_name='forwarding_rule')
    op.drop_table('forwarding_rule')
    op.drop_index(op.f('ix_schedule_tenant_id'), table_name='schedule')
    op.drop_table('schedule')
    op.drop_table('link_group')
    op.drop_index(op.f('ix_ivr_menu_tenant_id'), table_name='ivr_menu')
    op.drop_table('ivr_menu')
    op.drop_index(op.f('ix_extension_tenant_id'), table_name='extension')
    op.drop_table('extension')
    op.drop_table('dialplan_version')
    op.execute("DROP SEQUENCE dialplan_version_seq")
    # ### end Alembic commands ###
