"""Pub/Sub API replay ids: an opaque bytes cursor column

Revision ID: 0002_pubsub
Revises: 0002_sync
"""

from alembic import op
import sqlalchemy as sa


revision = "0002_pubsub"
down_revision = "0002_sync"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_cursors") as batch_op:
        batch_op.add_column(sa.Column("replay_bytes", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_cursors") as batch_op:
        batch_op.drop_column("replay_bytes")
