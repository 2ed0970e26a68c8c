"""Many rows in one statement (bridge.store.arrays): the same rows as SQLAlchemy's
executemany writes, on SQLite and PostgreSQL; on PostgreSQL one execution whatever the rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import insert, select

from bridge.store import Store
from bridge.store.arrays import insert_rows, update_rows
from bridge.store.models import AuditLog, Program, Push, Referral
from tests.roundtrips import traced

AUDIT: Any = AuditLog.__table__
PUSHES: Any = Push.__table__
REFERRALS: Any = Referral.__table__


def audit_rows(n: int, actor: str) -> list[dict[str, Any]]:
    at = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    return [
        {
            "at": at + timedelta(seconds=i)
            if i % 3
            else at.astimezone(timezone(timedelta(hours=2))),
            "actor": actor,
            "action": "entry.processed",
            "object_type": "sales_entry",
            "object_id": None if i % 4 == 0 else str(i),
            "detail": {"n": i, "reasons": ["fuzzy_match", "é"], "none": None} if i % 2 else {},
        }
        for i in range(n)
    ]


def saved_audit(store: Store, actor: str) -> list[tuple[Any, ...]]:
    with store.session() as s:
        rows = s.execute(
            select(AuditLog.at, AuditLog.action, AuditLog.object_id, AuditLog.detail)
            .where(AuditLog.actor == actor)
            .order_by(AuditLog.id)
        )
        return [tuple(r) for r in rows]


def test_the_rows_are_written_as_sqlalchemys_executemany_writes_them(store: Store) -> None:
    with store.session() as s:
        insert_rows(s, AUDIT, audit_rows(7, "arrays"))
        s.execute(insert(AUDIT), audit_rows(7, "executemany"))
    written = saved_audit(store, "arrays")
    assert written == saved_audit(store, "executemany")
    assert len(written) == 7 and written[1][3] == {
        "n": 1,
        "reasons": ["fuzzy_match", "é"],
        "none": None,
    }
    assert written[0][0] == datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # made UTC, as bound


def push_row(push_id: int, key: str) -> dict[str, Any]:
    now = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    return {
        "id": push_id,
        "org_connection_id": None,
        "kind": "field_update",
        "idempotency_key": key,
        "sobject_type": "Lead",
        "external_id_field": None,
        "external_id": None,
        "referral_id": None,
        "payload": {"record_id": key},
        "state": "pending",
        "attempts": 0,
        "error_fields": [],
        "created_at": now,
        "updated_at": now,
    }


def test_a_taken_key_inserts_nothing_and_only_the_new_ids_come_back(store: Store) -> None:
    with store.session() as s:
        assert insert_rows(s, PUSHES, [push_row(1, "a")], skip_conflicts_on="idempotency_key",
                           returning="id") == [1]  # fmt: skip
    with store.session() as s:
        rows = [push_row(2, "b"), push_row(3, "a"), push_row(4, "c")]
        new = insert_rows(s, PUSHES, rows, skip_conflicts_on="idempotency_key", returning="id")
    assert sorted(new) == [2, 4]
    with store.session() as s:
        saved = dict(s.execute(select(Push.idempotency_key, Push.id)).all())
    assert saved == {"a": 1, "b": 2, "c": 4}


def test_rows_are_updated_by_id(store: Store) -> None:
    with store.session() as s:
        program = Program(key="main", name="Main")
        s.add(program)
        s.flush()
        referrals = [
            Referral(public_id=f"R{i}", program_id=program.id, first_name="Jane", last_name=f"D{i}")
            for i in range(4)
        ]
        s.add_all(referrals)
        s.flush()
        ids = [r.id for r in referrals]
    later = datetime(2026, 2, 1, tzinfo=UTC)
    with store.session() as s:
        update_rows(
            s,
            REFERRALS,
            [
                {"id": ids[0], "sf_lead_id": "00Q000000000001AAA", "updated_at": later},
                {"id": ids[2], "sf_lead_id": None, "updated_at": later},
                {"id": ids[3], "sf_lead_id": "00Q000000000003AAA", "updated_at": later},
            ],
        )
    with store.session() as s:
        saved = s.execute(select(Referral.sf_lead_id, Referral.updated_at).order_by(Referral.id))
        got = [(lead, at == later) for lead, at in saved]
    assert got == [("00Q000000000001AAA", True), (None, False), (None, True),
                   ("00Q000000000003AAA", True)]  # fmt: skip


def test_on_postgresql_rows_are_one_execution_of_one_text_whatever_their_number(
    postgres_store: Store,
) -> None:
    """An executemany ran the INSERT once per row; a multi-row VALUES was a new text for
    every number of rows. One array per column: one Execute, and psycopg prepares the
    statement once (after its threshold of uses) for any number of rows."""
    store = postgres_store
    with store.session() as s, traced(store) as trips:
        insert_rows(s, AUDIT, audit_rows(50, "a"))
    assert trips.executed == 1
    with traced(store) as trips:
        for n in (1, 3, 50, 7, 20, 2, 9):
            with store.session() as s:
                insert_rows(s, AUDIT, audit_rows(n, "b"))
    assert trips.executed == 7
    assert trips.prepares <= 1  # the same text every time: prepared once, then reused
    assert len(saved_audit(store, "b")) == 1 + 3 + 50 + 7 + 20 + 2 + 9
