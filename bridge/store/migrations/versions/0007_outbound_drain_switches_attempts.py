"""outbound: drain claims on pushes, on/off switches per org and direction, push attempts,
custom member fields

Revision ID: 0002_outbound
Revises: 0002_inputhard
"""

import sqlalchemy as sa
from alembic import op

import bridge.store.models

revision = "0002_outbound"
down_revision = "0002_inputhard"
branch_labels = None
depends_on = None

# 64-bit on PostgreSQL like every row id (0002_inputhard); SQLite keeps its rowid INTEGER.
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("pushes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim_token", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column(
                "claimed_until", bridge.store.models.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.create_index(
            "ix_pushes_org_state", ["org_connection_id", "state", "id"], unique=False
        )
    with op.batch_alter_table("org_connections", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("outbound_paused", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("inbound_paused", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fields", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
    op.create_table(
        "push_attempts",
        sa.Column("id", ROW_ID, nullable=False),
        sa.Column("push_id", ROW_ID, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("sf_id", sa.String(length=18), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_class", sa.String(length=16), nullable=True),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("at", bridge.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["push_id"], ["pushes.id"], name=op.f("fk_push_attempts_push_id_pushes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_attempts")),
    )
    with op.batch_alter_table("push_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_push_attempts_push", ["push_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("push_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_push_attempts_push")
    op.drop_table("push_attempts")
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_column("fields")
    with op.batch_alter_table("org_connections", schema=None) as batch_op:
        batch_op.drop_column("inbound_paused")
        batch_op.drop_column("outbound_paused")
    with op.batch_alter_table("pushes", schema=None) as batch_op:
        batch_op.drop_index("ix_pushes_org_state")
        batch_op.drop_column("claimed_until")
        batch_op.drop_column("claim_token")
