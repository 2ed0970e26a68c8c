from __future__ import annotations

import os

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from bridge.store import Store
from bridge.store.models import InboundEvent, OrgConnection, Program, Referral
from tests.roundtrips import traced
from tests.services import wait_for


def _org(session) -> OrgConnection:  # type: ignore[no-untyped-def]
    org = OrgConnection(
        name="acme", org_id="00D000000000001AAA", login_url="https://x", auth_method="jwt"
    )
    session.add(org)
    session.flush()
    return org


def test_inbound_event_is_unique_per_org_channel_replay_id(store) -> None:  # type: ignore[no-untyped-def]
    with store.session() as session:
        org = _org(session)
        session.add(
            InboundEvent(
                org_connection_id=org.id,
                channel="/topic/SFB_Lead",
                replay_id=7,
                change_key="00Q1:a",
                source="stream",
                sobject_type="Lead",
                change_type="updated",
                payload={},
            )
        )
    with pytest.raises(IntegrityError), store.session() as session:
        session.add(
            InboundEvent(
                org_connection_id=org.id,
                channel="/topic/SFB_Lead",
                replay_id=7,
                change_key="00Q1:b",
                source="stream",
                sobject_type="Lead",
                change_type="updated",
                payload={},
            )
        )
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(InboundEvent)) == 1


def test_same_change_from_poll_and_stream_is_absorbed(store) -> None:  # type: ignore[no-untyped-def]
    with store.session() as session:
        org = _org(session)
        session.add(
            InboundEvent(
                org_connection_id=org.id,
                channel="/topic/SFB_Lead",
                replay_id=1,
                change_key="00Q1:2026-01-01T00:00:00Z",
                source="stream",
                sobject_type="Lead",
                change_type="updated",
                payload={},
            )
        )
    with pytest.raises(IntegrityError), store.session() as session:
        session.add(
            InboundEvent(
                org_connection_id=org.id,
                channel="poll:Lead",
                replay_id=None,
                change_key="00Q1:2026-01-01T00:00:00Z",
                source="poll",
                sobject_type="Lead",
                change_type="updated",
                payload={},
            )
        )


def test_second_connection_of_same_org_id_is_refused(store) -> None:  # type: ignore[no-untyped-def]
    with store.session() as session:
        _org(session)
    with pytest.raises(IntegrityError), store.session() as session:
        session.add(
            OrgConnection(
                name="other", org_id="00D000000000001AAA", login_url="https://x", auth_method="jwt"
            )
        )


def test_datetimes_come_back_timezone_aware(store) -> None:  # type: ignore[no-untyped-def]
    with store.session() as session:
        program = Program(key="p", name="P")
        session.add(program)
        session.flush()
        session.add(Referral(public_id="r1", program_id=program.id, email="a@b.co"))
    with store.session() as session:
        ref = session.scalars(select(Referral)).one()
        assert ref.created_at.tzinfo is not None
        assert ref.status == "pending"


