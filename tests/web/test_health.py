"""/healthz, /readyz and /metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import redis
from flask import Flask

from bridge.salesforce import budget
from bridge.store import Store
from bridge.store.models import InboundEvent, OrgConnection, SyncCursor, utcnow
from bridge.streaming import stall
from bridge.streaming.subscriber import lease_key, topic_channels
from tests.web.seed import seed


def test_healthz(app: Flask) -> None:
    resp = app.test_client().get("/healthz")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}


def test_readyz_lists_what_fails(sqlite_store: Store, app_factory: Callable[..., Flask]) -> None:
    with sqlite_store.session() as s:
        s.add(OrgConnection(name="other", login_url="https://x", auth_method="jwt"))
    app = app_factory(sqlite_store)  # no Redis; org 'acme' of the config is not connected
    resp = app.test_client().get("/readyz")
    body = resp.get_json()
    assert resp.status_code == 503
    assert body["failing"] == ["org:acme", "redis"]
    assert "sfbridge org connect acme" in body["checks"]["org:acme"]["error"]
    assert body["checks"]["database"] == {"ok": True}


def test_readyz_ready_then_lagging(
    sqlite_store: Store, app_factory: Callable[..., Flask], redis_url: str
) -> None:
    seed(sqlite_store)
    app = app_factory(sqlite_store, redis_url=redis_url)
    client = app.test_client()
    body = client.get("/readyz").get_json()
    assert body["failing"] == ["stream:acme"]  # no subscriber holds the org's lease
    assert "sfbridge stream --org acme" in body["checks"]["stream:acme"]["error"]
    org = app.extensions["sfbridge"].config().orgs["acme"]
    key = lease_key("acme", list(topic_channels(org)))
    redis.Redis.from_url(redis_url).set(key, "host:123:abc", px=30_000)  # as a subscriber does
    resp = client.get("/readyz")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["checks"]["stream:acme"]["holder"] == "host:123:abc"
    assert resp.get_json()["checks"]["subscriber"]["lag_seconds"] == 0
    with sqlite_store.session() as s:
        s.add(SyncCursor(org_connection_id=1, channel="/topic/SFB_Lead", replay_id=5))
        s.add(
            InboundEvent(
                org_connection_id=1,
                channel="/topic/SFB_Lead",
                replay_id=6,
                change_key="k6",
                source="stream",
                sobject_type="Lead",
                change_type="updated",
                payload={},
                state="new",
                received_at=utcnow() - timedelta(minutes=10),
            )
        )
    body = client.get("/readyz").get_json()
    assert body["failing"] == ["subscriber"]
    assert body["checks"]["subscriber"]["lag_seconds"] >= 600
    assert "sfbridge worker" in body["checks"]["subscriber"]["error"]


def test_metrics(sqlite_store: Store, app_factory: Callable[..., Flask], redis_url: str) -> None:
    seed(sqlite_store)
    with sqlite_store.session() as s:
        for i in range(3):
            s.add(
                InboundEvent(
                    org_connection_id=1,
                    channel="/topic/SFB_Lead",
                    replay_id=i,
                    change_key=f"k{i}",
                    source="stream",
                    sobject_type="Lead",
                    change_type="updated",
                    payload={},
                    state="done",
                )
            )
    r = redis.Redis.from_url(redis_url)
    r.hset("sfbridge:sf_api_calls", mapping={"acme": 42})
    r.set("sfbridge:sf_api_errors", 2)
    r.rpush("rq:queue:inbound", "job-a", "job-b")
    app = app_factory(sqlite_store, redis_url=redis_url)
    resp = app.test_client().get("/metrics")
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    text = resp.get_data(as_text=True)
    for line in (
        'sfbridge_inbound_events_total{org="acme",channel="/topic/SFB_Lead"} 3',
        'sfbridge_sales_entries{outcome="review"} 3',
        'sfbridge_sales_entries{outcome="failed"} 1',
        'sfbridge_pushes{state="failed"} 1',
        'sfbridge_rq_queue_depth{queue="inbound"} 2',
        'sfbridge_rq_queue_depth{queue="outbound"} 0',
        'sfbridge_salesforce_api_calls_total{org="acme"} 42',
        "sfbridge_salesforce_api_errors_total 2",
        "sfbridge_subscriber_lag_seconds 0",
        "# TYPE sfbridge_sales_entries gauge",
    ):
        assert line in text.splitlines(), line


def test_readyz_names_a_stalled_channel(
    sqlite_store: Store, app_factory: Callable[..., Flask], redis_url: str
) -> None:
    """A channel offered events that were not stored, its cursor not moved since, for longer
    than STALL_AFTER_SECONDS: /readyz fails and names it. Once the cursor moves, it passes."""
    seed(sqlite_store)
    app = app_factory(sqlite_store, redis_url=redis_url)
    client = app.test_client()
    conn = redis.Redis.from_url(redis_url)
    org = app.extensions["sfbridge"].config().orgs["acme"]
    conn.set(lease_key("acme", list(topic_channels(org))), "host:1:a", px=30_000)
    with sqlite_store.session() as s:
        s.add(
            SyncCursor(
                org_connection_id=1,
                channel="/topic/SFB_Lead",
                replay_id=5,
                updated_at=utcnow() - timedelta(minutes=10),
            )
        )
    offered = stall.Offered(conn, "acme")
    offered.mark([{"channel": "/topic/SFB_Lead"}])
    assert client.get("/readyz").status_code == 200  # offered just now: not stalled yet
    conn.hset(stall.key("acme"), "/topic/SFB_Lead", f"{time.time() - 300:.3f}")
    body = client.get("/readyz").get_json()
    assert body["failing"] == ["stream:acme"]
    check = body["checks"]["stream:acme"]
    assert list(check["stalled_channels"]) == ["/topic/SFB_Lead"]
    assert "channel /topic/SFB_Lead of org 'acme'" in check["error"]
    assert "without its cursor moving" in check["error"]
    with sqlite_store.session() as s:  # the cursor moved after the note (stored, then killed)
        s.get(SyncCursor, (1, "/topic/SFB_Lead")).updated_at = utcnow()
    assert client.get("/readyz").status_code == 200
    offered.clear(["/topic/SFB_Lead"])
    assert conn.hgetall(stall.key("acme")) == {}


def test_readyz_and_metrics_show_the_usage(
    sqlite_store: Store, app_factory: Callable[..., Flask], redis_url: str
) -> None:
    seed(sqlite_store)
    client = app_factory(sqlite_store, redis_url=redis_url).test_client()
    conn = redis.Redis.from_url(redis_url)
    budget.record(conn, "acme", budget.ApiUsage(850, 1000, time.time()))
    check = client.get("/readyz").get_json()["checks"]["api_budget:acme"]
    assert check["ok"] and check["over_budget"] and check["used"] == 850
    assert "over the budget of 80%" in check["warning"]
    text = client.get("/metrics").get_data(as_text=True)
    assert 'sfbridge_salesforce_api_usage{org="acme"} 850' in text
    assert 'sfbridge_salesforce_api_allocation{org="acme"} 1000' in text
    budget.record(conn, "acme", budget.ApiUsage(1000, 1000, time.time()))
    body = client.get("/readyz").get_json()
    assert "api_budget:acme" in body["failing"]
    assert "Salesforce refuses API calls" in body["checks"]["api_budget:acme"]["error"]
