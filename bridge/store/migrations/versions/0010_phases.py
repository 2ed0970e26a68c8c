"""the sales engagement on referrals: the lead phase and the owner rep

Revision ID: 0010_phases
Revises: 0007_routing
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_phases"
down_revision = "0007_routing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("referrals") as batch:
        batch.add_column(sa.Column("phase", sa.String(64), nullable=True))
        batch.add_column(sa.Column("owner", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("referrals") as batch:
        batch.drop_column("owner")
        batch.drop_column("phase")
