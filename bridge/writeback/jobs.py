"""The `outbound` rq jobs that send pushes, and the helpers that enqueue them.

The normal path is the org's **drain**: whoever saves a push (the API, the UI, the receiver, a
sweep) calls `request_drain(redis, org_id)` after the commit. The first request of a window sets
a Redis key and enqueues one `drain_org` job; requests while that key exists add nothing. The
job waits until the window (`OUTBOUND_WINDOW_SECONDS`) since that first request is over (in a
worker that also takes inbound jobs, one arriving meanwhile goes first: the drain is queued
again behind it; `sfbridge worker --outbound-process` runs the outbound queue apart), drops
the key, claims every free pending push of the org in one UPDATE (`pushes.claim`: several
workers never send the same push) and sends them together: lookups batched, sObject Collections
of 200, Bulk API 2.0 above `writeback.bulk_threshold`. A push saved after the key was dropped
asks for the next drain. A paused org's (`outbound_paused`) pushes are left pending, unsent.

`send_pushes(ids)` sends named pushes (one job per 200): the one-push-per-job path, kept for
tools and as the benchmark's baseline; it claims its pushes the same way.

Enqueue only after the push is committed (the job re-reads it; a job that finds nothing
pending does nothing). A job whose pushes hit a transient error raises, and rq runs it again
with backoff; `enqueue_pending` re-enqueues whatever is still pending (after a crash, or when
Redis was down at enqueue time), so nothing saved is ever left behind. Timeouts and retries
are the outbound queue's (`bridge.jobs.enqueue`, `bridge.defaults`); the job runs in the
worker's context and shares its org logins with the inbound jobs.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta

import redis
from rq import get_current_job
from rq.job import Job
from sqlalchemy import or_, select

from bridge import context, defaults
from bridge.errors import Action, Failure, TransientError, UsageError, failure_of
from bridge.jobs import (
    DRAIN_KEY,
    enqueue,
    enqueue_drain,
    enqueue_later,
    inbound_arrives,
    request_drain,
)
from bridge.locks import once_per
from bridge.store import Store
from bridge.store.models import OrgConnection, Push, utcnow
from bridge.writeback.client import COLLECTION_LIMIT, OrgWriter, chunks
from bridge.writeback.known import KnownRecords
from bridge.writeback.pushes import claim, hold, mark_error, record_attempts
from bridge.writeback.results import SendReport
from bridge.writeback.sender import send

log = logging.getLogger(__name__)

SWEEP_LOCK = "sfbridge:outbound:sweep"


def request_drain_for(store: Store, connection: redis.Redis, push_ids: Iterable[int]) -> int:
    """`request_drain` for the orgs of committed pushes (callers that hold push ids)."""
    with store.reading() as session:
        orgs = set(
            session.scalars(
                select(Push.org_connection_id).where(
                    Push.id.in_(list(push_ids)), Push.org_connection_id.is_not(None)
                )
            )
        )
    return request_drain(connection, [o for o in orgs if o is not None])


def enqueue_push(connection: redis.Redis, push_ids: int | Iterable[int]) -> list[Job]:
    """Enqueue `send_pushes` for committed pushes, COLLECTION_LIMIT ids per job."""
    ids = [push_ids] if isinstance(push_ids, int) else sorted(set(push_ids))
    return enqueue(
        connection,
        defaults.OUTBOUND_QUEUE,
        send_pushes,
        chunks(ids, COLLECTION_LIMIT),
        lambda part: f"send pushes {part[0]}..{part[-1]}",
    )


def enqueue_pending(
    store: Store, connection: redis.Redis, *, older_than: timedelta | None = None
) -> int:
    """Enqueue pending pushes (untouched for `older_than`, if given); returns how many.

    For a sweeper: with `older_than` = OUTBOUND_SWEEP_AFTER_SECONDS it leaves alone pushes
    whose job is simply queued or waiting for its retry, and picks up those whose job was lost.
    Their orgs are drained (pushes still claimed are not counted: their drain holds them).
    """
    now = utcnow()
    query = select(Push.id, Push.org_connection_id).where(
        Push.state == "pending", or_(Push.claimed_until.is_(None), Push.claimed_until < now)
    )
    if older_than is not None:
        query = query.where(Push.updated_at < now - older_than)
    with store.reading() as session:
        rows = session.execute(query.order_by(Push.id)).all()
    orphans = [push_id for push_id, org_id in rows if org_id is None]
    if orphans:  # no org to drain: sent (and failed with the reason) by id
        enqueue_push(connection, orphans)
    request_drain(connection, {org_id for _, org_id in rows if org_id is not None})
    return len(rows)


def sweep(store: Store, connection: redis.Redis) -> int:
    """For the worker's sweeper thread: re-enqueue pushes whose job was lost, one sweeper at
    a time across workers (within half a sweep interval). Returns how many."""
    if not once_per(connection, SWEEP_LOCK, defaults.SWEEP_EVERY_SECONDS / 2):
        return 0
    lost = timedelta(seconds=defaults.OUTBOUND_SWEEP_AFTER_SECONDS)
    count = enqueue_pending(store, connection, older_than=lost)
    if count:
        log.info("outbound sweep: re-enqueued %d pending push(es) whose job was lost", count)
    return count


def drain_org(org_ids: Sequence[int]) -> dict[str, list[int]]:
    """rq job: send every free pending push of the org (`[org_id]`), after the window."""
    ctx = context.current()
    store = ctx.store
    (org_id,) = org_ids
    job = get_current_job()
    client = job.connection if job is not None else ctx.redis
    if client is not None and not _window_over(client, org_id, ctx.takes_inbound):
        return {k: [] for k in STATES}  # queued again, behind the inbound work
    token, now = uuid.uuid4().hex, utcnow()
    with store.session() as session:
        ids = claim(
            session,
            token,
            until=now + timedelta(seconds=defaults.OUTBOUND_CLAIM_SECONDS),
            now=now,
            org_connection_id=org_id,
            limit=defaults.OUTBOUND_DRAIN_LIMIT,
        )
    if not ids:
        return {k: [] for k in STATES}
    total = _send_claimed(ctx, {org_id: ids})
    if total.retry:
        _retry_later(store, client, org_id, total.retry)
    if len(ids) >= defaults.OUTBOUND_DRAIN_LIMIT and client is not None:
        request_drain(client, org_id)  # more are waiting: the next drain starts now
    return _summary(total)


def _window_over(client: redis.Redis, org_id: int, beside_inbound: bool) -> bool:
    """Wait out the rest of the window since the first request, then drop the key (requests
    from now on ask for the next drain) and return True.

    In a worker of the outbound queue alone (`sfbridge worker --outbound-process` runs one
    beside its inbound worker) the drain just waits. In a worker that takes inbound jobs too
    (`beside_inbound`) inbound work goes first: the drain waits for the window without
    holding them up. If one waits in the queue or arrives meanwhile, the drain is queued
    again behind it and returns False; the key stays, so the requests meanwhile still join
    this drain, and once the window is over the drain goes on whatever waits."""
    key = DRAIN_KEY.format(org=org_id)
    raw = client.get(key)
    rest = 0.0
    if raw is not None:
        try:
            first = float(raw)
        except ValueError:
            first = 0.0
        rest = min(max(0.0, first + defaults.OUTBOUND_WINDOW_SECONDS - time.time()), 5.0)
    if not beside_inbound:
        time.sleep(rest)
    elif inbound_arrives(client, rest):
        enqueue_drain(client, org_id)
        return False
    client.delete(key)
    return True


def _retry_later(
    store: Store, client: redis.Redis | None, org_id: int, push_ids: list[int]
) -> None:
    """Pushes that hit a transient error stay claimed until their backoff is over; a drain
    scheduled for then sends them (with whatever else is pending)."""
    with store.session() as session:
        attempts = max(
            session.scalars(select(Push.attempts).where(Push.id.in_(push_ids))), default=1
        )
        intervals = defaults.OUTBOUND_RETRY_INTERVALS
        delay = intervals[min(max(attempts, 1), len(intervals)) - 1]
        hold(session, push_ids, utcnow() + timedelta(seconds=delay))
    if client is None:
        log.warning("pushes %s stay pending for the sweep: no job queue to retry on", push_ids)
        return
    enqueue_later(
        client,
        defaults.OUTBOUND_QUEUE,
        drain_org,
        [org_id],
        delay + 1,
        f"drain pushes of org {org_id} (retry)",
    )


STATES = ("sent", "failed", "skipped", "retry")


def _summary(total: SendReport) -> dict[str, list[int]]:
    summary = {k: getattr(total, k) for k in STATES}
    log.info("pushes sent=%d failed=%d skipped=%d retry=%d", *(len(v) for v in summary.values()))
    return summary


def send_pushes(push_ids: Sequence[int]) -> dict[str, list[int]]:
    """rq job: send the still-pending pushes among `push_ids`, grouped by org.

    Returns what happened per state; raises TransientError (so rq retries) when some pushes are
    still pending after a transient error.
    """
    ctx = context.current()
    store = ctx.store
    token, now = uuid.uuid4().hex, utcnow()
    with store.session() as session:
        claimed = claim(
            session,
            token,
            until=now + timedelta(seconds=defaults.OUTBOUND_CLAIM_SECONDS),
            now=now,
            push_ids=list(push_ids),
        )
        rows = session.execute(
            select(Push.id, Push.org_connection_id).where(Push.id.in_(claimed))
        ).all()
    by_org: dict[int | None, list[int]] = defaultdict(list)
    for push_id, org_id in rows:
        by_org[org_id].append(push_id)
    total = _send_claimed(ctx, by_org)
    summary = _summary(total)
    if total.retry:
        with store.session() as session:
            hold(session, total.retry, None)  # free for the retry (or a drain)
        job = get_current_job()
        if job is not None and job.retries_left:
            raise TransientError(
                f"{len(total.retry)} pushes hit a transient Salesforce error and will be retried",
                code="push_retry",
            )
        # Enqueued without rq retries (or out of them while pushes still have attempts):
        # schedule the follow-up ourselves, with the backoff of the attempts made so far.
        _schedule_retry(store, job, total.retry)
    return summary


def _send_claimed(ctx: context.WorkerContext, by_org: dict[int | None, list[int]]) -> SendReport:
    """Send claimed pushes, org by org, each org's through its one login (the connections
    read outside a write transaction: on SQLite that would be a turn of the writers' lock)."""
    store = ctx.store
    with store.reading() as session:
        connections = {
            c.id: c
            for c in session.scalars(
                select(OrgConnection).where(
                    OrgConnection.id.in_([k for k in by_org if k is not None])
                )
            )
        }
    total = SendReport()
    for org_id, ids in by_org.items():
        connection = connections.get(org_id) if org_id is not None else None
        if connection is None or connection.name not in ctx.config.orgs:
            _save_error(store, ids, failure_of(_unroutable(org_id)), total)
            continue
        if connection.outbound_paused:  # switched off: the pushes wait, unclaimed, unsent
            log.info("org %s is paused for outbound: %d push(es) stay pending", connection.name,
                     len(ids))  # fmt: skip
            with store.session() as session:
                hold(session, ids, None)
            continue
        try:
            writer = OrgWriter.for_org(ctx.org(connection.name, connection.updated_at))
        except Exception as exc:  # cannot log in: every push of the org waits or fails
            failure = failure_of(exc)
            if failure.action is Action.RAISE:
                raise
            _save_error(store, ids, failure, total)
            continue
        known = KnownRecords(ctx.redis, connection.id)
        report = send(store, writer, ctx.config.orgs[connection.name], ids, known=known)
        for name in STATES:
            getattr(total, name).extend(getattr(report, name))
    return total


