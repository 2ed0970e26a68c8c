"""The `outbound` rq job that sends pushes, and the helpers that enqueue it.

Enqueue only after the push is committed (the job re-reads it; a job that finds nothing
pending does nothing). A job whose pushes hit a transient error raises, and rq runs it again
with backoff; `enqueue_pending` re-enqueues whatever is still pending (after a crash, or when
Redis was down at enqueue time), so nothing saved is ever left behind. Timeouts and retries
are the outbound queue's (`bridge.jobs.enqueue`, `bridge.defaults`); the job runs in the
worker's context and shares its org logins with the inbound jobs.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta

import redis
from rq import get_current_job
from rq.job import Job
from sqlalchemy import select

from bridge import context, defaults
from bridge.errors import Action, Failure, TransientError, UsageError, failure_of
from bridge.jobs import enqueue, enqueue_later
from bridge.locks import once_per
from bridge.store import Store
from bridge.store.models import OrgConnection, Push, utcnow
from bridge.writeback.client import COLLECTION_LIMIT, OrgWriter, chunks
from bridge.writeback.pushes import mark_error
from bridge.writeback.sender import SendReport, send

log = logging.getLogger(__name__)

SWEEP_LOCK = "sfbridge:outbound:sweep"


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
    """
    query = select(Push.id).where(Push.state == "pending")
    if older_than is not None:
        query = query.where(Push.updated_at < utcnow() - older_than)
    with store.session() as session:
        ids = list(session.scalars(query.order_by(Push.id)))
    if ids:
        enqueue_push(connection, ids)
    return len(ids)


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


def send_pushes(push_ids: Sequence[int]) -> dict[str, list[int]]:
    """rq job: send the still-pending pushes among `push_ids`, grouped by org.

    Returns what happened per state; raises TransientError (so rq retries) when some pushes are
    still pending after a transient error.
    """
    ctx = context.current()
    store = ctx.store
    with store.session() as session:
        rows = session.execute(
            select(Push.id, Push.org_connection_id).where(
                Push.id.in_(list(push_ids)), Push.state == "pending"
            )
        ).all()
        by_org: dict[int | None, list[int]] = defaultdict(list)
        for push_id, org_id in rows:
            by_org[org_id].append(push_id)
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
        try:
            writer = OrgWriter.for_org(ctx.org(connection.name, connection.updated_at))
        except Exception as exc:  # cannot log in: every push of the org waits or fails
            failure = failure_of(exc)
            if failure.action is Action.RAISE:
                raise
            _save_error(store, ids, failure, total)
            continue
        report = send(store, writer, ctx.config.orgs[connection.name], ids)
        for name in ("sent", "failed", "skipped", "retry"):
            getattr(total, name).extend(getattr(report, name))
    summary = {k: getattr(total, k) for k in ("sent", "failed", "skipped", "retry")}
    log.info("pushes sent=%d failed=%d skipped=%d retry=%d", *(len(v) for v in summary.values()))
    if total.retry:
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


def _schedule_retry(store: Store, job: Job | None, push_ids: list[int]) -> None:
    with store.session() as session:
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
            (total.retry if push.state == "pending" else total.failed).append(push.id)
