"""rq jobs: stored inbound events → sales entries, in batches.

Small, importable, idempotent functions; state is re-checked before anything is done:

1. `enqueue_events` (called after the events' transaction committed) puts one job per batch
   of up to 200 event ids on the `inbound` queue, with rq `Retry` set at enqueue time.
2. `process_inbound_batch` claims the batch's events (new → processing, with a token, in one
   short transaction), reads what the events lack from Salesforce in bulk (relational rules),
   then saves one entry per event and hands them to the receiver a chunk at a time
   (`process_entries`: one transaction, lookups batched); if a chunk fails it is redone
   event by event, each in its own savepoint. The entry is unique per event, so no event
   ever becomes two entries.
3. `sweep` re-enqueues events still `new` after a while (a lost job, a Redis restart) and
   events whose claim is older than the claim timeout (a worker killed mid-batch).

Events caused by the bridge's own writes (LastModifiedById = the integration user) are saved
as entries with outcome `skipped`, reason `own_write`, and go no further.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import redis
from rq import Queue, Retry, get_current_job
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bridge.config import BridgeConfig, OrgConfig
from bridge.errors import BridgeError, TransientError
from bridge.receiver.decision import is_own_write
from bridge.receiver.relational import SalesforceLookup, Trigger, related_records
from bridge.store import Store
from bridge.store.models import InboundEvent, OrgConnection, Program, SalesEntry, utcnow
from bridge.streaming import defaults, inbox
from bridge.streaming.events import cdc_values

log = logging.getLogger("sfbridge.jobs")

# ---- context (one per worker process) -------------------------------------------------------


@dataclass
class InboundContext:
    """What the jobs of one process share: store, config, and open org connections."""

    store: Store
    config: BridgeConfig
    vault: Any = None
    orgs: dict[str, Any] = field(default_factory=dict)
    open_org: Any = None  # (name, OrgConfig) -> SalesforceOrg; default: bridge.salesforce

    def sforg(self, name: str, org: OrgConfig) -> Any:
        if name not in self.orgs:
            if self.open_org is not None:
                self.orgs[name] = self.open_org(name, org)
            else:
                from bridge.salesforce.connection import open_org

                self.orgs[name] = open_org(self.store, self.vault, name, org)
        return self.orgs[name]


_context: InboundContext | None = None
_context_lock = threading.Lock()


def set_context(ctx: InboundContext | None) -> None:
    global _context
    _context = ctx


def get_context() -> InboundContext:
    global _context
    with _context_lock:
        if _context is None:
            from bridge.runtime import Runtime

            rt = Runtime.from_env()
            _context = InboundContext(store=rt.store, config=rt.config, vault=rt.vault)
        return _context


def process_entry(
    session: Session, entry: SalesEntry, org: OrgConfig, *, integration_user_id: str | None
) -> SalesEntry:
    """The receiver decides and applies the entry (kept as one seam for tests)."""
    from bridge.receiver.service import process_entry as receive

    return receive(session, entry, org, integration_user_id=integration_user_id)


def process_entries(
    session: Session,
    entries: list[SalesEntry],
    org: OrgConfig,
    *,
    integration_user_id: str | None,
) -> list[SalesEntry]:
    """The receiver decides and applies a chunk's entries together (lookups batched)."""
    from bridge.receiver.service import process_entries as receive_all

    return receive_all(session, entries, org, integration_user_id=integration_user_id)


# ---- enqueueing ------------------------------------------------------------------------------


