"""The outbound rq job on a real Redis: enqueue, run in a burst worker, retry when transient."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import responses
from rq import Queue, SimpleWorker
from rq.job import JobStatus
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from bridge import context, defaults
from bridge.config import BridgeConfig
from bridge.context import WorkerContext
from bridge.salesforce.errors import make_error
from bridge.store import Store
from bridge.store.models import OrgConnection, Push
from bridge.writeback import MAX_ATTEMPTS, jobs, queue_activity
from bridge.writeback.jobs import enqueue_pending, enqueue_push
from tests.writeback.sfdouble import SalesforceDouble

CONFIG = BridgeConfig.model_validate(
    {
        "orgs": {
            "acme": {
                "programs": [{"key": "partners", "name": "Partner Program"}],
                "receiver": {"program": "partners"},
            }
        }
    }
)


@pytest.fixture
def sf() -> Iterator[SalesforceDouble]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield SalesforceDouble(rsps)


@pytest.fixture
def wired(sqlite_store: Store, sf: SalesforceDouble) -> Iterator[dict[str, Any]]:
    """The worker's context pointed at this test's store, config and Salesforce double."""
    with sqlite_store.session() as s:
        org = OrgConnection(
            name="acme", login_url="https://login.salesforce.com", auth_method="jwt"
        )
        stray = OrgConnection(
            name="gone", login_url="https://login.salesforce.com", auth_method="jwt"
        )
        s.add_all([org, stray])
        s.flush()
        ids = {"org": org.id, "stray": stray.id}
    opened: list[str] = []

    def open_org(name: str, _config: Any) -> Any:
        opened.append(name)
        return sf.writer()  # has the `sf` and `call` a connected org offers

    context.set_context(WorkerContext(store=sqlite_store, config=CONFIG, open_org=open_org))
    yield {**ids, "opened": opened}
    context.set_context(None)


OUTBOUND_QUEUE = defaults.OUTBOUND_QUEUE
RETRY_INTERVALS = defaults.OUTBOUND_RETRY_INTERVALS
SWEEP_AFTER = timedelta(seconds=defaults.OUTBOUND_SWEEP_AFTER_SECONDS)


def queue(store: Store, org_id: int, n: int) -> list[int]:
    with store.session() as s:
        org = s.get(OrgConnection, org_id)
        assert org is not None
        return [
            queue_activity(
                s,
                org,
                CONFIG.orgs["acme"],
                {"id": f"a{i}", "kind": "call", "occurred_at": "2026-11-20T10:00:00Z"},
            ).id
            for i in range(n)
        ]


def work(redis_client: redis.Redis) -> None:
    SimpleWorker([Queue(OUTBOUND_QUEUE, connection=redis_client)], connection=redis_client).work(
        burst=True
    )


def states(store: Store) -> dict[int, str]:
    with store.session() as s:
        return {p.id: p.state for p in s.scalars(select(Push))}


def test_enqueued_pushes_are_sent_by_the_outbound_worker(
    sqlite_store: Store, wired: dict[str, Any], sf: SalesforceDouble, redis_client: redis.Redis
) -> None:
    ids = queue(sqlite_store, wired["org"], 3)
    [job] = enqueue_push(redis_client, ids)
    assert job.origin == OUTBOUND_QUEUE and job.args == (ids,)
    work(redis_client)
    job.refresh()
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == {"sent": ids, "failed": [], "skipped": [], "retry": []}
    assert set(states(sqlite_store).values()) == {"sent"}
    assert len(sf.records["Task"]) == 3

    # running the same job again sends nothing
    calls = len(sf.rsps.calls)
    enqueue_push(redis_client, ids)
    work(redis_client)
    assert len(sf.rsps.calls) == calls


def test_transient_failure_schedules_a_retry_and_keeps_the_push_pending(
    sqlite_store: Store, wired: dict[str, Any], sf: SalesforceDouble, redis_client: redis.Redis
) -> None:
    ids = queue(sqlite_store, wired["org"], 2)
    sf.request_faults.append(
        ("composite/sobjects", 503, [{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}])
    )
    [job] = enqueue_push(redis_client, ids)
    work(redis_client)
    job.refresh()
    assert job.get_status() == JobStatus.SCHEDULED  # rq will run it again after the backoff
    assert job.id in ScheduledJobRegistry(OUTBOUND_QUEUE, connection=redis_client)
    with sqlite_store.session() as s:
        for push in s.scalars(select(Push)):
            assert (push.state, push.attempts, push.error_class) == ("pending", 1, "transient")

    # the retry (here: the pending sweep) sends them
    assert enqueue_pending(sqlite_store, redis_client) == 2
    work(redis_client)
    assert set(states(sqlite_store).values()) == {"sent"}


def test_pushes_of_an_org_missing_from_the_config_fail_with_a_reason(
    sqlite_store: Store, wired: dict[str, Any], redis_client: redis.Redis
) -> None:
    ids = queue(sqlite_store, wired["stray"], 1)
    enqueue_push(redis_client, ids)
    work(redis_client)
    with sqlite_store.session() as s:
        push = s.get(Push, ids[0])
        assert push is not None
        assert (push.state, push.error_code, push.error_class) == (
            "failed",
            "org_not_configured",
            "usage",
        )
    assert wired["opened"] == []


def test_enqueue_splits_jobs_at_200_pushes(redis_client: redis.Redis) -> None:
    jobs_ = enqueue_push(redis_client, range(1, 402))
    assert [len(j.args[0]) for j in jobs_] == [200, 200, 1]
    assert all(j.retries_left == len(RETRY_INTERVALS) for j in jobs_)
    assert 1 + len(RETRY_INTERVALS) == MAX_ATTEMPTS  # rq's retries end as the push fails


def test_the_sweep_picks_up_only_pushes_whose_job_was_lost(
    sqlite_store: Store, wired: dict[str, Any], redis_client: redis.Redis
) -> None:
    fresh, lost = queue(sqlite_store, wired["org"], 2)
    with sqlite_store.session() as s:
        push = s.get(Push, lost)
        assert push is not None
        push.updated_at = push.updated_at - SWEEP_AFTER - timedelta(seconds=1)
    assert enqueue_pending(sqlite_store, redis_client, older_than=SWEEP_AFTER) == 1
    [job] = Queue(OUTBOUND_QUEUE, connection=redis_client).get_jobs()
    assert job.func_name == "bridge.writeback.jobs.drain_org" and job.args == ([wired["org"]],)
    assert enqueue_pending(sqlite_store, redis_client) == 2  # without a limit: every pending one
    assert len(Queue(OUTBOUND_QUEUE, connection=redis_client).get_jobs()) == 1  # one drain queued


def test_a_job_enqueued_without_rq_retries_schedules_its_own_follow_up(
    sqlite_store: Store, wired: dict[str, Any], sf: SalesforceDouble, redis_client: redis.Redis
) -> None:
    """As the JSON API enqueues `send_push(push_id)`: a transient error still gets retried."""
    [pid] = queue(sqlite_store, wired["org"], 1)
    sf.request_faults.append(
        ("composite/sobjects", 503, [{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}])
    )
    job = Queue(OUTBOUND_QUEUE, connection=redis_client).enqueue(jobs.send_push, pid)
    work(redis_client)
    job.refresh()
    assert job.get_status() == JobStatus.FINISHED
    registry = ScheduledJobRegistry(OUTBOUND_QUEUE, connection=redis_client)
    [follow_up_id] = registry.get_job_ids()
    follow_up = Queue(OUTBOUND_QUEUE, connection=redis_client).fetch_job(follow_up_id)
    assert follow_up is not None and follow_up.args == ([pid],)
    scheduled_at = registry.get_scheduled_time(follow_up_id)
    assert scheduled_at > datetime.now(UTC) + timedelta(seconds=RETRY_INTERVALS[0] - 5)


def test_one_sweeper_at_a_time(
    sqlite_store: Store, wired: dict[str, Any], redis_client: redis.Redis
) -> None:
    [lost] = queue(sqlite_store, wired["org"], 1)
    with sqlite_store.session() as s:
        push = s.get(Push, lost)
        assert push is not None
        push.updated_at = push.updated_at - SWEEP_AFTER - timedelta(seconds=1)
    assert jobs.sweep(sqlite_store, redis_client) == 1
    assert jobs.sweep(sqlite_store, redis_client) == 0  # another worker holds the round


@pytest.mark.parametrize(
    ("code", "state", "job_status"),
    [
        ("invalid_grant", "failed", JobStatus.FINISHED),
        ("network_error", "pending", JobStatus.SCHEDULED),
    ],
)
def test_a_failed_login_is_saved_on_the_pushes(
    sqlite_store: Store,
    wired: dict[str, Any],
    redis_client: redis.Redis,
    code: str,
    state: str,
    job_status: JobStatus,
) -> None:
    def refuse(_name: str, _config: Any) -> Any:
        raise make_error(code, "user hasn't approved this consumer", status=400)

    context.current().open_org = refuse
    [pid] = queue(sqlite_store, wired["org"], 1)
    [job] = enqueue_push(redis_client, [pid])
    work(redis_client)
    job.refresh()
    assert job.get_status() == job_status
    with sqlite_store.session() as s:
        push = s.get(Push, pid)
        assert push is not None
        assert (push.state, push.error_code, push.attempts) == (state, code, 1)


def test_the_inbound_job_names_the_outbound_job_that_exists() -> None:
    """The job layer enqueues drains (for the API's pushes and those the inbound entries
    queued) by the drain job's dotted path (the writeback's jobs build on bridge.jobs, so it
    cannot import them)."""
    import importlib

    from bridge import jobs as job_layer
    from bridge.writeback import jobs as writeback_jobs

    module, name = job_layer.DRAIN_ORG.rsplit(".", 1)
    assert getattr(importlib.import_module(module), name) is writeback_jobs.drain_org
