"""Bulk repush of a filtered set of pushes: the pushes report's filters, its "Repush all
matching…" through a confirmation that says how many and which error codes, and the API's
`POST /api/v1/pushes/repush` with the same filter (JSON errors for bad filters). SQLite and a
real Redis (the send jobs are enqueued on it)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask import Flask
from rq import Queue
from sqlalchemy import select

from bridge import defaults
from bridge.store import Store
from bridge.store.models import AuditLog, OrgConnection, Push
from bridge.vocabulary import SCOPES
from bridge.web import pushlist
from tests.web.apitools import check, check_error
from tests.web.conftest import AuthActions
from tests.web.seed import Seeded, token


def _failed(conn: OrgConnection, n: int, code: str, sobject: str = "Lead", **kw: Any) -> Push:
    return Push(
        org_connection_id=conn.id,
        kind="referral" if sobject == "Lead" else "activity",
        idempotency_key=f"bulk:{n}",
        sobject_type=sobject,
        external_id_field="Referral_ID__c",
        external_id=f"bulk_{n}",
        state=kw.pop("state", "failed"),
        error_code=code,
        error_message=f"{code} for {n}",
        attempts=1,
        **kw,
    )


@pytest.fixture
def pushes(sqlite_store: Store, seeded: Seeded) -> dict[str, Any]:
    """The seed's pushes (one failed STRING_TOO_LONG Lead) and more: two more Lead pushes
    failed on a validation rule, one on STRING_TOO_LONG, a failed Task, a skipped one, and a
    failed one of another org."""
    with sqlite_store.session() as s:
        acme = s.scalar(select(OrgConnection).where(OrgConnection.name == "acme"))
        assert acme is not None
        beta = OrgConnection(name="beta", login_url="https://beta.test", auth_method="jwt")
        s.add(beta)
        s.flush()
        rule = "FIELD_CUSTOM_VALIDATION_EXCEPTION"
        rows = {
            "rule1": _failed(acme, 1, rule),
            "rule2": _failed(acme, 2, rule),
            "long2": _failed(acme, 3, "STRING_TOO_LONG"),
            "task": _failed(acme, 4, "STRING_TOO_LONG", "Task"),
            "skipped": _failed(acme, 5, "DUPLICATE_VALUE", state="skipped"),
            "beta": _failed(beta, 6, rule),
        }
        s.add_all(rows.values())
        s.flush()
        ids = {k: p.id for k, p in rows.items()} | {"long1": seeded.ids["push_failed"]}
    return {"seeded": seeded, "ids": ids}


def _states(store: Store) -> dict[int, str]:
    with store.session() as s:
        return {push_id: state for push_id, state in s.execute(select(Push.id, Push.state))}


def _bulk_audits(store: Store) -> list[AuditLog]:
    with store.session() as s:
        return list(s.scalars(select(AuditLog).where(AuditLog.action == "push.bulk_repush")))


@pytest.fixture
def api(
    sqlite_store: Store, pushes: dict[str, Any], app_factory: Callable[..., Flask], redis_url: str
) -> Any:
    app = app_factory(sqlite_store, redis_url=redis_url)
    secret = token(sqlite_store, list(SCOPES))
    client = app.test_client()

    def post(body: Any) -> Any:
        return client.post(
            "/api/v1/pushes/repush", json=body, headers={"Authorization": f"Bearer {secret}"}
        )

    return post


def test_the_api_repushes_what_the_filter_selects(
    api: Any, pushes: dict[str, Any], sqlite_store: Store, redis_url: str
) -> None:
    ids = pushes["ids"]
    outbound = Queue(defaults.OUTBOUND_QUEUE, connection=redis.Redis.from_url(redis_url))
    outbound.empty()
    rule = {"org": "acme", "state": "failed", "error_code": "FIELD_CUSTOM_VALIDATION_EXCEPTION"}

    before = _states(sqlite_store)
    dry = check(api({**rule, "object": "Lead", "dry_run": True}), 200, "PushesRepushed")
    assert dry["pushes"] == [ids["rule1"], ids["rule2"]] and dry["dry_run"] is True
    assert dry["error_codes"] == {"FIELD_CUSTOM_VALIDATION_EXCEPTION": 2}
    assert _states(sqlite_store) == before and _bulk_audits(sqlite_store) == []

    out = check(api({**rule, "object": "Lead"}), 202, "PushesRepushed")
    assert out["pushes"] == [ids["rule1"], ids["rule2"]] and out["count"] == 2
    assert out["remaining"] == 0 and out["note"] == "queued for sending"
    states = _states(sqlite_store)
    assert states[ids["rule1"]] == states[ids["rule2"]] == "pending"
    assert states[ids["beta"]] == "failed"  # another org's
    assert states[ids["long1"]] == states[ids["long2"]] == "failed"  # another error code
    assert outbound.count >= 1  # the send job
    [audit] = _bulk_audits(sqlite_store)
    assert audit.detail["count"] == 2 and audit.detail["pushes"] == out["pushes"]
    assert audit.detail["filters"] == {
        "org": "acme", "state": "failed", "code": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "object": "Lead",
    }  # fmt: skip
    with sqlite_store.session() as s:
        each = s.scalars(select(AuditLog.object_id).where(AuditLog.action == "push.repush"))
        assert sorted(each) == sorted(str(i) for i in out["pushes"])

    # Without a state: failed and skipped; by object across orgs.
    tasks = check(api({"object": "Task"}), 202, "PushesRepushed")
    assert tasks["pushes"] == [ids["task"]]
    skipped = check(api({"state": "skipped"}), 202, "PushesRepushed")
    assert skipped["pushes"] == [ids["skipped"]]
    again = check(api({**rule, "object": "Lead"}), 202, "PushesRepushed")
    assert again["pushes"] == [] and again["error_codes"] == {}  # none left to repush


def test_the_api_answers_bad_filters_with_json_errors(api: Any, sqlite_store: Store) -> None:
    before = _states(sqlite_store)
    check_error(api({"state": "sent"}), 400, "validation_error", ["state"])
    check_error(api({"state": "pending"}), 400, "validation_error", ["state"])
    check_error(api({"kind": "parcel"}), 400, "validation_error", ["kind"])
    check_error(api({"error_code": "not a code"}), 400, "validation_error", ["error_code"])
    check_error(api({"object": "Lead; DROP"}), 400, "validation_error", ["object"])
    check_error(api({"colour": "red"}), 400, "validation_error")
    body = check_error(api({"org": "nowhere"}), 422, "unknown_org", ["org"])
    assert "nowhere" in body["error"]["message"]
    assert _states(sqlite_store) == before and _bulk_audits(sqlite_store) == []


def test_a_bulk_repush_takes_at_most_the_limit_and_says_how_many_remain(
    api: Any, pushes: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pushlist, "REPUSH_LIMIT", 2)
    out = check(api({"org": "acme"}), 202, "PushesRepushed")
    assert out["count"] == 2 and out["remaining"] == 4  # of 6 in acme, failed or skipped
    assert out["pushes"] == sorted(out["pushes"])  # oldest first
    assert check(api({"org": "acme"}), 202, "PushesRepushed")["remaining"] == 2


def _repush_button(html: str) -> str:
    match = re.search(r'id="repush-matching">([^<]+)<', html)
    assert match, "no Repush all matching button"
    return match.group(1)


def test_the_report_repushes_a_filtered_set_after_a_confirmation(
    client: Any, auth: AuthActions, pushes: dict[str, Any], sqlite_store: Store
) -> None:
    ids = pushes["ids"]
    auth.login("admin@example.com")
    f = {"org": "acme", "state": "failed", "code": "STRING_TOO_LONG", "object": "Lead"}
    html = client.get("/reports/pushes", query_string=f).get_data(as_text=True)
    assert _repush_button(html) == "Repush all 2 matching…"
    assert "STRING_TOO_LONG × 2" in html
    assert f"/reports/pushes/{ids['task']}" not in html  # the object filter

    before = _states(sqlite_store)
    confirm = auth.post("/reports/pushes/repush", f).get_data(as_text=True)
    assert "Confirm: repush 2 pushes" in confirm
    assert re.search(r'<form method="post"[^>]*>\s*<input type="hidden" name="csrf_token"', confirm)
    assert "This will send 2 pushes again: STRING_TOO_LONG × 2." in confirm
    listed = [int(i) for i in re.findall(r'name="push_id" value="(\d+)"', confirm)]
    assert listed == [ids["long1"], ids["long2"]]
    assert _states(sqlite_store) == before  # nothing yet

    # One of them is repushed by someone else meanwhile: left alone and named.
    auth.post(f"/reports/pushes/{ids['long2']}/repush")
    done = auth.post(
        "/reports/pushes/repush", {**f, "confirm": "yes", "push_id": listed}, follow_redirects=True
    )
    page = done.get_data(as_text=True)
    assert "Repushed 1 push (STRING_TOO_LONG × 1)" in page
    assert f"Left alone (no longer failed or skipped, or no longer matching): {ids['long2']}" in (
        page
    )
    states = _states(sqlite_store)
    assert states[ids["long1"]] == "pending"
    assert states[ids["rule1"]] == states[ids["task"]] == "failed"
    [audit] = _bulk_audits(sqlite_store)
    assert audit.actor == "admin@example.com" and audit.detail["pushes"] == [ids["long1"]]
    assert "sent again the pushes a filter selected" in client.get("/audit").get_data(as_text=True)


def test_the_report_refuses_bad_filters_and_reviewers(
    client: Any, auth: AuthActions, pushes: dict[str, Any], sqlite_store: Store
) -> None:
    before = _states(sqlite_store)
    auth.login("admin@example.com")
    page = auth.post(
        "/reports/pushes/repush", {"state": "sent", "confirm": "yes"}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Nothing was repushed: state is one of failed, skipped" in page
    page = auth.post("/reports/pushes/repush", {"org": "nowhere"}, follow_redirects=True).get_data(
        as_text=True
    )
    assert "no connected org named" in page
    html = client.get("/reports/pushes?state=sent").get_data(as_text=True)
    assert 'id="repush-matching"' not in html  # sent pushes are not offered
    client.post("/auth/logout", data={"csrf_token": auth.csrf("/")})

    auth.login("reviewer@example.com")
    html = client.get("/reports/pushes?state=failed").get_data(as_text=True)
    assert 'id="repush-matching"' not in html
    assert auth.post("/reports/pushes/repush", {"state": "failed"}).status_code == 403
    assert _states(sqlite_store) == before


def test_the_tab_counts_follow_the_filters(
    client: Any, auth: AuthActions, pushes: dict[str, Any]
) -> None:
    auth.login("admin@example.com")
    html = client.get("/reports/pushes?org=beta").get_data(as_text=True)
    failed_tab = re.search(r'state=failed[^"]*"[^>]*>failed <span class="n">(\d+)', html)
    assert failed_tab and failed_tab.group(1) == "1"
    assert "org=beta" in failed_tab.group(0)  # the tab keeps the filter
