"""rq jobs: how the bridge enqueues work, and the inbound batch job.

Small, importable, idempotent functions; state is re-checked before anything is done.

- `enqueue` is the one place that sets a job's retry and timeout policy (rq `Retry` at
  enqueue time, per queue, from `bridge.defaults`); the outbound jobs
  (`bridge.writeback.jobs`) enqueue through it too.
- `enqueue_events` (called after the events' transaction committed) puts one job per batch
  of up to 200 event ids on the `inbound` queue.
- `process_inbound_batch` claims the batch's events (new → processing, with a token; the
  claim gives back their rows, and their orgs are read in its transaction: `intake.load`),
  hands them to the intake (`bridge.intake.take_in`: related records, entries, the
  receiver), and gives back what it did not finish if it fails.
  While the batch runs, a heartbeat renews the claim (`claim_heartbeat`).
- `sweep` re-enqueues events still `new` after a while (a lost job, a Redis restart) and
  events whose claim was not renewed for the claim timeout (a worker killed mid-batch).
- `worker_class`: the rq worker `sfbridge worker` runs, its heartbeat in one round trip.

Jobs run inside the worker's context (`bridge.context.current()`): one store, one config, one
login per org for inbound and outbound jobs alike.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, cast

import redis
from rq import Queue, Retry, SimpleWorker, Worker, get_current_job
from rq.job import Job
from rq.worker import BaseWorker

from bridge import context, defaults, intake
from bridge.locks import once_per
from bridge.store import Store
from bridge.store.models import utcnow
from bridge.streaming import claims, inbox

log = logging.getLogger("sfbridge.jobs")

SWEEP_LOCK = "sfbridge:inbound:sweep"

# ---- the one enqueue policy -------------------------------------------------------------------


def policy(queue: str) -> tuple[int, list[int]]:
    """(timeout, retry intervals) in seconds of the jobs of `queue`."""
    if queue == defaults.INBOUND_QUEUE:
        return defaults.JOB_TIMEOUT_SECONDS, list(defaults.JOB_RETRY_INTERVALS)
    if queue == defaults.OUTBOUND_QUEUE:
        return defaults.OUTBOUND_JOB_TIMEOUT_SECONDS, list(defaults.OUTBOUND_RETRY_INTERVALS)
    raise ValueError(f"no job policy for queue {queue!r}")


def enqueue(
    client: redis.Redis,
    queue: str,
    fn: Callable[..., Any] | str,
    batches: Sequence[Sequence[int]],
    describe: Callable[[Sequence[int]], str],
) -> list[Job]:
    """One job of `fn(batch)` per batch on `queue`, with the queue's timeout and retries.

    Raises redis errors: the caller decides (inbound events stay `new`, pushes `pending`, and
    the sweeper finds them).
    """
    timeout, intervals = policy(queue)
    prepared = [
        Queue.prepare_data(
            cast(Any, fn),  # rq takes a function or its dotted path
            args=(list(batch),),
            timeout=timeout,
            result_ttl=defaults.JOB_RESULT_TTL_SECONDS,
            failure_ttl=defaults.JOB_FAILURE_TTL_SECONDS,
            retry=Retry(max=len(intervals), interval=intervals),
            description=describe(batch),
        )
        for batch in batches
    ]
    return Queue(queue, connection=client).enqueue_many(prepared)


def enqueue_later(
    client: redis.Redis,
    queue: str,
    fn: Callable[..., Any],
    batch: Sequence[int],
    delay_seconds: float,
    description: str,
) -> Job:
    """A follow-up run of `fn(batch)` after `delay_seconds` (needs the rq scheduler); it is
    itself the retry, so it carries no retries of its own."""
    timeout, _intervals = policy(queue)
    return Queue(queue, connection=client).enqueue_in(
        timedelta(seconds=delay_seconds),
        fn,
        list(batch),
        job_timeout=timeout,
        description=description,
    )


# ---- inbound ------------------------------------------------------------------------------------


def batches(ids: Sequence[int], size: int | None = None) -> list[list[int]]:
    size = size or defaults.BATCH_SIZE
    ordered = sorted(ids)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def enqueue_events(client: redis.Redis, ids: Sequence[int]) -> int:
    """One job per batch of stored events; returns how many jobs were enqueued.

    Called after the events committed. If Redis is unreachable nothing is lost: the events
    stay `new` and the sweeper enqueues them later.
    """
    if not ids:
        return 0
    try:
        jobs = enqueue(
            client,
            defaults.INBOUND_QUEUE,
            process_inbound_batch,
            batches(ids),
            lambda b: f"inbound events {b[0]}..{b[-1]} ({len(b)})",
        )
    except redis.RedisError as exc:
        log.warning(
            "could not enqueue %d event(s) (%s); the sweeper will pick them up", len(ids), exc
        )
        return 0
    return len(jobs)


def inbound_waiting(client: redis.Redis) -> int:
    """Inbound jobs in the queue that no worker has taken yet."""
    return int(Queue(defaults.INBOUND_QUEUE, connection=client).count)


def process_inbound_batch(event_ids: list[int]) -> dict[str, int]:
    """The rq job: turn a batch of stored events into entries. Safe to run twice."""
    ctx = context.current()
    job = get_current_job()
    token = f"{job.id if job else 'direct'}:{uuid.uuid4().hex[:8]}"
    with ctx.store.session() as session:
        events = claims.claim(session, event_ids, token)  # the events' rows: no second read
        batch = intake.load(session, ctx.config, events, token)
    if not events:
        return {"claimed": 0}
    claimed = [ev.id for ev in events]
    try:
        with claim_heartbeat(ctx.store, claimed, token):
            intake.take_in(ctx, batch)
    except BaseException:
        # Give back what this job did not finish, so rq's retry (or the sweeper) takes it
        # at once instead of after the claim timeout.
        with ctx.store.session() as session:
            claims.release(session, claimed, token)
        raise
    counts = batch.summary()
    log.info("inbound batch of %d: %s", len(claimed), counts)
    _send_pushes(ctx, batch.pushes)
    return counts


DRAIN_ORG = "bridge.writeback.jobs.drain_org"
"""The outbound drain job, named by its path: the writeback's jobs build on this module."""

