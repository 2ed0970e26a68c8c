"""indexes that fit the hot queries

The candidate pool's direct lookups get (program_id, sf_*_id) indexes, partial on NOT NULL
(the single-column ones could not serve `program_id = ? AND sf_lead_id IN (...)`, and SQLite
read the whole program instead); the email index leads with the email; the API lists get
indexes that give their order.

Revision ID: 0002_perf
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_perf"
down_revision = "0001"
branch_labels = None
depends_on = None

_SF_OBJECTS = ("lead", "contact", "account", "opportunity")


def upgrade() -> None:
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        for obj in _SF_OBJECTS:
            batch_op.drop_index(f"ix_referrals_sf_{obj}")
            present = sa.text(f"sf_{obj}_id IS NOT NULL")
            batch_op.create_index(
                f"ix_referrals_program_sf_{obj}",
                ["program_id", f"sf_{obj}_id"],
                unique=False,
                sqlite_where=present,
                postgresql_where=present,
            )
        batch_op.drop_index("ix_referrals_program_email")
        batch_op.create_index("ix_referrals_email", ["email_key"], unique=False)
        batch_op.create_index("ix_referrals_status", ["status"], unique=False)
        batch_op.create_index("ix_referrals_program", ["program_id"], unique=False)
    with op.batch_alter_table("sales_entries", schema=None) as batch_op:
        batch_op.create_index("ix_sales_entries_sobject", ["sobject_type"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sales_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_sales_entries_sobject")
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.drop_index("ix_referrals_program")
        batch_op.drop_index("ix_referrals_status")
        batch_op.drop_index("ix_referrals_email")
        batch_op.create_index(
            "ix_referrals_program_email", ["program_id", "email_key"], unique=False
        )
        for obj in _SF_OBJECTS:
            batch_op.drop_index(f"ix_referrals_program_sf_{obj}")
            batch_op.create_index(f"ix_referrals_sf_{obj}", [f"sf_{obj}_id"], unique=False)