def batches(ids: Sequence[int], size: int = defaults.BATCH_SIZE) -> list[list[int]]:
    ordered = sorted(ids)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def enqueue_events(client: redis.Redis, ids: Sequence[int]) -> int:
    """One job per batch of stored events; returns how many jobs were enqueued.

    Called after the events committed. If Redis is unreachable nothing is lost: the events
    stay `new` and the sweeper enqueues them later.
    """
    if not ids:
        return 0
    queue = Queue(defaults.INBOUND_QUEUE, connection=client)
    jobs = [
        Queue.prepare_data(
            process_inbound_batch,
            args=(batch,),
            timeout=defaults.JOB_TIMEOUT_SECONDS,
            result_ttl=300,
            failure_ttl=7 * 24 * 3600,
            retry=Retry(max=defaults.JOB_RETRIES, interval=list(defaults.JOB_RETRY_INTERVALS)),
            description=f"inbound events {batch[0]}..{batch[-1]} ({len(batch)})",
        )
        for batch in batches(ids)
    ]
    try:
        queue.enqueue_many(jobs)
    except redis.RedisError as exc:
        log.warning(
            "could not enqueue %d event(s) (%s); the sweeper will pick them up", len(ids), exc
        )
        return 0
    return len(jobs)


# ---- the batch job ---------------------------------------------------------------------------


def claim(store: Store, ids: Sequence[int], token: str) -> list[int]:
    """Mark the events ours (new → processing); a stale claim of a dead worker is taken over.

    One UPDATE … WHERE state allows it … RETURNING: two jobs claiming the same events at the
    same time get disjoint sets, on SQLite and PostgreSQL alike.
    """
    now = utcnow()
    stale = now - timedelta(seconds=defaults.CLAIM_TIMEOUT_SECONDS)
    with store.session() as session:
        claimed = session.scalars(
            update(InboundEvent)
            .where(
                InboundEvent.id.in_(list(ids)),
                (InboundEvent.state == "new")
                | ((InboundEvent.state == "processing") & (InboundEvent.claimed_at < stale)),
            )
            .values(
                state="processing",
                claimed_at=now,
                claimed_by=token,
                attempts=InboundEvent.attempts + 1,
            )
            .returning(InboundEvent.id)
            .execution_options(synchronize_session=False)
        ).all()
    return sorted(claimed)


def release(store: Store, ids: Sequence[int], token: str) -> None:
    """Give claimed events back (state new) so a retry of the job can take them again."""
    with store.session() as session:
        session.execute(
            update(InboundEvent)
            .where(
                InboundEvent.id.in_(list(ids)),
                InboundEvent.state == "processing",
                InboundEvent.claimed_by == token,
            )
            .values(state="new", claimed_at=None, claimed_by=None)
            .execution_options(synchronize_session=False)
        )


def _trigger(event: InboundEvent) -> Trigger | None:
    payload = event.payload or {}
    if event.change_type == "malformed" or "_error" in payload:
        return None
    if "record" in payload:  # polled
        record = dict(payload["record"])
    else:
        data = payload.get("data") or {}
        if isinstance(data.get("sobject"), dict):
            record = dict(data["sobject"])
        else:  # CDC: the values this event carries (all for CREATE, the changed for UPDATE)
            record = cdc_values(data.get("payload") or {})
    record = {k: v for k, v in record.items() if k != "attributes"}
    record["Id"] = event.record_id or record.get("Id")
    return Trigger(event.sobject_type, record, deleted=event.change_type == "deleted")


@dataclass
class _OrgInfo:
    name: str
    config: OrgConfig | None
    integration_user_id: str | None