DRAIN_KEY = "sfbridge:outbound:drain:{org}"
"""Set while a drain of the org is queued and has not claimed yet (its value: the time of the
first request, from which the coalescing window runs)."""


def request_drain(client: redis.Redis, org_ids: int | Iterable[int]) -> int:
    """Ask for a drain of each org's pending pushes, at most one queued per org and window
    (docs/writeback.md "The drain"); returns how many drain jobs were enqueued. Call after the
    pushes committed; raises redis errors (the pushes stay pending for the sweep)."""
    ids = [org_ids] if isinstance(org_ids, int) else sorted(set(org_ids))
    enqueued = 0
    for org_id in ids:
        key = DRAIN_KEY.format(org=org_id)
        ttl = defaults.OUTBOUND_DRAIN_KEY_TTL_SECONDS
        if not client.set(key, repr(time.time()), nx=True, ex=ttl):
            continue  # a drain of this org is queued and has not claimed yet: it takes ours
        try:
            enqueue_drain(client, org_id)
        except redis.RedisError:
            client.delete(key)
            raise
        enqueued += 1
    return enqueued


def enqueue_drain(client: redis.Redis, org_id: int) -> None:
    """The drain job of one org on the outbound queue (`request_drain` decides when)."""
    enqueue(client, defaults.OUTBOUND_QUEUE, DRAIN_ORG, [[org_id]],
            lambda part: f"drain pushes of org {part[0]}")  # fmt: skip


def inbound_arrives(client: redis.Redis, seconds: float) -> bool:
    """Whether an inbound job waits in the queue or arrives within `seconds`, left there for
    a worker to take: BLMOVE of the queue's head back onto its head blocks until the queue has
    a job and leaves it as it was."""
    if seconds <= 0:
        return False
    key = Queue(defaults.INBOUND_QUEUE, connection=client).key
    timeout = cast(int, seconds)  # typed int, but Redis takes fractions of a second
    return client.blmove(key, key, timeout, "LEFT", "LEFT") is not None


def _send_pushes(ctx: context.WorkerContext, orgs: Iterable[int]) -> None:
    """Ask for the drain of the orgs whose pushes the entries' effects queued (field sync,
    link-back). Redis unreachable: they stay pending and the outbound sweeper sends them."""
    orgs = sorted(orgs)
    if not orgs or ctx.redis is None:
        return
    try:
        request_drain(ctx.redis, orgs)
    except redis.RedisError as exc:
        log.warning("could not request drains of orgs %s (%s); the sweeper sends their pushes",
                    orgs, exc)  # fmt: skip


@contextmanager
def claim_heartbeat(store: Store, ids: Sequence[int], token: str) -> Iterator[None]:
    """Renew the batch's claim while it runs (every third of the claim timeout), so the claim
    timeout can be short: a killed worker's events are taken over soon after, a slow batch's
    never. A renewal that fails is tried again at the next beat; a claim that lapses anyway is
    safe (the intake acts only on events still claimed with its token)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(defaults.CLAIM_TIMEOUT_SECONDS * defaults.CLAIM_RENEW_FRACTION):
            try:
                with store.session() as session:
                    if not claims.renew_claim(session, ids, token):
                        return  # all finished, or taken over
            except Exception as exc:  # noqa: BLE001 - the next beat tries again
                log.warning("could not renew the claim of %d event(s): %s", len(ids), exc)

    thread = threading.Thread(target=beat, name="claim-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=defaults.CLAIM_TIMEOUT_SECONDS)


def sweep(store: Store, client: redis.Redis) -> int:
    """Enqueue events that should have been processed by now; returns how many.

    One sweeper at a time across workers (within half a sweep interval).
    """
    if not once_per(client, SWEEP_LOCK, defaults.SWEEP_EVERY_SECONDS / 2):
        return 0
    now = utcnow()
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


# ---- the worker -----------------------------------------------------------------------------


class _HeartbeatInOneTrip(BaseWorker):
    """rq's worker heartbeat (HSET last_heartbeat, EXPIRE the worker, EXPIRE its executions)
    sent as one pipeline where rq sends it command by command: rq beats three times around
    every job outside a pipeline of its own (the idle loop twice, the dequeue once), 9 round
    trips a job where 3 do. The same commands in the same order (no MULTI: they were never
    one transaction); a Redis error is raised as before."""

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:
            super().heartbeat(timeout, pipeline=pipeline)
            return
        with self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(timeout, pipeline=pipe)
            pipe.execute()


class _SimpleWorker(_HeartbeatInOneTrip, SimpleWorker):
    pass


class _ForkingWorker(_HeartbeatInOneTrip, Worker):
    pass


def worker_class(fork: bool) -> type[BaseWorker]:
    """The rq worker of `sfbridge worker`: forking (a work horse per job) or simple (jobs in
    the worker process), with its heartbeat in one round trip."""
    return _ForkingWorker if fork else _SimpleWorker
