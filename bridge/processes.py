"""The long-running processes the CLI starts: `sfbridge worker`, `stream` and `poll`.

Each wires the pieces of one pipeline stage from the process runtime (store, config, vault,
Redis) and runs until stopped; every one counts its Salesforce calls for /metrics.

- worker: sets the job context (`bridge.context`) and runs an rq worker on the inbound and
  outbound queues, with a sweeper thread (lost jobs, unsent review notifications), or (with
  `--outbound-process`) the outbound queue's in a process of its own;
- stream: the subscribers (`bridge.streaming.subscriber`, or `pubsub` for the Pub/Sub API) of
  one org or of every org the process holds a lease for (`bridge.streaming.fleet`), whose
  stored events are enqueued for the worker and whose replay gaps are backfilled by polling,
  each with the safety-net poll beside it;
- poll: SystemModstamp polling (`bridge.streaming.poller`): a backfill, one round, or rounds.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import FrameType
from typing import Any

import redis
from rq import Queue
from rq.exceptions import StopRequested
from rq.worker import BaseWorker
from sqlalchemy import select

from bridge import context, defaults, jobs, notify, orgs
from bridge.config import BridgeConfig, OrgConfig, load_config
from bridge.context import WorkerContext
from bridge.errors import UsageError
from bridge.locks import once_per
from bridge.metrics import count_calls_with
from bridge.runtime import Runtime
from bridge.salesforce import budget
from bridge.salesforce.errors import SalesforceError
from bridge.store import Store
from bridge.store.models import OrgConnection, SalesEntry
from bridge.streaming import poller, valuecheck
from bridge.streaming.fleet import Fleet, Handoff
from bridge.streaming.lease import Lease
from bridge.streaming.pubsub import PubSubSubscriber
from bridge.streaming.subscriber import Subscriber
from bridge.vocabulary import STREAMED_OBJECTS
from bridge.writeback import gate
from bridge.writeback import jobs as outbound

log = logging.getLogger("sfbridge.processes")

NOTIFY_LOCK = "sfbridge:notify:resend"
ANALYZE_LOCK = "sfbridge:store:analyze"

Echo = Callable[[str], None]


def pick_org(config_orgs: dict[str, OrgConfig], name: str | None) -> tuple[str, OrgConfig]:
    """The org a stream or poll process serves: the one named, or the only one configured."""
    if name:
        if name not in config_orgs:
            raise UsageError(f"no org '{name}' in the config; orgs: {', '.join(config_orgs)}")
        return name, config_orgs[name]
    if len(config_orgs) != 1:
        raise UsageError(f"several orgs are configured: pass --org ({', '.join(config_orgs)})")
    only = next(iter(config_orgs))
    return only, config_orgs[only]


# ---- worker -----------------------------------------------------------------------------------


def resend_notifications(store: Store, client: redis.Redis, config: BridgeConfig) -> int:
    """Send again the review notifications left pending (a process died between the commit and
    the send) or failed (SMTP or webhook down), at most once per NOTIFY_RETRY_EVERY_SECONDS
    across all workers; returns how many were sent."""
    if not once_per(client, NOTIFY_LOCK, defaults.NOTIFY_RETRY_EVERY_SECONDS):
        return 0
    with store.session() as session:
        names = dict(session.execute(select(OrgConnection.id, OrgConnection.name)).all())

    def config_for(entry: SalesEntry) -> Any:
        org = config.orgs.get(names.get(entry.org_connection_id or 0, ""))
        return org.receiver.process.notify_on_review if org is not None else None

    return notify.send_pending(store, config_for)


def alert_on_crossing(
    store: Store, client: redis.Redis, name: str, org: OrgConfig, usage: budget.ApiUsage
) -> bool:
    """Tell the admins, once per crossing (across processes), that org `name` went over its
    API budget; returns whether this call sent it."""
    try:
        if not budget.crossed(client, name, usage, org.api_budget.share):
            return False
    except redis.RedisError as exc:
        log.warning("API budget of org '%s' not checked: %s", name, exc)
        return False
    text = (
        f"Org '{name}' has used {usage.words()}, over its budget of "
        f"{org.api_budget.share:.0%}. Polling and backfill now run "
        f"{org.api_budget.slow_factor} times less often until usage falls back under it; "
        "streaming and user writes go on."
    )
    log.warning("%s", text)
    body = {"event": "api_budget_exceeded", "org": name, "used": usage.used,
            "allocation": usage.allocation, "share": org.api_budget.share}  # fmt: skip
    notify.alert_admins(
        store, f"org '{name}' over its API budget", text, body, org.api_budget.webhook
    )
    return True


def check_budgets(store: Store, client: redis.Redis, config: BridgeConfig) -> int:
    """The sweeper's look at every org's newest API usage: alert on crossings."""
    readings = budget.read_all(client)
    return sum(
        alert_on_crossing(store, client, name, org, readings[name])
        for name, org in config.orgs.items()
        if name in readings
    )


def refresh_statistics(store: Store, client: redis.Redis) -> bool:
    """Refresh the planner's statistics at most once per ANALYZE_EVERY_SECONDS across all
    workers (sampled, so milliseconds even at a million referrals); returns whether it ran."""
    if not once_per(client, ANALYZE_LOCK, defaults.ANALYZE_EVERY_SECONDS):
        return False
    store.analyze()
    return True


def release_routed(store: Store, client: redis.Redis, config: BridgeConfig) -> None:
    """Send the referrals whose routing delay is over (their due time is in the store)."""
    due = gate.release_due(store, client, config)
    if due:
        outbound.request_drain_for(store, client, due)


def start_sweeper(
    store: Store, client: redis.Redis, stop: threading.Event, config: BridgeConfig | None = None
) -> threading.Thread:
    """Every SWEEP_EVERY_SECONDS: re-enqueue inbound events and outbound pushes whose job was
    lost, (with `config`) resend review notifications that did not go out, and now and then
    refresh the store's statistics."""

    def loop() -> None:
        while not stop.wait(defaults.SWEEP_EVERY_SECONDS):
            try:
                jobs.sweep(store, client)
                outbound.sweep(store, client)
                if config is not None:
                    release_routed(store, client, config)
                    resend_notifications(store, client, config)
                    check_budgets(store, client, config)
                refresh_statistics(store, client)
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("sweeper round failed")

    thread = threading.Thread(target=loop, name="sweeper", daemon=True)
    thread.start()
    return thread