def process_inbound_batch(event_ids: list[int]) -> dict[str, int]:
    """The rq job: turn a batch of stored events into entries. Safe to run twice."""
    ctx = get_context()
    job = get_current_job()
    token = f"{job.id if job else 'direct'}:{uuid.uuid4().hex[:8]}"
    claimed = claim(ctx.store, event_ids, token)
    if not claimed:
        return {"claimed": 0}
    with ctx.store.session() as session:
        events = list(
            session.scalars(
                select(InboundEvent).where(InboundEvent.id.in_(claimed)).order_by(InboundEvent.id)
            )
        )
        orgs = {
            c.id: _OrgInfo(c.name, ctx.config.orgs.get(c.name), c.integration_user_id)
            for c in session.scalars(
                select(OrgConnection).where(
                    OrgConnection.id.in_({e.org_connection_id for e in events})
                )
            )
        }
    records: dict[int, dict[str, Any]] = {}
    failures: dict[int, BridgeError] = {}
    by_org: dict[int, list[InboundEvent]] = defaultdict(list)
    for ev in events:
        by_org[ev.org_connection_id].append(ev)
    try:
        for org_id, group in by_org.items():
            info = orgs[org_id]
            if info.config is None:
                continue
            _relate(ctx, info, group, records, failures)
        counts = _save_entries(ctx, events, orgs, records, failures, token)
    except BaseException:
        # Give back what this job did not finish, so rq's retry (or the sweeper) takes it
        # at once instead of after the claim timeout.
        release(ctx.store, claimed, token)
        raise
    log.info("inbound batch of %d: %s", len(events), counts)
    return counts


def _relate(
    ctx: InboundContext,
    info: _OrgInfo,
    group: list[InboundEvent],
    records: dict[int, dict[str, Any]],
    failures: dict[int, BridgeError],
) -> None:
    assert info.config is not None
    pairs = [(ev, _trigger(ev)) for ev in group]
    # Own writes go no further: no lookups spent on them.
    wanted = [
        (ev, t) for ev, t in pairs if t is not None and not _own_write(t, info.integration_user_id)
    ]
    if not wanted:
        return
    config = info.config
    lookup = _LazyLookup(lambda: ctx.sforg(info.name, config))
    try:
        related = related_records(info.config, [t for _ev, t in wanted], lookup)
    except TransientError:
        raise
    except BridgeError as exc:
        # The lookups failed for good (permissions, a field the org lacks): every entry of
        # this batch is saved as failed with the reason, ready to retry once fixed.
        for ev, _t in wanted:
            failures[ev.id] = exc
        return
    except Exception as exc:  # noqa: BLE001 - a retry would fail alike: saved with the reason
        log.exception("inbound batch: reading the related records failed")
        failure = BridgeError(
            f"reading the related records failed: {type(exc).__name__}: {exc}",
            code="lookup_error",
        )
        for ev, _t in wanted:
            failures[ev.id] = failure
        return
    for (ev, _t), recs in zip(wanted, related, strict=True):
        records[ev.id] = recs


def _own_write(trigger: Trigger, integration_user_id: str | None) -> bool:
    return is_own_write(trigger.record.get("LastModifiedById"), integration_user_id)


class _LazyLookup:
    """Opens the org connection only when a batch really needs to read something."""

    def __init__(self, connect: Any):
        self._connect = connect
        self._lookup: SalesforceLookup | None = None

    def _get(self) -> SalesforceLookup:
        if self._lookup is None:
            self._lookup = SalesforceLookup(self._connect())
        return self._lookup

    def records(self, sobject: str, ids: Sequence[str], fields: Sequence[str]) -> Any:
        return self._get().records(sobject, ids, fields)

    def children(self, sobject: str, parent_field: str, ids: Sequence[str], fields: Any) -> Any:
        return self._get().children(sobject, parent_field, ids, fields)

    def contact_roles(self, by: str, ids: Sequence[str]) -> Any:
        return self._get().contact_roles(by, ids)


def _save_entries(
    ctx: InboundContext,
    events: list[InboundEvent],
    orgs: dict[int, _OrgInfo],
    records: dict[int, dict[str, Any]],
    failures: dict[int, BridgeError],
    token: str,
) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    all_ids = [e.id for e in events]
    # Several short transactions rather than one per batch: on SQLite a write transaction
    # locks out the subscriber, which must store its next delivery promptly.
    for start in range(0, len(all_ids), defaults.SAVE_CHUNK):
        _save_chunk(
            ctx,
            all_ids[start : start + defaults.SAVE_CHUNK],
            orgs,
            records,
            failures,
            token,
            counts,
        )
    return {k: v for k, v in counts.items() if v}


