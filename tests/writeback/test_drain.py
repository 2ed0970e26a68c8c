"""The org's drain on a real Redis and store: one drain per window, claims that never let two
senders take one push, backoff held by the claim, the outbound switch holding pushes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from rq import Queue
from rq.registry import ScheduledJobRegistry
from sqlalchemy import event, select

from bridge import context, defaults
from bridge.context import WorkerContext
from bridge.store import Store
from bridge.store.models import OrgConnection, Push, PushAttempt, utcnow
from bridge.writeback import jobs, queue_activity, sender
from bridge.writeback.pushes import claim
from tests.writeback.sfdouble import SalesforceDouble
from tests.writeback.test_jobs import CONFIG, OUTBOUND_QUEUE, queue, sf, states, work

__all__ = ["sf"]  # the fixture, shared with test_jobs


@pytest.fixture
def wired(sqlite_store: Store, sf: SalesforceDouble) -> Iterator[int]:
    with sqlite_store.session() as s:
        org = OrgConnection(
            name="acme", login_url="https://login.salesforce.com", auth_method="jwt"
        )
        s.add(org)
        s.flush()
        org_id = org.id
    context.set_context(
        WorkerContext(store=sqlite_store, config=CONFIG, open_org=lambda *_: sf.writer())
    )
    yield org_id
    context.set_context(None)


def drains(client: redis.Redis) -> list[Any]:
    return [
        j
        for j in Queue(OUTBOUND_QUEUE, connection=client).get_jobs()
        if j.func_name.endswith("drain_org")
    ]


def test_pushes_saved_within_the_window_go_out_in_one_drain_and_one_collection(
    sqlite_store: Store, wired: int, sf: SalesforceDouble, redis_client: redis.Redis
) -> None:
    ids: list[int] = []
    for n in range(5):  # five saves, five requests, as five API calls would make them
        ids += queue(sqlite_store, wired, 1) if n == 0 else _more(sqlite_store, wired, n)
        jobs.request_drain(redis_client, wired)
    assert len(drains(redis_client)) == 1
    work(redis_client)
    assert set(states(sqlite_store).values()) == {"sent"}
    assert len(sf.collection_calls()) == 1  # the five Tasks in one sObject Collections call
    # a push saved after the drain asks for (and gets) the next one
    later = _more(sqlite_store, wired, 9)
    assert jobs.request_drain(redis_client, wired) == 1
    work(redis_client)
    assert states(sqlite_store)[later[0]] == "sent"
    with sqlite_store.session() as s:
        attempts = s.scalars(select(PushAttempt).order_by(PushAttempt.id)).all()
        assert [(a.push_id, a.attempt, a.state, a.via) for a in attempts] == [
            *[(i, 1, "sent", "collections") for i in ids],
            (later[0], 1, "sent", "collections"),
        ]


def _more(store: Store, org_id: int, n: int) -> list[int]:
    with store.session() as s:
        org = s.get(OrgConnection, org_id)
        assert org is not None
        return [
            queue_activity(
                s,
                org,
                CONFIG.orgs["acme"],
                {"id": f"b{n}", "kind": "call", "occurred_at": "2026-11-20T10:00:00Z"},
            ).id
        ]


def test_a_claimed_push_is_not_claimed_again_until_its_claim_expires(
    store: Store, sf: SalesforceDouble
) -> None:
    with store.session() as s:
        org = OrgConnection(
            name="acme", login_url="https://login.salesforce.com", auth_method="jwt"
        )
        s.add(org)
        s.flush()
        org_id = org.id
    ids = queue(store, org_id, 3)
    now = utcnow()
    with store.session() as s:
        first = claim(
            s, "a" * 32, until=now + timedelta(minutes=5), now=now, org_connection_id=org_id
        )
    with store.session() as s:
        second = claim(
            s, "b" * 32, until=now + timedelta(minutes=5), now=now, org_connection_id=org_id
        )
    assert (first, second) == (ids, [])
    later = now + timedelta(minutes=6)  # the first sender died: its claim lapsed
    with store.session() as s:
        third = claim(s, "c" * 32, until=later + timedelta(minutes=5), now=later, push_ids=ids[:2])
    assert third == ids[:2]


def test_two_drains_racing_on_postgresql_never_share_a_push(
    postgres_store: Store, sf: SalesforceDouble
) -> None:
    with postgres_store.session() as s:
        org = OrgConnection(
            name="acme", login_url="https://login.salesforce.com", auth_method="jwt"
        )
        s.add(org)
        s.flush()
        org_id = org.id
    ids = queue(postgres_store, org_id, 40)
    now = utcnow()
    results: dict[str, list[int]] = {}
    start = threading.Barrier(4)

    def take(token: str) -> None:
        start.wait()
        with postgres_store.session() as s:
            results[token] = claim(
                s, token, until=now + timedelta(minutes=5), now=now, org_connection_id=org_id
            )

    threads = [threading.Thread(target=take, args=(str(n) * 32,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    taken = [i for got in results.values() for i in got]
    assert sorted(taken) == ids  # every push once, none twice


def test_a_transient_error_holds_the_push_until_its_backoff_and_schedules_a_drain(
    sqlite_store: Store, wired: int, sf: SalesforceDouble, redis_client: redis.Redis
) -> None:
    [pid] = queue(sqlite_store, wired, 1)
    sf.request_faults.append(
        ("composite/sobjects", 503, [{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}])
    )
    jobs.request_drain(redis_client, wired)
    work(redis_client)
    with sqlite_store.session() as s:
        push = s.get(Push, pid)
        assert push is not None and push.state == "pending" and push.claimed_until is not None
        assert push.claimed_until > utcnow() + timedelta(
            seconds=defaults.OUTBOUND_RETRY_INTERVALS[0] - 2
        )
    assert len(ScheduledJobRegistry(OUTBOUND_QUEUE, connection=redis_client).get_job_ids()) == 1
    # another drain before the backoff is over leaves it alone
    calls = len(sf.collection_calls())
    jobs.request_drain(redis_client, wired)
    work(redis_client)
    assert len(sf.collection_calls()) == calls


def test_a_paused_org_keeps_its_pushes_pending_until_resumed(
    sqlite_store: Store, wired: int, sf: SalesforceDouble, redis_client: redis.Redis
) -> None:
    with sqlite_store.session() as s:
        org = s.get(OrgConnection, wired)
        assert org is not None
        org.outbound_paused = True
    ids = queue(sqlite_store, wired, 2)
    jobs.request_drain(redis_client, wired)
    work(redis_client)
    assert set(states(sqlite_store).values()) == {"pending"}
    assert sf.collection_calls() == []
    with sqlite_store.session() as s:
        org = s.get(OrgConnection, wired)
        assert org is not None
        org.outbound_paused = False
    jobs.request_drain(redis_client, wired)
    work(redis_client)
    assert [states(sqlite_store)[i] for i in ids] == ["sent", "sent"]


def test_a_drain_claims_and_saves_its_pushes_a_few_per_transaction(
    sqlite_store: Store,
    wired: int,
    sf: SalesforceDouble,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On SQLite a write transaction keeps the subscriber waiting: a drain's claim of its
    pushes and the saving of their results go PUSHES_PER_TRANSACTION pushes at a time."""
    monkeypatch.setattr(sender, "PUSHES_PER_TRANSACTION", 4)
    ids = queue(sqlite_store, wired, 10)
    per_transaction: list[int] = [0]  # rows of pushes updated, per transaction

    def updated(conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        # (the drain's own claim is one UPDATE of all its pushes: it takes no time)
        if statement.startswith("UPDATE pushes") and "claim_token" not in statement:
            per_transaction[-1] += max(cursor.rowcount, 0)

    def committed(_conn: Any) -> None:
        per_transaction.append(0)

    event.listen(sqlite_store.engine, "after_cursor_execute", updated)
    event.listen(sqlite_store.engine, "commit", committed)
    try:
        jobs.request_drain(redis_client, wired)
        work(redis_client)
    finally:
        event.remove(sqlite_store.engine, "after_cursor_execute", updated)
        event.remove(sqlite_store.engine, "commit", committed)
    assert {states(sqlite_store)[i] for i in ids} == {"sent"}
    assert len(sf.collection_calls()) == 1  # still sent together
    # each push updated when the sender counts its attempt and when it saves its result
    assert sorted(n for n in per_transaction if n) == [2, 2, 4, 4, 4, 4]
