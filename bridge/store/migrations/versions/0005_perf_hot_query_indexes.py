"""indexes that fit the hot queries

The candidate pool's direct lookups get (program_id, sf_*_id) indexes, partial on NOT NULL
(the single-column ones could not serve `program_id = ? AND sf_lead_id IN (...)`, and SQLite
read the whole program instead); the email index leads with the email; the API lists get
indexes that give their order. A fourth name block, the surname's first three letters
(name_pblock), is added and filled in for the referrals already stored (a typo late in a
short surname changes the other three).

Revision ID: 0002_perf
Revises: 0002_pubsub
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_perf"
down_revision = "0002_pubsub"
branch_labels = None
depends_on = None

_SF_OBJECTS = ("lead", "contact", "account", "opportunity")


def _fill_prefix_blocks() -> None:
    # The same function the product writes the key with, a page of referrals at a time.
    from bridge.matchkeys import name_blocks

    conn = op.get_bind()
    referrals = sa.table(
        "referrals",
        sa.column("id", sa.Integer),
        sa.column("first_name", sa.String),
        sa.column("last_name", sa.String),
        sa.column("name_pblock", sa.String),
    )
    after = 0
    while True:
        rows = conn.execute(
            sa.select(referrals.c.id, referrals.c.first_name, referrals.c.last_name)
            .where(referrals.c.id > after)
            .order_by(referrals.c.id)
            .limit(5000)
        ).all()
        if not rows:
            return
        values = []
        for row in rows:
            blocks = name_blocks(row.first_name, row.last_name, kind="prefix")
            if blocks:
                values.append({"rid": row.id, "block": blocks[0]})
        if values:
            conn.execute(
                referrals.update()
                .where(referrals.c.id == sa.bindparam("rid"))
                .values(name_pblock=sa.bindparam("block")),
                values,
            )
        after = rows[-1].id


def upgrade() -> None:
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name_pblock", sa.String(length=16), nullable=True))
    _fill_prefix_blocks()
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.create_index(
            "ix_referrals_program_name_pblock", ["program_id", "name_pblock"], unique=False
        )
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
        batch_op.drop_index("ix_referrals_program_name_pblock")
        batch_op.drop_column("name_pblock")
        batch_op.drop_index("ix_referrals_program")
        batch_op.drop_index("ix_referrals_status")
        batch_op.drop_index("ix_referrals_email")
        batch_op.create_index(
            "ix_referrals_program_email", ["program_id", "email_key"], unique=False
        )
        for obj in _SF_OBJECTS:
            batch_op.drop_index(f"ix_referrals_program_sf_{obj}")
            batch_op.create_index(f"ix_referrals_sf_{obj}", [f"sf_{obj}_id"], unique=False)