def _save_chunk(
    ctx: InboundContext,
    ids: list[int],
    orgs: dict[int, _OrgInfo],
    records: dict[int, dict[str, Any]],
    failures: dict[int, BridgeError],
    token: str,
    counts: dict[str, int],
) -> None:
    """Save a chunk in one transaction; first without a savepoint per event (one round trip
    less each), and if any event fails, again with one so that event alone is saved failed."""
    try:
        chunk_counts: dict[str, int] = defaultdict(int)
        _save_chunk_once(ctx, ids, orgs, records, failures, token, chunk_counts, isolate=False)
    except TransientError:
        raise
    except Exception:  # noqa: BLE001 - rolled back; redone below, event by event
        chunk_counts = defaultdict(int)
        _save_chunk_once(ctx, ids, orgs, records, failures, token, chunk_counts, isolate=True)
    for key, n in chunk_counts.items():
        counts[key] += n


def _save_chunk_once(
    ctx: InboundContext,
    ids: list[int],
    orgs: dict[int, _OrgInfo],
    records: dict[int, dict[str, Any]],
    failures: dict[int, BridgeError],
    token: str,
    counts: dict[str, int],
    *,
    isolate: bool,
) -> None:
    with ctx.store.session() as session:
        # Re-check in bulk: still ours (a slow job whose claim was taken over must not act),
        # and no entry yet (entries and event states commit together, so this only catches
        # an entry made outside the claim, e.g. submitted through the API).
        mine = session.scalars(
            select(InboundEvent)
            .where(
                InboundEvent.id.in_(ids),
                InboundEvent.state == "processing",
                InboundEvent.claimed_by == token,
            )
            .order_by(InboundEvent.id)
            .execution_options(populate_existing=True)
        ).all()
        have_entry = set(
            session.scalars(
                select(SalesEntry.inbound_event_id).where(SalesEntry.inbound_event_id.in_(ids))
            )
        )
        counts["not_ours"] += len(ids) - len(mine)
        # Each org's receiver program, looked up once (the receiver would per entry).
        keys = {i.config.receiver.program for i in orgs.values() if i.config is not None}
        programs = {
            key: pid
            for key, pid in session.execute(
                select(Program.key, Program.id).where(Program.key.in_(keys))
            )
        }
        # Without isolation the receiver takes the chunk's entries together, per org.
        for_receiver: dict[int, list[tuple[InboundEvent, SalesEntry]]] = defaultdict(list)
        for ev in mine:
            if ev.id in have_entry:
                _finish(ev, "done", None)
                counts["already"] += 1
                continue
            info = orgs[ev.org_connection_id]
            program_id = programs.get(info.config.receiver.program) if info.config else None
            outcome = _save_one(
                session,
                ev,
                info,
                records.get(ev.id),
                failures.get(ev.id),
                program_id,
                isolate,
                for_receiver[ev.org_connection_id],
            )
            if outcome is not None:
                counts[outcome] += 1
        for org_id, pairs in for_receiver.items():
            if not pairs:
                continue
            info = orgs[org_id]
            assert info.config is not None
            process_entries(
                session,
                [entry for _ev, entry in pairs],
                info.config,
                integration_user_id=info.integration_user_id,
            )
            for ev, entry in pairs:
                _finish(ev, "done", None)
                counts[str(entry.outcome)] += 1


def _entry(
    ev: InboundEvent, records: dict[str, Any] | None, program_id: int | None = None
) -> SalesEntry:
    trigger = _trigger(ev)
    return SalesEntry(
        org_connection_id=ev.org_connection_id,
        program_id=program_id,
        inbound_event_id=ev.id,
        source=ev.source,
        sobject_type=ev.sobject_type or "unknown",
        record_id=ev.record_id,
        change_type=ev.change_type,
        raw=ev.payload or {},
        records=records or ({ev.sobject_type: trigger.record} if trigger else {}),
        outcome="new",
        reasons=[],
    )


