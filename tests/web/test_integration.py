"""The integration health page and its JSON: connection, stream lease, channels, API usage from
the counting hook (Sforce-Limit-Info), queues, failed pushes, entries and notifications."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import redis
import requests
import responses
from flask import Flask
from sqlalchemy import select

from bridge.metrics import salesforce_call_hook
from bridge.store import Store
from bridge.store.models import AuditLog, OrgConnection, SalesEntry, SyncCursor, utcnow
from bridge.streaming.subscriber import lease_key, topic_channels
from tests.web.conftest import AuthActions
from tests.web.seed import seed

LIMITS = "https://acme.example/services/data/v63.0/limits"


def test_without_redis_the_page_says_so(
    sqlite_store: Store, app_factory: Callable[..., Flask]
) -> None:
    seed(sqlite_store)
    client = app_factory(sqlite_store).test_client()
    assert client.get("/integration").status_code == 302  # sign in first
    AuthActions(client).login()
    page = client.get("/integration").text
    assert "Redis does not answer" in page and ">unhealthy<" in page
    assert "unknown: no Salesforce answer" in page
    body = client.get("/integration.json").get_json()
    assert body["status"] == "unhealthy" and body["queues"] == {"inbound": None, "outbound": None}


@responses.activate
def test_a_streaming_org_is_healthy_and_shows_its_api_usage(
    store: Store, app_factory: Callable[..., Flask], redis_url: str
) -> None:
    responses.get(LIMITS, json={}, headers={"Sforce-Limit-Info": "api-usage=1234/15000"})
    conn = redis.Redis.from_url(redis_url)
    session = requests.Session()
    session.hooks["response"].append(salesforce_call_hook(conn, "acme"))
    session.get(LIMITS)
    session.get(LIMITS)
    ids = seed(store).ids
    with store.session() as s:
        e = s.get(SalesEntry, ids["processed"])
        assert e is not None
        e.notify_state = "failed"
    app = app_factory(store, redis_url=redis_url)
    client = app.test_client()
    AuthActions(client).login()
    body = client.get("/integration.json").get_json()
    [acme] = body["orgs"]
    assert acme["healthy"] is False and "sfbridge stream --org acme" in acme["problems"][0]
    org = app.extensions["sfbridge"].config().orgs["acme"]
    conn.set(lease_key("acme", list(topic_channels(org))), "host:1:abc", px=30_000)
    body = client.get("/integration.json").get_json()
    [acme] = body["orgs"]
    assert body["status"] == "healthy" and acme["healthy"] and acme["problems"] == []
    assert acme["stream"]["holder"] == "host:1:abc" and acme["connected"]
    assert (acme["api"]["used"], acme["api"]["limit"]) == (1234, 15000)
    today = datetime.now(UTC).date().isoformat()
    assert acme["api"]["days"][today] == 2 and len(acme["api"]["days"]) == 14
    assert acme["api"]["last_ok_at"].startswith(today)
    assert body["notifications"] == {"sent": 0, "failed": 1, "pending": 0}
    assert body["pushes"]["failed"] == 1 and body["entries"]["review"] == 3
    assert body["queues"] == {"inbound": 0, "outbound": 0}
    page = client.get("/integration").text
    assert "1234</span> of <span" in page and "Salesforce API calls per day, org acme" in page
    assert "host:1:abc" in page and ">healthy<" in page
    with store.session() as s:
        s.add(
            SyncCursor(
                org_connection_id=1,
                channel="backfill:Lead",
                modstamp=utcnow() - timedelta(hours=2),
            )
        )
    [acme] = client.get("/integration.json").get_json()["orgs"]
    assert acme["backfills"] == 1 and 7100 < acme["polling"][0]["behind_seconds"] < 7300
    assert "backfill in progress" in client.get("/integration").text
    dashboard = client.get("/").text
    assert 'data-poll="/integration.json"' in dashboard and "org acme" in dashboard


def test_an_admin_pauses_and_resumes_a_direction_from_the_health_page(
    sqlite_store: Store, app_factory: Callable[..., Flask]
) -> None:
    seed(sqlite_store)
    app = app_factory(sqlite_store)
    reviewer = AuthActions(app.test_client())
    reviewer.login()
    refused = reviewer.post(
        "/integration/acme/switch", {"direction": "outbound", "action": "pause"}
    )
    assert refused.status_code == 403

    admin = AuthActions(app.test_client())
    admin.login("admin@example.com")
    page = admin.post(
        "/integration/acme/switch", {"direction": "outbound", "action": "pause"},
        follow_redirects=True,
    )  # fmt: skip
    assert page.status_code == 200 and "outbound of org acme: paused" in page.text
    assert "Resume outbound" in page.text and "Pause inbound" in page.text
    with sqlite_store.session() as s:
        conn = s.scalar(select(OrgConnection).where(OrgConnection.name == "acme"))
        assert conn is not None and conn.outbound_paused and not conn.inbound_paused
        assert s.scalar(select(AuditLog.action).order_by(AuditLog.id.desc())) == "org.pause"
    admin.post("/integration/acme/switch", {"direction": "outbound", "action": "resume"})
    with sqlite_store.session() as s:
        conn = s.scalar(select(OrgConnection).where(OrgConnection.name == "acme"))
        assert conn is not None and not conn.outbound_paused
    bad = admin.post(
        "/integration/acme/switch", {"direction": "sideways", "action": "pause"},
        follow_redirects=True,
    )  # fmt: skip
    assert "choose outbound or inbound" in bad.text
