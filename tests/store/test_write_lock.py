"""Short write transactions on SQLite (issue #16): the worker reads a chunk's candidate pool
and decides its entries before it takes the write lock, so the subscriber never waits for
that work, and a change another writer makes meanwhile is not written over."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import pytest
from sqlalchemy import select

from bridge import context, defaults, jobs
from bridge.config import BridgeConfig
from bridge.context import WorkerContext
from bridge.receiver import service
from bridge.receiver.candidates import CandidatePool
from bridge.store import Store, readfirst, reserve_ids
from bridge.store.models import (
    OrgConnection,
    Program,
    Referral,
    ReferralStatusChange,
    SalesEntry,
)
from bridge.streaming import inbox
from bridge.streaming.events import from_bayeux
from tests.store.test_query_plans import ORG, _lead_message


def _write_lock_free(path: str) -> bool:
    """Whether another process could take SQLite's write lock right now."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:  # database is locked
        return False
    finally:
        other.close()


def _acme(store: Store) -> tuple[str, list[int]]:
    """An org with 120 referrals and a stored change of each one's Lead, which matches it by
    email and qualifies it: the database file's path and the events' ids."""
    with store.session() as s:
        conn = OrgConnection(
            name="acme",
            org_id="00D000000000001AAA",
            login_url="https://x",
            instance_url="https://x",
            auth_method="jwt",
        )
        s.add(conn)
        s.flush()
        org_id = conn.id
        s.add(Program(key="main", name="Main", org_connection_id=conn.id))
        s.flush()
        program_id = s.query(Program.id).scalar()
        s.add_all(
            Referral(
                public_id=f"R{n}", program_id=program_id, first_name="Jane", last_name=f"Doe{n}",
                email=f"jane{n}@example.test",
            )
            for n in range(120)
        )  # fmt: skip
    events = [e for n in range(120) for e in from_bayeux(_lead_message(1000 + n, n), {})]
    with store.session() as s:
        ids = inbox.store_and_advance(s, org_id, events)
    return store.url.split("///", 1)[1], ids


def _run(store: Store, ids: list[int]) -> dict[str, int]:
    def no_org(*_a: Any) -> Any:
        raise AssertionError("no Salesforce call expected")

    context.set_context(
        WorkerContext(store=store, config=BridgeConfig(orgs={"acme": ORG}), open_org=no_org)
    )
    try:
        return jobs.process_inbound_batch(ids)
    finally:
        context.set_context(None)


@pytest.fixture
def no_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probes take the lock with no wait, so the only writer may be the batch itself: the
    claim heartbeat (a renewal every third of the claim timeout, 10 s by default) is held off
    for the test, or a batch slowed past one renewal would find the lock taken by it."""
    monkeypatch.setattr(defaults, "CLAIM_TIMEOUT_SECONDS", 3600.0)


def test_the_candidate_pool_is_read_without_the_write_lock(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch, no_heartbeat: None
) -> None:
    store = sqlite_store
    path, ids = _acme(store)
    lock_free_while_reading: list[bool] = []
    fetch = CandidatePool.fetch.__func__  # type: ignore[attr-defined]

    def watched_fetch(cls: Any, *args: Any, **kw: Any) -> CandidatePool:
        lock_free_while_reading.append(_write_lock_free(path))
        return fetch(cls, *args, **kw)

    monkeypatch.setattr(CandidatePool, "fetch", classmethod(watched_fetch))
    counts = _run(store, ids)
    assert sum(counts.values()) == len(ids)
    assert counts == {"processed": 120}
    # One pool per chunk of SAVE_CHUNK entries, each read while the lock was free.
    assert lock_free_while_reading == [True, True, True]


def test_a_chunk_decides_without_the_write_lock_and_takes_it_to_write(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch, no_heartbeat: None
) -> None:
    """Its previous values, its referrals and every decision are read and made before the
    chunk's transaction takes the lock (bridge.store.readfirst): only its writes hold it up."""
    store = sqlite_store
    path, ids = _acme(store)
    lock_free_while_deciding: list[bool] = []
    lock_free_while_writing: list[bool] = []
    decide = service.decide
    write = service._EntryWriter.write

    def watched_decide(*args: Any, **kw: Any) -> Any:
        lock_free_while_deciding.append(_write_lock_free(path))
        return decide(*args, **kw)

    def watched_write(writer: Any, **kw: Any) -> None:
        write(writer, **kw)
        lock_free_while_writing.append(_write_lock_free(path))

    monkeypatch.setattr(service, "decide", watched_decide)
    monkeypatch.setattr(service._EntryWriter, "write", watched_write)
    assert _run(store, ids) == {"processed": 120}
    assert len(lock_free_while_deciding) >= 120 and all(lock_free_while_deciding)
    assert lock_free_while_writing == [False, False, False]  # one a chunk, the lock held