def _finish(ev: InboundEvent, state: str, reason: str | None) -> None:
    ev.state = state
    ev.reason = reason
    ev.processed_at = utcnow()


def _save_one(
    session: Session,
    ev: InboundEvent,
    info: _OrgInfo,
    records: dict[str, Any] | None,
    failure: BridgeError | None,
    program_id: int | None = None,
    isolate: bool = True,
    for_receiver: list[tuple[InboundEvent, SalesEntry]] | None = None,
) -> str | None:
    """Save the event's entry; its outcome, or None when it was left in `for_receiver` (not
    isolated: the receiver decides the chunk's entries together)."""
    trigger = _trigger(ev)
    if info.config is None:
        return _save_failed(
            session, ev, "org_not_configured", f"org '{info.name}' is not in the config file"
        )
    if trigger is None:
        error = (ev.payload or {}).get("_error", "the event could not be read")
        return _save_failed(session, ev, "malformed_event", str(error))
    if failure is not None:
        return _save_failed(session, ev, failure.code, failure.message)
    if _own_write(trigger, info.integration_user_id):
        entry = _entry(ev, records, program_id)
        entry.outcome = "skipped"
        entry.reasons = ["own_write"]
        entry.decision = {"outcome": "skipped", "reasons": ["own_write"]}
        entry.processed_at = utcnow()
        session.add(entry)
        _finish(ev, "skipped", "own_write")
        return "own_write"
    if not isolate:
        # Any exception rolls back the whole chunk, which is then redone with isolation.
        entry = _entry(ev, records, program_id)
        session.add(entry)
        if for_receiver is not None:
            for_receiver.append((ev, entry))
            return None
        process_entry(session, entry, info.config, integration_user_id=info.integration_user_id)
        _finish(ev, "done", None)
        return str(entry.outcome)
    try:
        with session.begin_nested():
            entry = _entry(ev, records, program_id)
            session.add(entry)
            process_entry(session, entry, info.config, integration_user_id=info.integration_user_id)
            _finish(ev, "done", None)
            return str(entry.outcome)
    except TransientError:
        raise
    except BridgeError as exc:
        return _save_failed(session, ev, exc.code, exc.message)
    except Exception as exc:  # noqa: BLE001 - saved with its reason, never lost
        log.exception("inbound event %s: the receiver failed", ev.id)
        return _save_failed(session, ev, "receiver_error", f"{type(exc).__name__}: {exc}")


def _save_failed(session: Session, ev: InboundEvent, code: str, message: str) -> str:
    entry = _entry(ev, None)
    entry.outcome = "failed"
    entry.reasons = [code]
    entry.error = message
    session.add(entry)
    _finish(ev, "failed", code)
    return "failed"


# ---- the sweeper ------------------------------------------------------------------------------

_SWEEP_LOCK = "sfbridge:inbound:sweep"


def sweep(store: Store, client: redis.Redis) -> int:
    """Enqueue events that should have been processed by now; returns how many."""
    now = utcnow()
    try:
        # One sweeper at a time across workers (the lock lapses by itself).
        if not client.set(_SWEEP_LOCK, "1", nx=True, px=int(defaults.SWEEP_EVERY_SECONDS * 500)):
            return 0
    except redis.RedisError:
        return 0
    with store.session() as session:
        ids = inbox.pending_events(
            session,
            new_before=now - timedelta(seconds=defaults.SWEEP_AFTER_SECONDS),
            claimed_before=now - timedelta(seconds=defaults.CLAIM_TIMEOUT_SECONDS),
        )
    if not ids:
        return 0
    if enqueue_events(client, ids):
        with store.session() as session:
            inbox.mark_queued(session, ids)
        log.info("sweeper: re-enqueued %d event(s) that were waiting too long", len(ids))
        return len(ids)
    return 0


_NOTIFY_LOCK = "sfbridge:notify:resend"


