"""/healthz, /readyz and /metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
import redis
from flask import Flask

from bridge.errors import ConfigError
from bridge.salesforce import budget
from bridge.store import Store
from bridge.store.models import InboundEvent, OrgConnection, SyncCursor, utcnow
from bridge.streaming import stall
from bridge.streaming.subscriber import lease_key, topic_channels
from tests.web.seed import seed, token

LOOPBACK = "127.0.0.1/32"  # the test client's address: monitoring details allowed


def test_healthz(app: Flask) -> None:
    resp = app.test_client().get("/healthz")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}


def test_readyz_lists_what_fails(sqlite_store: Store, app_factory: Callable[..., Flask]) -> None:
    with sqlite_store.session() as s:
        s.add(OrgConnection(name="other", login_url="https://x", auth_method="jwt"))
    # No Redis; org 'acme' of the config is not connected.
    app = app_factory(sqlite_store, MONITOR_NETWORKS=LOOPBACK)
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
    app = app_factory(sqlite_store, redis_url=redis_url, MONITOR_NETWORKS=LOOPBACK)
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
    app = app_factory(sqlite_store, redis_url=redis_url, MONITOR_NETWORKS=LOOPBACK)
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
    app = app_factory(sqlite_store, redis_url=redis_url, MONITOR_NETWORKS=LOOPBACK)
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
    app = app_factory(sqlite_store, redis_url=redis_url, MONITOR_NETWORKS=LOOPBACK)
    client = app.test_client()
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


@pytest.mark.postgres
def test_monitoring_details_need_a_token_or_an_allowed_network(
    store: Store, app_factory: Callable[..., Flask]
) -> None:
    seed(store)
    app = app_factory(store, MONITOR_NETWORKS="10.0.0.0/8, 192.0.2.7")
    anyone = app.test_client()
    assert anyone.get("/healthz").get_json() == {"status": "ok"}  # liveness stays public
    bare = anyone.get("/readyz")
    assert bare.status_code == 503 and bare.get_json() == {"status": "not ready"}
    refused = anyone.get("/metrics")
    assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "unauthorized"
    assert "metrics:read" in refused.get_json()["error"]["message"]
    assert "sfbridge_" not in refused.get_data(as_text=True)
    wrong_scope = {"Authorization": f"Bearer {token(store, ['entries:read'])}"}
    assert anyone.get("/metrics", headers=wrong_scope).status_code == 403
    assert "checks" not in anyone.get("/readyz", headers=wrong_scope).get_json()
    monitor = {"Authorization": f"Bearer {token(store, ['metrics:read'])}"}
    assert "sfbridge_up 1" in anyone.get("/metrics", headers=monitor).get_data(as_text=True)
    detailed = anyone.get("/readyz", headers=monitor).get_json()
    assert "org:acme" not in detailed["failing"] and "redis" in detailed["failing"]
    inside = app.test_client()
    inside.environ_base["REMOTE_ADDR"] = "10.1.2.3"
    assert inside.get("/metrics").status_code == 200
    assert "checks" in inside.get("/readyz").get_json()
    outside = app.test_client()
    outside.environ_base["REMOTE_ADDR"] = "192.0.2.8"
    assert outside.get("/metrics").status_code == 401


def test_a_bad_monitor_network_is_refused_at_start(
    sqlite_store: Store, app_factory: Callable[..., Flask]
) -> None:
    with pytest.raises(ConfigError, match="'10.0.0.300' is not an address"):
        app_factory(sqlite_store, MONITOR_NETWORKS="10.0.0.0/8,10.0.0.300")


@pytest.mark.postgres
def test_json_answers_are_never_cached(store: Store, app_factory: Callable[..., Flask]) -> None:
    seed(store)
    app = app_factory(store)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token(store, ['entries:read'])}"}
    for resp in (
        client.get("/api/v1/entries", headers=headers),
        client.get("/api/v1/entries"),  # an error is JSON too
        client.get("/api/v1/openapi.json"),
        client.get("/healthz"),
        client.get("/readyz"),
    ):
        assert resp.mimetype == "application/json"
        assert resp.headers["Cache-Control"] == "no-store", resp.request.path
