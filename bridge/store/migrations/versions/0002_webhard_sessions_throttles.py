"""server-side web sessions, sign-in throttles, API token expiry

The per-user lock columns go: sign-in delays live in `sign_in_throttles` now.

Revision ID: 0002_webhard
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import bridge.store.models

revision = "0002_webhard"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", bridge.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", bridge.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", bridge.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", bridge.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_web_sessions_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("id_hash", name=op.f("uq_web_sessions_id_hash")),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_sessions_user_id"), ["user_id"], unique=False)
    op.create_table(
        "sign_in_throttles",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_at", bridge.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("not_before", bridge.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_sign_in_throttles")),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("expires_at", bridge.store.models.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("locked_until")
        batch_op.drop_column("failed_logins")


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("locked_until", bridge.store.models.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
    op.drop_table("sign_in_throttles")
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_sessions_user_id"))
    op.drop_table("web_sessions")