def _die_with_parent(parent: int) -> None:
    """Forked children (rq's scheduler process, work horses) end when the worker ends, even
    when it is killed with SIGKILL, instead of living on as orphans (Linux: PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the worker died before prctl took effect
        os._exit(0)


class OutboundLane:
    """The outbound queue of a `sfbridge worker --outbound-process` in a process of its own
    (`sfbridge worker --queue outbound`), started, watched and stopped by the worker: a drain
    sending to the org never holds up an inbound job. Started again if it ends meanwhile."""

    def __init__(self, rt: Runtime, fork: bool) -> None:
        self.command = [sys.executable, "-c", "from bridge.cli import main; main()", "worker",
                        "--queue", defaults.OUTBOUND_QUEUE, "--parent", str(os.getpid()),
                        *(["--fork"] if fork else [])]  # fmt: skip
        self.env = {**os.environ, "SFBRIDGE_REDIS_URL": rt.redis_url}  # the same Redis
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(self.command, env=self.env)
        threading.Thread(target=self._watch, name="outbound-lane", daemon=True).start()

    def _watch(self) -> None:
        while True:
            code = self.proc.wait()
            if self.stopping.wait(defaults.REDIS_RETRY_MAX_SECONDS):
                return
            log.warning("worker: the outbound queue's process ended (%s); started again", code)
            with self.lock:
                if self.stopping.is_set():
                    return
                self.proc = subprocess.Popen(self.command, env=self.env)

    def stop(self) -> None:
        """SIGTERM: it finishes the job it runs (rq's warm shutdown), then ends."""
        with self.lock:
            self.stopping.set()
            proc = self.proc
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(defaults.OUTBOUND_JOB_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_worker(
    rt: Runtime,
    *,
    burst: bool = False,
    queues: Sequence[str] | None = None,
    fork: bool = False,
    parent: int | None = None,
    outbound_process: bool = False,
) -> None:
    """`sfbridge worker`: one rq SimpleWorker on `queues` (default: inbound and outbound); with
    `outbound_process`, one on the inbound queue and one on the outbound queue in a process of
    its own (`OutboundLane`). `parent`: the worker whose outbound process this is.

    One context for a process's jobs (one store engine, one login per org), set before the
    first job. SimpleWorker (jobs run in the worker process) rather than the forking Worker: a
    forked work horse starts with no org connection and no warm database pool, so every batch
    would pay a fresh OAuth token request and connection set-up; with SimpleWorker the
    connection is opened once per process (see docs/inbound.md for the measurements).
    Isolation from a crashing job matters less here: jobs catch and save their own failures,
    and a worker killed mid-batch is covered by the claim timeout and the sweeper.
    """
    if parent is not None:
        _die_with_parent(parent)
    ctx = WorkerContext.from_runtime(rt)
    names = list(queues or defaults.QUEUES)
    lane = OutboundLane(rt, fork) if outbound_process and not queues and not burst else None
    if lane is not None:
        names = [defaults.INBOUND_QUEUE]
    ctx.takes_inbound = defaults.INBOUND_QUEUE in names
    context.set_context(ctx)
    client = ctx.redis
    assert client is not None
    count_calls_with(client)
    me = os.getpid()
    os.register_at_fork(after_in_child=lambda: _die_with_parent(me))
    if fork:
        # A forked work horse must not reuse the parent's database or HTTP connections.
        def in_child() -> None:
            ctx.store.engine.dispose(close=False)
            ctx.forget_orgs()

        os.register_at_fork(after_in_child=in_child)
    stop = threading.Event()
    if burst:
        client.delete(jobs.SWEEP_LOCK)
        jobs.sweep(ctx.store, client)
        outbound.enqueue_pending(ctx.store, client)
        release_routed(ctx.store, client, ctx.config)
    elif parent is None:  # the outbound process leaves the sweeps to its worker
        start_sweeper(ctx.store, client, stop, ctx.config)
    worker_class = jobs.worker_class(fork)
    try:
        while True:
            worker = worker_class([Queue(n, connection=client) for n in names], connection=client)
            worker.max_connection_wait_time = defaults.REDIS_RETRY_MAX_SECONDS
            try:
                worker.work(burst=burst, with_scheduler=not burst, logging_level="INFO")
            except redis.ConnectionError as exc:  # its teardown could not reach Redis
                log.warning("worker: rq's work loop ended on a Redis error (%s)", exc)
                if worker.pubsub_thread is not None:  # the teardown stopped before stopping it
                    worker.pubsub_thread.stop()
            if burst or not _carry_on(worker):
                return
    finally:
        stop.set()
        if lane is not None:
            lane.stop()


def _carry_on(worker: BaseWorker) -> bool:
    """After rq's work loop ended without a stop request: whether to start it again. rq ends
    the loop on any Redis error outside its wait for a job (the job's result, a heartbeat),
    e.g. when Redis restarts under a running job; the process and its sweeper must live on.
    A SIGTERM during the pause (rq's handler is still installed) still stops the worker."""
    if worker._shutdown_requested_date is not None:
        return False
    log.warning("worker: starting rq's work loop again in %.0f s", defaults.REDIS_RETRY_MAX_SECONDS)
    try:
        time.sleep(defaults.REDIS_RETRY_MAX_SECONDS)
    except StopRequested:
        return False
    return worker._shutdown_requested_date is None


# ---- stream -----------------------------------------------------------------------------------


@dataclass
class OrgOnStream:
    """An org's subscriber (Bayeux or Pub/Sub) with its safety-net poll, started when the org
    is first served here (a fleet builds the streams of orgs it waits for, too)."""

    sub: Subscriber | PubSubSubscriber
    start_safety_net: Callable[[], object]
    _started: bool = False

    @property
    def lease(self) -> Lease:
        return self.sub.lease

    @property
    def stop(self) -> threading.Event:
        return self.sub.stop

    @property
    def in_long_poll(self) -> bool:
        return self.sub.in_long_poll

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self.start_safety_net()

    def serve(self) -> None:
        self._start()
        self.sub.serve()

    def run(self) -> None:
        """Alone in its process (`--org`): wait for the lease, stream, until SIGTERM."""
        self.sub.install_signal_handlers()
        self._start()
        self.sub.run()


def org_stream(
    rt: Runtime,
    name: str,
    org: OrgConfig,
    stop: threading.Event,
    handoff: Callable[[list[int]], object] | None = None,
) -> OrgOnStream:
    """The stream of one org: its subscriber (the Bayeux one, or the Pub/Sub API one for
    `streaming.transport: pubsub` — the one place that picks the transport), whose stored
    events are enqueued for the worker (through `handoff`, in a fleet) and whose replay gaps
    are backfilled by polling, with the safety-net poll beside it."""
    conn_id = orgs.load_connection(rt.store, name).id

    def open_org() -> Any:
        return orgs.open_org(rt.store, rt.vault, name, org)

    def enqueue(ids: list[int]) -> object:
        return handoff(ids) if handoff is not None else jobs.enqueue_events(rt.redis, ids)

    def backfill(sobject: str) -> tuple[int, int]:
        # In its own thread, with its own org connection (the stream holds the first).
        return poller.run_pending_backfill(
            rt.store, open_org(), conn_id, org, sobject, enqueue=enqueue, stop=stop
        )

    transport = PubSubSubscriber if org.streaming.transport == "pubsub" else Subscriber
    sub = transport(
        store=rt.store,
        redis_client=rt.redis,
        org_name=name,
        org=org,
        org_connection_id=conn_id,
        open_org=open_org,
        enqueue=enqueue,
        backfill=backfill,
        stop=stop,
    )
    return OrgOnStream(
        sub,
        lambda: poller.start_safety_net(
            rt.store, open_org, conn_id, org, enqueue=enqueue, active=lambda: sub.lease.held,
            stop=stop,
        ),
    )  # fmt: skip


def run_stream(rt: Runtime, org_name: str | None) -> OrgOnStream | Fleet:
    """`sfbridge stream`: with `--org`, the subscriber of that org (a second instance waits for
    its lease); without, the fleet: every configured org this process can take a lease for, up
    to `stream.capacity` (bridge.streaming.fleet). Runs until SIGTERM."""
    count_calls_with(rt.redis)
    if org_name is not None:
        name, org = pick_org(rt.config.orgs, org_name)
        stream = org_stream(rt, name, org, threading.Event())
        stream.run()
        return stream
    orgs.check_store(rt.store)
    handoff = Handoff(
        lambda ids: jobs.enqueue_events(rt.redis, ids), lambda: jobs.inbound_waiting(rt.redis)
    )

    def build(name: str, org: OrgConfig) -> OrgOnStream:
        return org_stream(rt, name, org, threading.Event(), handoff.add)

    path = rt.settings.config_path or ""
    seen = [_file_version(path)]

    def load() -> BridgeConfig | None:
        # Parsing a config of many orgs costs real CPU: only when the file changed.
        version = _file_version(path)
        if version == seen[0]:
            return None
        seen[0] = version
        return load_config(path)

    fleet = Fleet(build=build, load_config=load, config=rt.config)

    def on_term(signum: int, _frame: FrameType | None) -> None:
        log.info("stream: %s received; stopping every org", signal.Signals(signum).name)
        fleet.stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    sender = threading.Thread(target=handoff.run, args=(fleet.stop,), name="handoff", daemon=True)
    sender.start()
    fleet.run()
    sender.join(timeout=defaults.FLEET_STOP_WAIT_SECONDS)
    return fleet


def _file_version(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


# ---- poll -------------------------------------------------------------------------------------


def run_poll(
    rt: Runtime,
    org_name: str | None,
    *,
    every: int | None,
    since: datetime | None,
    objects: tuple[str, ...] | None,
    echo: Echo,
    values: bool = False,
) -> None:
    """`sfbridge poll`: a backfill (`since`), one round, or rounds `every` N seconds (each
    also running the formula-field value check when `value_check.every` is due); `values`:
    the value check alone, once."""
    count_calls_with(rt.redis)
    name, org = pick_org(rt.config.orgs, org_name)
    conn_id = orgs.load_connection(rt.store, name).id
    sforg = orgs.open_org(rt.store, rt.vault, name, org)

    def enqueue(ids: list[int]) -> int:
        return jobs.enqueue_events(rt.redis, ids)

    chosen = tuple(objects or STREAMED_OBJECTS)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if since is not None:
        for sobject in chosen:
            poller.backfill(
                rt.store, sforg, conn_id, org, sobject, since, enqueue=enqueue, echo=echo, stop=stop
            )
        return
    if values:
        echo(valuecheck.run(rt.store, sforg, conn_id, org, enqueue=enqueue).summary())
        return
    while True:
        results = poller.poll_once(rt.store, sforg, conn_id, org, enqueue=enqueue, objects=chosen)
        echo(
            "poll: "
            + ", ".join(f"{obj} {read} read / {new} new" for obj, (read, new) in results.items())
        )
        if valuecheck.due(rt.store, conn_id, org):  # formula fields, on their own schedule
            echo(valuecheck.run(rt.store, sforg, conn_id, org, enqueue=enqueue).summary())
        if not every or stop.wait(_next_round(rt, name, org, sforg, every, echo)):
            return


def _next_round(
    rt: Runtime, name: str, org: OrgConfig, sforg: Any, every: int, echo: Echo
) -> float:
    """Seconds until the next poll round: `every`, or slower while the org is over its API
    budget (bridge.salesforce.budget)."""
    try:
        shared = budget.read(rt.redis, name)
    except redis.RedisError:
        shared = None
    usage = budget.newest(sforg.api_usage, shared)
    if usage is None or time.time() - usage.at > defaults.BUDGET_READ_EVERY_SECONDS:
        try:
            usage = sforg.read_api_usage()
        except SalesforceError as exc:
            log.warning("poll: the limits of org '%s' could not be read: %s", name, exc)
    if usage is None:
        return every
    alert_on_crossing(rt.store, rt.redis, name, org, usage)
    wait = budget.deferrable_wait(usage, org.api_budget.share, every, org.api_budget.slow_factor)
    if wait > every:
        echo(
            f"poll: org '{name}' has used {usage.words()}, over its budget of "
            f"{org.api_budget.share:.0%}: next round in {wait:g}s instead of {every}s"
        )
    return wait