def test_migrations_create_exactly_the_models(store) -> None:  # type: ignore[no-untyped-def]
    """A model change without its migration would leave production databases behind."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from bridge.store.models import Base

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_reserved_ids_are_new_ascending_and_the_next_row_comes_after_them(store) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import insert

    from bridge.store import reserve_ids, row_values

    with store.session() as session:
        session.add(Program(key="first", name="First"))
        session.flush()
        pending = Program(key="pending", name="Pending")  # unsaved: given a reserved id
        session.add(pending)
        ids = reserve_ids(session, Program, 3)
        assert ids == sorted(ids) and len(set(ids)) == 3
        with session.no_autoflush:
            assert session.scalar(select(func.count()).select_from(Program)) == 1  # not written
        pending.id = ids[0]
        rows = [row_values(Program(id=i, key=f"k{i}", name="Reserved")) for i in ids[1:]]
        assert all(r["created_at"] is not None for r in rows)  # the column's default
        session.execute(insert(Program.__table__), rows)  # type: ignore[arg-type]
        session.flush()
        later = Program(key="later", name="Later")
        session.add(later)
        session.flush()
        assert later.id > max(ids)
    with store.session() as session:
        saved = session.scalars(select(Program.id).where(Program.id.in_(ids)))
        assert sorted(saved) == ids


def test_a_referrals_keys_follow_its_fields_on_update_and_only_then(store) -> None:  # type: ignore[no-untyped-def]
    from bridge.matchkeys import referral_keys

    with store.session() as session:
        program = Program(key="p", name="P")
        session.add(program)
        session.flush()
        referral = Referral(
            public_id="r1", program_id=program.id, first_name="Jon", last_name="Doe"
        )
        referral.fill_keys()
        session.add(referral)
    with store.session() as session:
        referral = session.scalars(select(Referral)).one()
        referral.last_name = "Smyth"  # a keyed field: the keys are made again
        referral.email = "Jon.Smyth@Example.com"
    with store.session() as session:
        referral = session.scalars(select(Referral)).one()
        wanted = referral_keys(first_name="Jon", last_name="Smyth", email="Jon.Smyth@Example.com")
        assert {k: getattr(referral, k) for k in wanted} == wanted
        referral.name_key = "kept as it is"  # no keyed field changes: the keys are left alone
        referral.status = "qualified"
    with store.session() as session:
        referral = session.scalars(select(Referral)).one()
        assert (referral.name_key, referral.status) == ("kept as it is", "qualified")


# ---- PostgreSQL: what a session costs in round trips (tests/roundtrips.py) ----------------


def test_a_postgresql_session_sends_no_ping_and_a_read_neither_begin_nor_rollback(
    postgres_store: Store,
) -> None:
    """A write session is BEGIN, its statements, COMMIT (no pre-ping: a round trip per
    checkout); a read session its statements alone (autocommit), and psycopg keeps the
    statements it prepared (a ROLLBACK would make it drop them all: DEALLOCATE ALL)."""
    query = select(func.count()).select_from(Program).where(Program.key == "main")
    with postgres_store.session() as session:
        session.add(Program(key="main", name="Main"))
    with traced(postgres_store) as trips:
        for _ in range(8):
            with postgres_store.reading() as session:
                assert session.scalar(query) == 1
        with postgres_store.session() as session:
            session.scalar(query)
    assert trips.commands == ["BEGIN", "COMMIT"]
    # the reads, the write session's three, and one more where psycopg prepares the read
    assert trips.round_trips == 8 + 3 + 1
    assert len(trips.parsed) < 8  # prepared after psycopg's threshold (5), then reused


def test_a_connection_the_server_closed_is_replaced_at_checkout(postgres_store: Store) -> None:
    with postgres_store.session() as session:
        pid = session.scalar(text("SELECT pg_backend_pid()"))
    # the server closes the pooled connection (polled in autocommit: pg_stat_activity is
    # read once per transaction)
    other = Store(postgres_store.url, isolation_level="AUTOCOMMIT")
    with other.engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        wait_for(
            lambda: (
                not admin.scalar(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                )
            ),
            what="the terminated backend to exit",
        )
    other.dispose()
    with postgres_store.session() as session:  # a new connection, no error
        assert session.scalar(text("SELECT pg_backend_pid()")) != pid


def test_the_checkout_check_works_past_1024_open_descriptors(postgres_store: Store) -> None:
    """A fleet process serving many orgs can hold more than 1,024 descriptors, which select()
    cannot watch ("filedescriptor out of range"); the checkout check must still work."""
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        fresh = Store(postgres_store.url)
        with fresh.session() as session:
            assert session.scalar(text("SELECT 1")) == 1
        with fresh.session() as session:  # checked out again from the pool: the check runs
            assert session.scalar(text("SELECT 1")) == 1
        fresh.dispose()
    finally:
        for fd in held:
            os.close(fd)
