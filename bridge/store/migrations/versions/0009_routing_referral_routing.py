"""lead routing on referrals; the user mapping's last resolution

The score the routing criteria judge, when it first met the minimum, when the conversation
closed, the due time of a held referral add (the routing sweep sends it then; a due time in
the store survives restarts) and the reps who touched the conversation.

Revision ID: 0007_routing
Revises: 0006_sales
"""

import sqlalchemy as sa

import bridge.store.models
from alembic import op

revision = "0007_routing"
down_revision = "0006_sales"
branch_labels = None
depends_on = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # as bridge.store.models


def upgrade() -> None:
    with op.batch_alter_table("referrals") as batch:
        batch.add_column(sa.Column("score", sa.Float(), nullable=True))
        batch.add_column(sa.Column("qualified_at", bridge.store.models.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("conversation_closed_at", bridge.store.models.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("send_due_at", bridge.store.models.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("meeting_owner", sa.String(255), nullable=True))
        batch.add_column(sa.Column("routed_owner", sa.String(255), nullable=True))
        batch.add_column(sa.Column("closed_by", sa.String(255), nullable=True))
    op.create_index(op.f("ix_referrals_send_due"), "referrals", ["send_due_at"])
    op.create_table(
        "user_mappings",
        sa.Column("id", ROW_ID, nullable=False),
        sa.Column("org_connection_id", ROW_ID, nullable=False),
        sa.Column("rep", sa.String(255), nullable=False),
        sa.Column("salesforce_user_id", sa.String(18), nullable=True),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.Column(
            "resolved_at", bridge.store.models.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["org_connection_id"],
            ["org_connections.id"],
            name=op.f("fk_user_mappings_org_connection_id_org_connections"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_mappings")),
        sa.UniqueConstraint("org_connection_id", "rep", name="uq_user_mappings_rep"),
    )


def downgrade() -> None:
    op.drop_table("user_mappings")
    op.drop_index("ix_referrals_send_due", table_name="referrals")
    with op.batch_alter_table("referrals") as batch:
        for name in (
            "closed_by",
            "routed_owner",
            "meeting_owner",
            "send_due_at",
            "conversation_closed_at",
            "qualified_at",
            "score",
        ):
            batch.drop_column(name)