def _schedule_retry(store: Store, job: Job | None, push_ids: list[int]) -> None:
    with store.reading() as session:
        attempts = max(
            session.scalars(select(Push.attempts).where(Push.id.in_(push_ids))), default=1
        )
    intervals = defaults.OUTBOUND_RETRY_INTERVALS
    delay = intervals[min(max(attempts, 1), len(intervals)) - 1]
    if job is None or job.connection is None:
        log.warning("pushes %s stay pending for the sweep: no job queue to retry on", push_ids)
        return
    enqueue_later(
        job.connection,
        defaults.OUTBOUND_QUEUE,
        send_pushes,
        push_ids,
        delay,
        f"retry pushes {push_ids[0]}..{push_ids[-1]}",
    )


def send_push(push_id: int) -> dict[str, list[int]]:
    """rq job for one push (what the JSON API enqueues); see `send_pushes`."""
    return send_pushes([push_id])


def _unroutable(org_id: int | None) -> UsageError:
    if org_id is None:
        return UsageError(
            "the push names no org connection: connect the org of the referral's program "
            "(`sfbridge org connect`) and repush",
            code="org_not_configured",
        )
    return UsageError(
        f"org connection {org_id} is not in the config file: add it under `orgs:`, then repush",
        code="org_not_configured",
    )


def _save_error(store: Store, ids: list[int], failure: Failure, total: SendReport) -> None:
    """An error before any push could be sent (routing, login), saved on each of them."""
    with store.session() as session:
        attempts = []
        for push in session.scalars(select(Push).where(Push.id.in_(ids))):
            if push.state != "pending":
                continue
            push.attempts = (push.attempts or 0) + 1
            mark_error(
                push,
                code=failure.code,
                message=failure.message,
                fields=list(failure.fields),
                error_class=failure.error_class,
            )
            attempts.append((push, "none"))
            (total.retry if push.state == "pending" else total.failed).append(push.id)
        record_attempts(session, attempts)
