"""Inbox to entries: batch claims, one entry per event, own writes, sweeper (real Redis, rq)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest
import redis
from rq import Queue, SimpleWorker
from sqlalchemy import Text, event, func, select, update

from bridge import context, defaults, intake, jobs
from bridge.config import BridgeConfig
from bridge.context import WorkerContext
from bridge.errors import TransientError
from bridge.receiver.relational import record_fields
from bridge.store import Store
from bridge.store.models import InboundEvent, SalesEntry, SignInThrottle, utcnow
from bridge.streaming import claims, inbox
from bridge.streaming.events import MalformedEvent, WireMessage, from_bayeux, malformed
from bridge.writeback.known import KnownRecords
from tests.factories import (
    INTEGRATION_USER,
    RELATED_FIELDS,
    SALES_USER,
    org_config,
    pushtopic_message,
)
from tests.services import wait_for

ORG = org_config(RELATED_FIELDS)


def lead_message(i: int, user: str = SALES_USER) -> dict[str, Any]:
    record: dict[str, Any] = dict.fromkeys(record_fields(ORG, "Lead"))
    record.update(
        Id=f"00Q{i:015d}",
        SystemModstamp=f"2026-01-05T10:00:{i % 60:02d}.{i % 1000:03d}Z",
        LastModifiedById=user,
        Status="Open",
    )
    return pushtopic_message("/topic/SFB_Lead", i, record)


def store_leads(store: Store, org_id: int, numbers: range, user: str = SALES_USER) -> list[int]:
    events = [e for i in numbers for e in from_bayeux(lead_message(i, user), {})]
    with store.session() as s:
        return inbox.store_and_advance(s, org_id, events)


class Receiver:
    """Stands in for bridge.receiver.service.process_entry: records each call."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def __call__(
        self, session: Any, entry: SalesEntry, org: Any, *, integration_user_id: str | None
    ) -> SalesEntry:
        with self.lock:
            self.calls.append(entry.inbound_event_id or 0)
        assert integration_user_id == INTEGRATION_USER
        entry.outcome = "processed"
        entry.reasons = ["direct_match"]
        return entry

    def batch(
        self,
        session: Any,
        entries: list[SalesEntry],
        org: Any,
        *,
        integration_user_id: str | None,
        pools: Any = None,
        alongside: list[SalesEntry] = [],  # noqa: B006
    ) -> list[SalesEntry]:
        """Stands in for bridge.receiver.service.process_entries (a chunk's entries at once)."""
        for entry in entries:
            self(session, entry, org, integration_user_id=integration_user_id)
        session.add_all([*alongside, *entries])  # the real one writes each entry once, decided
        return entries


def no_org(*_a: Any) -> Any:
    raise AssertionError("no Salesforce call expected: the events carry every field")


@pytest.fixture
def receiver(store: Store, monkeypatch: pytest.MonkeyPatch) -> Receiver:
    fake = Receiver()
    monkeypatch.setattr(intake, "process_entry", fake)
    monkeypatch.setattr(intake, "process_entries", fake.batch)
    context.set_context(
        WorkerContext(store=store, config=BridgeConfig(orgs={"acme": ORG}), open_org=no_org)
    )
    yield fake
    context.set_context(None)


def claim(store: Store, ids: list[int], token: str) -> list[int]:
    with store.session() as s:
        return [ev.id for ev in claims.claim(s, ids, token)]


def entries(store: Store) -> list[SalesEntry]:
    with store.session() as s:
        return list(s.scalars(select(SalesEntry).order_by(SalesEntry.id)))


def states(store: Store) -> dict[str, int]:
    with store.session() as s:
        rows = s.execute(select(InboundEvent.state, func.count()).group_by(InboundEvent.state))
        return {state: n for state, n in rows}


def work(client: redis.Redis) -> None:
    SimpleWorker([Queue(defaults.INBOUND_QUEUE, connection=client)], connection=client).work(
        burst=True
    )


