"""field changes: the field history of referrals and members (two-way sync)

Revision ID: 0002_sync
Revises: 0002_webhard
"""

from alembic import op
import sqlalchemy as sa
import bridge.store.models


revision = '0002_sync'
down_revision = "0002_webhard"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('field_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('referral_id', sa.Integer(), nullable=True),
    sa.Column('member_id', sa.Integer(), nullable=True),
    sa.Column('field', sa.String(length=128), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('value', sa.JSON(), nullable=True),
    sa.Column('previous', sa.JSON(), nullable=True),
    sa.Column('entry_id', sa.Integer(), nullable=True),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('at', bridge.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['entry_id'], ['sales_entries.id'], name=op.f('fk_field_changes_entry_id_sales_entries')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_field_changes_member_id_members')),
    sa.ForeignKeyConstraint(['referral_id'], ['referrals.id'], name=op.f('fk_field_changes_referral_id_referrals')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_field_changes'))
    )
    with op.batch_alter_table('field_changes', schema=None) as batch_op:
        batch_op.create_index('ix_field_changes_member', ['member_id', 'field'], unique=False)
        batch_op.create_index('ix_field_changes_referral', ['referral_id', 'field'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('field_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_field_changes_referral')
        batch_op.drop_index('ix_field_changes_member')
    op.drop_table('field_changes')
