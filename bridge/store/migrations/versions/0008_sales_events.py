"""sales and demos: sales-engagement events about a referral, each sent as one push

Revision ID: 0006_sales
Revises: 0002_outbound
"""

import sqlalchemy as sa
from alembic import op

import bridge.store.models

_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
revision = "0006_sales"
down_revision = "0002_outbound"
branch_labels = None
depends_on = None


def _event_table(name: str, *extra: sa.Column) -> None:
    op.create_table(
        name,
        sa.Column("id", _ROW_ID, nullable=False),
        sa.Column("org_connection_id", _ROW_ID, nullable=False),
        sa.Column("client_id", sa.String(length=100), nullable=False),
        sa.Column("referral_id", _ROW_ID, nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("push_id", _ROW_ID, nullable=True),
        sa.Column("created_at", bridge.store.models.UTCDateTime(timezone=True), nullable=False),
        *extra,
        sa.ForeignKeyConstraint(
            ["org_connection_id"],
            ["org_connections.id"],
            name=op.f(f"fk_{name}_org_connection_id_org_connections"),
        ),
        sa.ForeignKeyConstraint(
            ["referral_id"], ["referrals.id"], name=op.f(f"fk_{name}_referral_id_referrals")
        ),
        sa.ForeignKeyConstraint(
            ["push_id"], ["pushes.id"], name=op.f(f"fk_{name}_push_id_pushes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")),
        sa.UniqueConstraint(
            "org_connection_id",
            "client_id",
            name=op.f(f"uq_{name}_org_connection_id_client_id"),
        ),
    )
    with op.batch_alter_table(name, schema=None) as batch_op:
        batch_op.create_index(batch_op.f(f"ix_{name}_referral_id"), ["referral_id"], unique=False)


def upgrade() -> None:
    _event_table(
        "sales",
        sa.Column("closed_at", bridge.store.models.UTCDateTime(timezone=True), nullable=False),
    )
    _event_table(
        "demos",
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("scheduled_at", bridge.store.models.UTCDateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for name in ("demos", "sales"):
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{name}_referral_id"))
        op.drop_table(name)