def test_events_become_entries_in_batches(
    store: Store, org_id: int, receiver: Receiver, redis_client: redis.Redis
) -> None:
    ids = store_leads(store, org_id, range(1, 451))
    assert jobs.enqueue_events(redis_client, ids) == 3  # 200 + 200 + 50, not one per event
    work(redis_client)
    assert sorted(receiver.calls) == ids
    assert states(store) == {"done": 450}
    saved = entries(store)
    assert [e.inbound_event_id for e in saved] == ids
    assert saved[0].records["Lead"]["Id"] == "00Q000000000000001"
    assert saved[0].records["Account"] is None


def test_running_a_batch_twice_makes_no_second_entry(
    store: Store, org_id: int, receiver: Receiver
) -> None:
    ids = store_leads(store, org_id, range(1, 11))
    first = jobs.process_inbound_batch(ids)
    second = jobs.process_inbound_batch(ids)
    assert first == {"processed": 10}
    assert second == {"claimed": 0}
    assert len(entries(store)) == 10 and len(receiver.calls) == 10


def test_concurrent_claims_are_disjoint(store: Store, org_id: int) -> None:
    ids = store_leads(store, org_id, range(1, 101))
    results: list[list[int]] = []
    barrier = threading.Barrier(4)

    def claimer(n: int) -> None:
        barrier.wait()
        results.append(claim(store, ids, f"worker-{n}"))

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [i for r in results for i in r]
    assert sorted(claimed) == ids  # every event claimed exactly once


def test_a_stale_claim_of_a_dead_worker_is_taken_over(
    store: Store, org_id: int, receiver: Receiver, redis_client: redis.Redis
) -> None:
    ids = store_leads(store, org_id, range(1, 6))
    assert claim(store, ids, "dead-worker") == ids
    assert claim(store, ids, "another") == []  # a live claim is respected
    with store.session() as s:
        s.execute(
            update(InboundEvent).values(
                claimed_at=utcnow() - timedelta(seconds=defaults.CLAIM_TIMEOUT_SECONDS + 1)
            )
        )
    assert jobs.sweep(store, redis_client) == 5
    work(redis_client)
    assert states(store) == {"done": 5}
    assert len(entries(store)) == 5


def claimed_at(store: Store, ids: list[int]) -> set[Any]:
    with store.session() as s:
        return set(s.scalars(select(InboundEvent.claimed_at).where(InboundEvent.id.in_(ids))))


