"""64-bit row ids and foreign keys on PostgreSQL

The API accepts ids up to 2^63-1; 32-bit columns made any id from 2^31 up a database error
(a 500). SQLite's INTEGER is 64-bit already (and an INTEGER PRIMARY KEY must stay INTEGER to
remain the rowid), so only PostgreSQL changes: the columns and the sequences behind them.

Revision ID: 0002_inputhard
Revises: 0002_perf
"""

from alembic import op
import sqlalchemy as sa


revision = "0002_inputhard"
down_revision = "0002_perf"
branch_labels = None
depends_on = None

#: table -> its id column (if it has a sequence) and its foreign-key columns
COLUMNS = {
    "org_connections": ["id"],
    "programs": ["id", "org_connection_id"],
    "members": ["id", "program_id"],
    "referrals": ["id", "program_id", "member_id"],
    "referral_status_changes": ["id", "referral_id", "entry_id"],
    "inbound_events": ["id", "org_connection_id"],
    "sync_cursors": ["org_connection_id"],
    "sales_entries": [
        "id",
        "org_connection_id",
        "program_id",
        "inbound_event_id",
        "referral_id",
        "member_id",
    ],
    "pushes": ["id", "org_connection_id", "referral_id"],
    "users": ["id"],
    "api_tokens": ["id", "user_id"],
    "audit_log": ["id"],
    "web_sessions": ["id", "user_id"],
    "field_changes": ["id", "referral_id", "member_id", "entry_id"],
}


def _change(to: type[sa.types.TypeEngine], sequence_type: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in COLUMNS.items():
        for column in columns:
            op.alter_column(table, column, type_=to())
        if "id" in columns:
            op.execute(
                sa.text(
                    f"ALTER SEQUENCE IF EXISTS {table}_id_seq AS {sequence_type}"
                )
            )


def upgrade() -> None:
    _change(sa.BigInteger, "bigint")


def downgrade() -> None:
    _change(sa.Integer, "integer")