def test_a_referral_changed_between_the_chunks_read_and_its_write_is_decided_on_again(
    sqlite_store: Store,
    monkeypatch: pytest.MonkeyPatch,
    no_heartbeat: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another writer qualifies a referral while a chunk decides on it: the chunk finds the
    change when it takes the lock, and is done again under the lock, on the referral as it is
    now (not qualified twice, no status change written over the other's)."""
    store = sqlite_store
    _path, ids = _acme(store)
    other = Store(store.url, connect_args={"timeout": 0.5})  # another process's writer
    decide = service.decide
    changed: list[int] = []

    def decide_meanwhile_qualified(*args: Any, **kw: Any) -> Any:
        if not changed:
            with other.session() as s:
                referral = s.scalars(select(Referral).where(Referral.public_id == "R0")).one()
                referral.status = "qualified"
                changed.append(referral.id)
        return decide(*args, **kw)

    monkeypatch.setattr(service, "decide", decide_meanwhile_qualified)
    caplog.set_level(logging.DEBUG, logger="sfbridge.intake")
    try:
        counts = _run(store, ids)
    finally:
        other.dispose()
    assert counts == {"processed": 120}
    assert "chunk redone under the write lock" in caplog.text
    with store.session() as s:
        history = s.scalars(
            select(ReferralStatusChange.to_status).where(
                ReferralStatusChange.referral_id == changed[0]
            )
        ).all()
        entry = s.scalars(select(SalesEntry).where(SalesEntry.inbound_event_id == ids[0])).one()
    assert history == []  # the other writer's change stands alone
    assert entry.decision["from_status"] == "qualified"
    assert "status_unchanged" in entry.reasons


def test_a_read_first_session_takes_the_write_lock_at_its_first_write(sqlite_store: Store) -> None:
    store = sqlite_store
    path = store.url.split("///", 1)[1]
    with store.session(read_first=True) as s:
        (program_id,) = reserve_ids(s, Program, 1)
        assert s.scalar(select(Program.id)) is None
        assert _write_lock_free(path)  # reading
        s.add(Program(id=program_id, key="main", name="Main"))
        s.flush()
        assert not _write_lock_free(path)  # writing
    assert _write_lock_free(path)
    with store.session() as s:
        assert s.scalar(select(Program.key)) == "main"


def test_an_id_reserved_while_reading_and_taken_meanwhile_makes_the_session_stale(
    sqlite_store: Store,
) -> None:
    """Another writer takes the id first: the first write finds it, before writing anything."""
    store = sqlite_store
    with pytest.raises(readfirst.Stale), store.session(read_first=True) as s:
        (program_id,) = reserve_ids(s, Program, 1)
        with store.session() as other:
            other.add(Program(key="other", name="Other"))
        s.add(Program(id=program_id, key="main", name="Main"))
        s.flush()
    with store.session() as s:
        assert s.scalars(select(Program.key)).all() == ["other"]