def test_a_running_batch_keeps_its_claim_past_the_claim_timeout(
    store: Store, org_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat renews the claim while the batch runs, so a batch slower than the claim
    timeout is not taken over; once it stops beating, the claim lapses after the timeout."""
    monkeypatch.setattr(defaults, "CLAIM_TIMEOUT_SECONDS", 0.6)
    ids = store_leads(store, org_id, range(1, 6))
    assert claim(store, ids, "slow-batch") == ids
    first = claimed_at(store, ids)
    started = utcnow()
    with jobs.claim_heartbeat(store, ids, "slow-batch"):
        # Three claim timeouts inside the batch: every attempt to take it over fails.
        while utcnow() - started < timedelta(seconds=1.8):
            assert claim(store, ids, "another") == []
        assert claimed_at(store, ids) != first  # renewed, not merely young
    # The batch is gone without finishing (as if killed): its claim lapses, another takes it.
    wait_for(lambda: claim(store, ids, "another") == ids, timeout=10, what="the claim to lapse")


def test_the_heartbeat_stops_when_the_batch_is_through(store: Store, org_id: int) -> None:
    ids = store_leads(store, org_id, range(1, 3))
    claim(store, ids, "t")
    with store.session() as s:
        assert claims.renew_claim(s, ids, "t") == 2
        assert claims.renew_claim(s, ids, "someone-else") == 0
        claims.finish(s, {i: ("done", None) for i in claims.still_claimed(s, ids, "t")})
    with store.session() as s:
        assert claims.renew_claim(s, ids, "t") == 0  # nothing left to keep


def test_ending_the_events_writes_what_the_session_holds_first(store: Store, org_id: int) -> None:
    """The events' ends are a Core UPDATE on the table: the session still flushes the rows it
    holds before it, as it did before the ORM's UPDATE (the order the chunk's writes had)."""
    ids = store_leads(store, org_id, range(1, 4))
    claim(store, ids, "t")
    writes: list[str] = []

    def statement(_conn: Any, _cursor: Any, text: str, *_args: Any) -> None:
        if text.lstrip().upper().startswith(("INSERT", "UPDATE")):
            writes.append(" ".join(text.split()[:3]))

    event.listen(store.engine, "before_cursor_execute", statement)
    try:
        with store.session() as s:
            s.add(SignInThrottle(key="ip:192.0.2.1"))
            assert claims.finish(s, {i: ("done", None) for i in ids}, "t") == 3
    finally:
        event.remove(store.engine, "before_cursor_execute", statement)
    assert writes == ["INSERT INTO sign_in_throttles", "UPDATE inbound_events SET"]


def test_claim_timeout_and_sweep_pick_a_dead_workers_events_up_within_a_minute() -> None:
    """The production defaults (SPEC: recovery you can wait for): the claim lapses after the
    claim timeout, the next sweep enqueues it; together under a minute."""
    assert defaults.CLAIM_TIMEOUT_SECONDS + defaults.SWEEP_EVERY_SECONDS < 60
    assert defaults.CLAIM_TIMEOUT_SECONDS * defaults.CLAIM_RENEW_FRACTION * 2 < (
        defaults.CLAIM_TIMEOUT_SECONDS
    )


def test_sweeper_enqueues_events_whose_job_was_lost(
    store: Store,
    org_id: int,
    receiver: Receiver,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = store_leads(store, org_id, range(1, 4))  # stored, but never enqueued
    assert jobs.sweep(store, redis_client) == 0  # too young to be considered lost
    redis_client.delete("sfbridge:inbound:sweep")
    monkeypatch.setattr(defaults, "SWEEP_AFTER_SECONDS", 0.0)
    assert jobs.sweep(store, redis_client) == 3
    work(redis_client)
    assert sorted(receiver.calls) == ids


def test_own_writes_are_recorded_and_skipped(store: Store, org_id: int, receiver: Receiver) -> None:
    ids = store_leads(store, org_id, range(1, 3), user=INTEGRATION_USER)
    ids += store_leads(store, org_id, range(3, 4))
    assert jobs.process_inbound_batch(ids) == {"own_write": 2, "processed": 1}
    saved = entries(store)
    assert [(e.outcome, e.reasons) for e in saved] == [
        ("skipped", ["own_write"]),
        ("skipped", ["own_write"]),
        ("processed", ["direct_match"]),
    ]
    assert receiver.calls == [ids[2]]
    assert states(store) == {"skipped": 2, "done": 1}


def test_a_malformed_event_is_saved_as_a_failed_entry(
    store: Store, org_id: int, receiver: Receiver
) -> None:
    message = {
        "channel": "/topic/SFB_Lead",
        "data": {"event": {"replayId": 77, "type": "zap"}, "sobject": {"Id": "00Q1"}},
    }
    with pytest.raises(MalformedEvent) as info:
        from_bayeux(message, {})
    with store.session() as s:
        ids = inbox.store_and_advance(s, org_id, [malformed(message, info.value)])
    assert jobs.process_inbound_batch(ids) == {"failed": 1}
    (entry,) = entries(store)
    assert entry.outcome == "failed" and entry.reasons == ["malformed_event"]
    assert "unknown type" in (entry.error or "")
    assert '"channel": "/topic/SFB_Lead"' in entry.raw["raw"]


def test_an_entry_keeps_its_event_as_the_stream_gave_it(store: Store, org_id: int) -> None:
    """An entry's `raw` is its event's payload as stored: the text the stream gave, not its
    decoding encoded again, for an entry the receiver decides and for an own write alike."""
    texts = {}
    events = []
    for i, user in ((1, SALES_USER), (2, INTEGRATION_USER)):
        message = lead_message(i, user)
        text = json.dumps(message, separators=(",", ":"))  # as a server sends it: compact
        texts[f"00Q{i:015d}"] = text
        events += from_bayeux(WireMessage(message, text), {})
    with store.session() as s:
        ids = inbox.store_and_advance(s, org_id, events)
    context.set_context(
        WorkerContext(store=store, config=BridgeConfig(orgs={"acme": ORG}), open_org=no_org)
    )
    try:
        assert jobs.process_inbound_batch(ids) == {"skipped": 1, "own_write": 1}
    finally:
        context.set_context(None)
    with store.session() as s:
        raw = dict(s.execute(select(SalesEntry.record_id, SalesEntry.raw.cast(Text))).all())
    assert raw == texts


def test_a_receiver_crash_is_saved_with_its_reason(
    store: Store, org_id: int, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = store_leads(store, org_id, range(1, 4))

    def flaky(session: Any, entry: SalesEntry, org: Any, **kw: Any) -> SalesEntry:
        if entry.inbound_event_id == ids[1]:
            raise KeyError("Status")
        return receiver(session, entry, org, **kw)

    def flaky_batch(session: Any, entries: list[SalesEntry], org: Any, **kw: Any) -> Any:
        session.add_all(kw.pop("alongside", []))
        for entry in entries:
            flaky(session, entry, org, **kw)
        return entries

    monkeypatch.setattr(intake, "process_entry", flaky)
    monkeypatch.setattr(intake, "process_entries", flaky_batch)
    assert jobs.process_inbound_batch(ids) == {"processed": 2, "failed": 1}
    failed = [e for e in entries(store) if e.outcome == "failed"]
    assert [(e.inbound_event_id, e.reasons) for e in failed] == [(ids[1], ["receiver_error"])]


def test_an_unexpected_lookup_failure_is_saved_with_its_reason(
    store: Store, org_id: int, receiver: Receiver
) -> None:
    # Not a Salesforce error the bridge knows: retrying the job would fail the same way
    # forever, so the entry is saved failed with what happened (retryable from the review UI).
    record: dict[str, Any] = dict.fromkeys(record_fields(ORG, "Contact"))
    record.update(
        Id="003000000000000001",
        AccountId="001000000000000001",
        SystemModstamp="2026-01-05T10:00:00.000Z",
        LastModifiedById=SALES_USER,
    )
    with store.session() as s:
        ids = inbox.store_and_advance(
            s, org_id, from_bayeux(pushtopic_message("/topic/SFB_Contact", 1, record), {})
        )

    def broken(*_a: Any) -> Any:
        raise ValueError("unexpected answer")

    context.current().open_org = broken
    assert jobs.process_inbound_batch(ids) == {"failed": 1}
    assert states(store) == {"failed": 1}
    (entry,) = entries(store)
    assert entry.outcome == "failed" and entry.reasons == ["lookup_error"]
    assert entry.error == "reading the related records failed: ValueError: unexpected answer"


def test_a_transient_lookup_failure_gives_the_events_back(
    store: Store, org_id: int, receiver: Receiver
) -> None:
    # Contacts need their account: the lookup is attempted and the org is unreachable.
    record: dict[str, Any] = dict.fromkeys(record_fields(ORG, "Contact"))
    record.update(
        Id="003000000000000001",
        AccountId="001000000000000001",
        SystemModstamp="2026-01-05T10:00:00.000Z",
        LastModifiedById=SALES_USER,
    )
    with store.session() as s:
        ids = inbox.store_and_advance(
            s, org_id, from_bayeux(pushtopic_message("/topic/SFB_Contact", 1, record), {})
        )

    def unreachable(*_a: Any) -> Any:
        raise TransientError("org unreachable")

    context.current().open_org = unreachable
    with pytest.raises(TransientError):
        jobs.process_inbound_batch(ids)
    assert states(store) == {"new": 1}  # released: the rq retry takes it again
    assert entries(store) == []


def test_captured_leads_teach_the_known_records(
    store: Store, org_id: int, receiver: Receiver, redis_client: redis.Redis
) -> None:
    context.set_context(
        WorkerContext(
            store=store, config=BridgeConfig(orgs={"acme": ORG}), open_org=no_org,
            redis=redis_client,
        )
    )  # fmt: skip
    message = lead_message(1)
    message["data"]["sobject"]["Email"] = "Lee@Example.com"
    with store.session() as s:
        ids = inbox.store_and_advance(s, org_id, from_bayeux(message, {}))
    jobs.process_inbound_batch(ids)
    known = KnownRecords(redis_client, org_id).whos(["lee@example.com"])
    assert {k: (v.sobject, v.id) for k, v in known.items()} == {
        "lee@example.com": ("Lead", "00Q000000000000001")
    }


def test_a_paused_orgs_events_stay_new_while_another_orgs_are_taken_in(
    store: Store, org_id: int, receiver: Receiver
) -> None:
    from bridge.store.models import OrgConnection
    from tests.factories import connected_org

    with store.session() as s:
        other = connected_org(s, "beta").id
        s.execute(
            update(OrgConnection).where(OrgConnection.id == org_id).values(inbound_paused=True)
        )
    paused = store_leads(store, org_id, range(1, 4))
    running = store_leads(store, other, range(4, 6))
    config = BridgeConfig(orgs={"acme": ORG, "beta": ORG})
    context.set_context(WorkerContext(store=store, config=config, open_org=no_org))
    assert jobs.process_inbound_batch(paused + running) == {"processed": 2}
    assert sorted(receiver.calls) == running
    with store.session() as s:
        new = s.scalars(select(InboundEvent.id).where(InboundEvent.state == "new")).all()
        assert sorted(new) == paused  # held, unclaimed, for when the org is resumed
        s.execute(update(OrgConnection).values(inbound_paused=False))
    assert jobs.process_inbound_batch(paused) == {"processed": 3}
    assert states(store) == {"done": 5}


def test_the_job_asks_for_the_drain_of_each_org_whose_entries_queued_pushes(
    store: Store, org_id: int, receiver: Receiver, redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """An entry's pushes go to its own org: the job knows which orgs to drain from the
    entries, with no read of the pushes."""
    from tests.factories import connected_org

    with store.session() as s:
        quiet = connected_org(s, "beta").id
    with_pushes = store_leads(store, org_id, range(1, 4))
    without = store_leads(store, quiet, range(4, 6))

    def batch(session: Any, entries: list[SalesEntry], org: Any, **kw: Any) -> list[SalesEntry]:
        receiver.batch(
            session,
            entries,
            org,
            integration_user_id=kw["integration_user_id"],
            alongside=kw.get("alongside", []),
        )
        for entry in entries:
            if entry.org_connection_id == org_id:
                entry.decision = {"pushes": [entry.inbound_event_id]}  # as a link-back lists it
        return entries

    monkeypatch.setattr(intake, "process_entries", batch)
    config = BridgeConfig(orgs={"acme": ORG, "beta": ORG})
    context.set_context(WorkerContext(store, config, redis=redis_client, open_org=no_org))
    jobs.process_inbound_batch(with_pushes + without)
    drains = Queue(defaults.OUTBOUND_QUEUE, connection=redis_client).get_jobs()
    assert [(j.func_name, j.args) for j in drains] == [(jobs.DRAIN_ORG, ([org_id],))]
    jobs.process_inbound_batch(store_leads(store, org_id, range(6, 8)))
    assert Queue(defaults.OUTBOUND_QUEUE, connection=redis_client).count == 1  # its window


@pytest.mark.parametrize("size", [20, 200])
def test_a_jobs_own_statements_commits_and_redis_round_trips(
    store: Store, org_id: int, receiver: Receiver, redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch, size: int,
) -> None:  # fmt: skip
    """What a job costs besides the receiver's work (its candidate pools left out here): the
    claim's transaction (the UPDATE … RETURNING the events, their orgs, their programs), then
    per chunk of SAVE_CHUNK a transaction of the re-check, the ids, the entries and one UPDATE
    of the events' ends (done, skipped and failed alike; on SQLite one check more); the known
    records in one Redis round trip (captured Leads learnt, a deleted one forgotten). Before:
    10 statements, 2 commits and 5 round trips a 20-event job of this mix (201 events: 28, 6
    and 5)."""
    monkeypatch.setattr(intake, "candidate_pools", lambda *_a: {})
    context.set_context(
        WorkerContext(store, BridgeConfig(orgs={"acme": ORG}), redis=redis_client,
                      open_org=no_org)
    )  # fmt: skip
    messages = []
    for i in range(1, size):
        message = lead_message(i, INTEGRATION_USER if i % 5 == 0 else SALES_USER)
        message["data"]["sobject"]["Email"] = f"lead{i}@example.com"
        messages.append(message)
    gone = "00Q000000000099999"
    KnownRecords(redis_client, org_id).learn([("gone@example.com", "Lead", gone)])
    messages.append(pushtopic_message("/topic/SFB_Lead", size, {"Id": gone}, "deleted"))
    events = [e for m in messages for e in from_bayeux(m, {})]
    message = {"channel": "/topic/SFB_Lead", "data": {"event": {"replayId": 0, "type": "zap"}}}
    with pytest.raises(MalformedEvent) as info:
        from_bayeux(message, {})
    with store.session() as s:
        ids = inbox.store_and_advance(s, org_id, [*events, malformed(message, info.value)])
    assert len(ids) == size + 1
    redis_client.ping()  # the connection made (and its handshake sent) before counting
    statements: list[str] = []
    commits: list[int] = []
    sent: list[int] = []

    def statement(_conn: Any, _cursor: Any, text: str, *_a: Any) -> None:
        # (the receiver writes the entries, faked here; PostgreSQL sends no BEGIN statement)
        if not text.startswith(("INSERT INTO sales_entries", "BEGIN")):
            statements.append(text.split()[0])

    def commit(_conn: Any) -> None:
        commits.append(1)

    send = redis.connection.Connection.send_packed_command

    def round_trip(conn: Any, command: Any, check_health: bool = True) -> None:
        sent.append(1)  # one a command, one a pipeline
        send(conn, command, check_health)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", round_trip)
    event.listen(store.engine, "before_cursor_execute", statement)
    event.listen(store.engine, "commit", commit)
    try:
        counts = jobs.process_inbound_batch(ids)
    finally:
        event.remove(store.engine, "before_cursor_execute", statement)
        event.remove(store.engine, "commit", commit)
        monkeypatch.undo()
    own = (size - 1) // 5
    assert counts == {"processed": size - own, "own_write": own, "failed": 1}
    with store.session() as s:
        ends = s.execute(select(InboundEvent.state, InboundEvent.reason, func.count())
                         .group_by(InboundEvent.state, InboundEvent.reason)).all()  # fmt: skip
    assert sorted(ends) == [("done", None, size - own), ("failed", "malformed_event", 1),
                            ("skipped", "own_write", own)]  # fmt: skip
    chunks = -(-(size + 1) // defaults.SAVE_CHUNK)
    assert len(commits) == 1 + chunks
    # The UPDATE … RETURNING, the orgs, the programs; per chunk the re-check, the ids
    # (SQLite: max(id); PostgreSQL: the sequence), the events' ends; on SQLite, where the
    # chunk reads before it takes the write lock, the check at its first write that what it
    # read still holds (bridge.store.readfirst).
    per_chunk = 4 if store.engine.dialect.name == "sqlite" else 3
    assert len(statements) == 3 + per_chunk * chunks, " ".join(statements)
    assert len(sent) == 1  # the known records (no pushes queued: no drain asked for)
    emails = ["lead1@example.com", "lead5@example.com", "gone@example.com"]
    known = KnownRecords(redis_client, org_id).whos(emails)
    assert sorted(known) == emails[:2]  # own writes too; the deleted Lead forgotten


def test_the_workers_heartbeat_is_one_round_trip(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rq sends its worker heartbeat (the worker's last_heartbeat, the TTLs of the worker and
    its executions) command by command, three times around every job: 9 round trips a job
    where 3 do. The bridge's worker sends each in one; its jobs run as before."""
    queue = Queue(defaults.INBOUND_QUEUE, connection=redis_client)
    job = queue.enqueue(jobs.batches, [3, 1, 2])
    worker = jobs.worker_class(fork=False)([queue], connection=redis_client)
    assert worker.work(burst=True)
    job.refresh()
    assert job.get_status() == "finished" and job.return_value() == [[1, 2, 3]]
    redis_client.ping()  # the connection made (and its handshake sent) before counting
    sent: list[bytes] = []
    send = redis.connection.Connection.send_packed_command

    def round_trip(conn: Any, command: Any, check_health: bool = True) -> None:
        sent.append(command)  # one a command, one a pipeline
        send(conn, command, check_health)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", round_trip)
    worker.heartbeat(90)
    monkeypatch.undo()
    assert len(sent) == 1
    assert redis_client.hget(worker.key, "last_heartbeat")
    assert 0 < redis_client.ttl(worker.key) <= 90
