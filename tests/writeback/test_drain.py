"""The org's drain on a real Redis and store: one drain per window, claims that never let two
senders take one push, backoff held by the claim, the outbound switch holding pushes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from rq import Queue, SimpleWorker
from rq.registry import ScheduledJobRegistry
from sqlalchemy import event, select

from bridge import context, defaults
from bridge.context import WorkerContext
from bridge.store import Store
from bridge.store.models import OrgConnection, Push, PushAttempt, utcnow
from bridge.writeback import jobs, queue_activity, results
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
    monkeypatch.setattr(results, "PUSHES_PER_TRANSACTION", 4)
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


# ---- inbound work goes first: the drain waits out its window without holding the worker ----


def inbound_job(client: redis.Redis, n: int = 0) -> str:
    """An inbound job (of events that do not exist: it claims nothing) waiting in the queue."""
    queue = Queue(defaults.INBOUND_QUEUE, connection=client)
    return queue.enqueue("bridge.jobs.process_inbound_batch", [10_000 + n]).id


def test_waiting_for_inbound_work_leaves_the_queue_as_it_was(redis_client: redis.Redis) -> None:
    from bridge.jobs import inbound_arrives

    assert not inbound_arrives(redis_client, 0.01)
    ids = [inbound_job(redis_client, n) for n in range(3)]
    assert inbound_arrives(redis_client, 5)
    assert Queue(defaults.INBOUND_QUEUE, connection=redis_client).job_ids == ids


def test_a_drain_in_its_window_steps_aside_for_inbound_work_and_runs_after_it(
    sqlite_store: Store, wired: int, sf: SalesforceDouble, redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(defaults, "OUTBOUND_WINDOW_SECONDS", 60.0)  # in its window throughout
    ctx = context.current()
    context.set_context(WorkerContext(ctx.store, ctx.config, redis=redis_client,
                                      open_org=ctx.open_org))  # fmt: skip
    ids = queue(sqlite_store, wired, 2)
    assert jobs.request_drain(redis_client, wired) == 1
    (first,) = drains(redis_client)
    waiting = inbound_job(redis_client)
    first.delete()  # run by hand below, as the worker would have taken it

    assert jobs.drain_org([wired]) == {k: [] for k in jobs.STATES}  # stepped aside
    assert set(states(sqlite_store).values()) == {"pending"}  # nothing claimed, nothing sent
    assert Queue(defaults.INBOUND_QUEUE, connection=redis_client).job_ids == [waiting]
    assert len(drains(redis_client)) == 1  # queued again, behind the inbound job
    # the window's key stays: a push saved meanwhile joins this drain, asks for no other
    more = _more(sqlite_store, wired, 7)
    assert jobs.request_drain(redis_client, wired) == 0

    # once the window is over, the drain goes on even with inbound work waiting
    inbound_job(redis_client, 1)
    monkeypatch.setattr(defaults, "OUTBOUND_WINDOW_SECONDS", 0.0)
    (again,) = drains(redis_client)
    again.delete()
    assert sorted(jobs.drain_org([wired])["sent"]) == sorted(ids + more)
    assert set(states(sqlite_store).values()) == {"sent"}
    assert len(sf.collection_calls()) == 1  # all three in one call, as one drain
    assert jobs.request_drain(redis_client, wired) == 1  # the window is closed: a new drain


seen_by_inbound: list[set[str]] = []


def close_the_window() -> None:
    """An inbound job (run by the test's worker): notes the pushes' states it finds, then
    ends the drain's window."""
    seen_by_inbound.append(set(states(context.current().store).values()))
    defaults.OUTBOUND_WINDOW_SECONDS = 0.0  # put back by the test's monkeypatch


def test_a_drain_queued_behind_inbound_work_sends_everything_in_a_worker_of_both_queues(
    sqlite_store: Store, wired: int, sf: SalesforceDouble, redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """An inbound job arriving while the drain waits for its window: the drain steps aside,
    the worker takes the inbound job, then the drain again, which sends everything."""
    monkeypatch.setattr(defaults, "OUTBOUND_WINDOW_SECONDS", 60.0)
    seen_by_inbound.clear()
    ids = queue(sqlite_store, wired, 3)
    jobs.request_drain(redis_client, wired)
    waits = threading.Event()
    inbound = Queue(defaults.INBOUND_QUEUE, connection=redis_client)
    arrives = threading.Thread(
        target=lambda: waits.wait(30) and inbound.enqueue(f"{__name__}.close_the_window")
    )
    arrives.start()
    original = jobs.inbound_arrives

    def watched(client: redis.Redis, seconds: float) -> bool:
        waits.set()  # the drain waits: the inbound job comes now
        return original(client, seconds)

    monkeypatch.setattr(jobs, "inbound_arrives", watched)
    worker = SimpleWorker(
        [Queue(n, connection=redis_client) for n in defaults.QUEUES], connection=redis_client
    )
    worker.work(burst=True)
    arrives.join()
    assert seen_by_inbound == [{"pending"}]  # the inbound job ran first, before the send
    assert set(states(sqlite_store).values()) == {"sent"}
    assert sorted(states(sqlite_store)) == sorted(ids)
    assert len(sf.collection_calls()) == 1
    assert inbound.count == 0 and drains(redis_client) == []