def resend_notifications(store: Store, client: redis.Redis, config: BridgeConfig) -> int:
    """Send again the review notifications left pending (a process died between the commit and
    the send) or failed (SMTP or webhook down), at most once per NOTIFY_RETRY_EVERY_SECONDS
    across all workers; returns how many were sent."""
    from bridge import notify

    try:
        every_ms = int(defaults.NOTIFY_RETRY_EVERY_SECONDS * 1000)
        if not client.set(_NOTIFY_LOCK, "1", nx=True, px=every_ms):
            return 0
    except redis.RedisError:
        return 0
    with store.session() as session:
        names = {
            row.id: row.name
            for row in session.execute(select(OrgConnection.id, OrgConnection.name))
        }

    def config_for(entry: SalesEntry) -> Any:
        org = config.orgs.get(names.get(entry.org_connection_id or 0, ""))
        return org.receiver.process.notify_on_review if org is not None else None

    return notify.send_pending(store, config_for)


def start_sweeper(
    store: Store, client: redis.Redis, stop: threading.Event, config: BridgeConfig | None = None
) -> threading.Thread:
    """Every few seconds: re-enqueue inbound events and outbound pushes whose job was lost,
    and (with `config`) resend review notifications that did not go out."""
    from bridge.writeback import jobs as outbound

    def loop() -> None:
        while not stop.wait(defaults.SWEEP_EVERY_SECONDS):
            try:
                sweep(store, client)
                outbound.sweep(store, client, every_seconds=defaults.SWEEP_EVERY_SECONDS)
                if config is not None:
                    resend_notifications(store, client, config)
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("sweeper round failed")

    thread = threading.Thread(target=loop, name="inbound-sweeper", daemon=True)
    thread.start()
    return thread


# ---- the worker process ----------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """Forked children (rq's scheduler process, work horses) end when the worker ends, even
    when it is killed with SIGKILL, instead of living on as orphans (Linux: PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the worker died before prctl took effect
        os._exit(0)


def run_worker(
    rt: Any, *, burst: bool = False, queues: Sequence[str] | None = None, fork: bool = False
) -> None:
    """`sfbridge worker`: one rq SimpleWorker on the inbound and outbound queues.

    SimpleWorker (jobs run in the worker process) rather than the forking Worker: a forked
    work horse starts with no org connection and no warm database pool, so every batch would
    pay a fresh OAuth token request and connection set-up; with SimpleWorker the connection
    is opened once per process (see docs/inbound.md for the measurements). Isolation from a
    crashing job matters less here: jobs catch and save their own failures, and a worker
    killed mid-batch is covered by the claim timeout and the sweeper.
    """
    from rq import SimpleWorker, Worker

    from bridge.writeback.jobs import enqueue_pending as outbound_enqueue_pending

    ctx = InboundContext(store=rt.store, config=rt.config, vault=rt.vault)
    set_context(ctx)
    parent = os.getpid()
    os.register_at_fork(after_in_child=lambda: _die_with_parent(parent))
    if fork:
        # A forked work horse must not reuse the parent's database or HTTP connections.
        def in_child() -> None:
            ctx.store.engine.dispose(close=False)
            ctx.orgs.clear()

        os.register_at_fork(after_in_child=in_child)
    client = rt.redis
    names = list(queues or (defaults.INBOUND_QUEUE, defaults.OUTBOUND_QUEUE))
    stop = threading.Event()
    if burst:
        client.delete(_SWEEP_LOCK)
        sweep(rt.store, client)
        outbound_enqueue_pending(rt.store, client)
    else:
        start_sweeper(rt.store, client, stop, rt.config)
    worker_class = Worker if fork else SimpleWorker
    worker = worker_class([Queue(n, connection=client) for n in names], connection=client)
    try:
        worker.work(burst=burst, with_scheduler=not burst, logging_level="INFO")
    finally:
        stop.set()
