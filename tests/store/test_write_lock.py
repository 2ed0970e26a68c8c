"""Short write transactions on SQLite (issue #16): the worker reads a chunk's candidate pool
before it takes the write lock, so the subscriber never waits for that read."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from bridge import context, defaults, jobs
from bridge.config import BridgeConfig
from bridge.context import WorkerContext
from bridge.receiver.candidates import CandidatePool
from bridge.store import Store
from bridge.store.models import OrgConnection, Program, Referral
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


def test_the_candidate_pool_is_read_without_the_write_lock(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe takes the lock with no wait, so the only writer may be the batch itself: the
    claim heartbeat (a renewal every third of the claim timeout, 10 s by default) is held off
    for the test, or a batch slowed past one renewal would find the lock taken by it."""
    monkeypatch.setattr(defaults, "CLAIM_TIMEOUT_SECONDS", 3600.0)
    store = sqlite_store
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
    # Every change matches a referral by email and qualifies it.
    events = [e for n in range(120) for e in from_bayeux(_lead_message(1000 + n, n), {})]
    with store.session() as s:
        ids = inbox.store_and_advance(s, org_id, events)

    path = store.url.split("///", 1)[1]
    lock_free_while_reading: list[bool] = []
    fetch = CandidatePool.fetch.__func__  # type: ignore[attr-defined]

    def watched_fetch(cls: Any, *args: Any, **kw: Any) -> CandidatePool:
        lock_free_while_reading.append(_write_lock_free(path))
        return fetch(cls, *args, **kw)

    monkeypatch.setattr(CandidatePool, "fetch", classmethod(watched_fetch))

    def no_org(*_a: Any) -> Any:
        raise AssertionError("no Salesforce call expected")

    context.set_context(
        WorkerContext(store=store, config=BridgeConfig(orgs={"acme": ORG}), open_org=no_org)
    )
    try:
        counts = jobs.process_inbound_batch(ids)
    finally:
        context.set_context(None)
    assert sum(counts.values()) == len(ids)
    assert counts == {"processed": 120}
    # One pool per chunk of SAVE_CHUNK entries, each read while the lock was free.
    assert lock_free_while_reading == [True, True, True]
