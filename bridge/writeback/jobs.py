"""The `outbound` rq job that sends pushes, and the helpers that enqueue it.

Enqueue only after the push is committed (the job re-reads it; a job that finds nothing
pending does nothing). A job whose pushes hit a transient error raises, and rq runs it again
with backoff; `enqueue_pending` re-enqueues whatever is still pending (after a crash, or when
Redis was down at enqueue time), so nothing saved is ever left behind.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta
from functools import cache
from typing import Any

import redis
from rq import Queue, Retry, get_current_job
from rq.job import Job
from sqlalchemy import select

from bridge.errors import BridgeError, TransientError, UsageError
from bridge.store import Store
from bridge.store.models import OrgConnection, Push, utcnow
from bridge.writeback.client import COLLECTION_LIMIT, OrgWriter, chunks, error_class_of
from bridge.writeback.pushes import mark_error
from bridge.writeback.sender import SendReport, send

log = logging.getLogger(__name__)

OUTBOUND_QUEUE = "outbound"
"""The rq queue of writes to Salesforce."""

RETRY_INTERVALS = [10, 30, 120, 600]
"""Seconds between runs of a job whose pushes hit a transient error (needs the rq scheduler).
The first run plus these retries make MAX_ATTEMPTS sends, after which the push is failed."""

JOB_TIMEOUT = 600
"""Seconds a send job may take (lookups plus one request per 200 records)."""

SWEEP_AFTER = timedelta(seconds=JOB_TIMEOUT + sum(RETRY_INTERVALS))
"""A push pending and untouched this long lost its job: `enqueue_pending` picks it up."""


def outbound_queue(connection: redis.Redis) -> Queue:
    return Queue(OUTBOUND_QUEUE, connection=connection)


def enqueue_push(connection: redis.Redis, push_ids: int | Iterable[int]) -> list[Job]:
    """Enqueue `send_pushes` for committed pushes, COLLECTION_LIMIT ids per job."""
    ids = [push_ids] if isinstance(push_ids, int) else sorted(set(push_ids))
    queue = outbound_queue(connection)
    return [
        queue.enqueue(
            send_pushes,
            part,
            retry=Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS),
            job_timeout=JOB_TIMEOUT,
            description=f"send pushes {part[0]}..{part[-1]}",
        )
        for part in chunks(ids, COLLECTION_LIMIT)
    ]


def enqueue_pending(
    store: Store, connection: redis.Redis, *, older_than: timedelta | None = None
) -> int:
    """Enqueue pending pushes (untouched for `older_than`, if given); returns how many.

    For a sweeper: with `older_than` = SWEEP_AFTER it leaves alone pushes whose job is simply
    queued or waiting for its retry, and picks up those whose job was lost.
    """
    query = select(Push.id).where(Push.state == "pending")
    if older_than is not None:
        query = query.where(Push.updated_at < utcnow() - older_than)
    with store.session() as session:
        ids = list(session.scalars(query.order_by(Push.id)))
    if ids:
        enqueue_push(connection, ids)
    return len(ids)


_SWEEP_LOCK = "sfbridge:outbound:sweep"


def sweep(store: Store, connection: redis.Redis, *, every_seconds: float = 60.0) -> int:
    """For the worker's sweeper thread: re-enqueue pushes whose job was lost, one sweeper at
    a time across workers (a Redis lock that lapses by itself). Returns how many."""
    try:
        if not connection.set(_SWEEP_LOCK, "1", nx=True, px=int(every_seconds * 500)):
            return 0
    except redis.RedisError:
        return 0
    count = enqueue_pending(store, connection, older_than=SWEEP_AFTER)
    if count:
        log.info("outbound sweep: re-enqueued %d pending push(es) whose job was lost", count)
    return count


@cache
def _runtime() -> Any:
    from bridge.runtime import Runtime

    return Runtime.from_env()


_orgs: dict[tuple[str, Any], Any] = {}
_orgs_lock = threading.Lock()


def _open_writer(runtime: Any, connection: OrgConnection) -> OrgWriter:
    """A writer on the org, opened once per worker process and connection version: jobs run in
    the worker process, and the org's `call` re-authenticates when its token expires."""
    from bridge.salesforce.connection import open_org

    key = (connection.name, connection.updated_at)
    with _orgs_lock:
        org = _orgs.get(key)
        if org is None:
            org_config = runtime.config.orgs[connection.name]
            org = open_org(runtime.store, runtime.vault, connection.name, org_config)
            for stale in [k for k in _orgs if k[0] == connection.name]:
                del _orgs[stale]
            _orgs[key] = org
    return OrgWriter.for_org(org)


def send_pushes(push_ids: Sequence[int]) -> dict[str, list[int]]:
    """rq job: send the still-pending pushes among `push_ids`, grouped by org.

    Returns what happened per state; raises TransientError (so rq retries) when some pushes are
    still pending after a transient error.
    """
    runtime = _runtime()
    store: Store = runtime.store
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
        if connection is None or connection.name not in runtime.config.orgs:
            _save_error(store, ids, _unroutable(org_id), total)
            continue
        try:
            writer = _open_writer(runtime, connection)
        except BridgeError as exc:  # cannot log in: every push of the org waits or fails
            _save_error(store, ids, exc, total)
            continue
        report = send(store, writer, runtime.config.orgs[connection.name], ids)
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
    delay = RETRY_INTERVALS[min(max(attempts, 1), len(RETRY_INTERVALS)) - 1]
    if job is None or job.connection is None:
        log.warning("pushes %s stay pending for the sweep: no job queue to retry on", push_ids)
        return
    Queue(OUTBOUND_QUEUE, connection=job.connection).enqueue_in(
        timedelta(seconds=delay),
        send_pushes,
        push_ids,
        job_timeout=JOB_TIMEOUT,
        description=f"retry pushes {push_ids[0]}..{push_ids[-1]}",
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


def _save_error(store: Store, ids: list[int], problem: BridgeError, total: SendReport) -> None:
    """An error before any push could be sent (routing, login), saved on each of them."""
    error_class = error_class_of(problem)
    with store.session() as session:
        for push in session.scalars(select(Push).where(Push.id.in_(ids))):
            if push.state != "pending":
                continue
            push.attempts = (push.attempts or 0) + 1
            mark_error(
                push,
                code=problem.code,
                message=problem.message,
                fields=list(problem.fields),
                error_class=error_class,
            )
            (total.retry if push.state == "pending" else total.failed).append(push.id)
