"""JSON API v1, outbound: input that cannot fit the org's fields is refused before anything is
saved; repush with field overrides; a push's attempts; the on/off switch per direction.

Real Redis (the describe cache the web workers share) and SQLite; the org's field rules are
the cached describe, so no org is called.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask import Flask
from rq import Queue
from sqlalchemy import func, select

from bridge.store import Store
from bridge.store.models import AuditLog, OrgConnection, Push, PushAttempt, Referral
from bridge.vocabulary import SCOPES
from bridge.writeback.describes import KEY
from bridge.writeback.fit import field_rules
from tests.web.apitools import check, check_error
from tests.web.conftest import AuthActions
from tests.web.seed import seed, token

LEAD = {
    "fields": [
        {"name": "LastName", "type": "string", "length": 80},
        {"name": "FirstName", "type": "string", "length": 40},
        {"name": "Email", "type": "email", "length": 80},
        {"name": "Company", "type": "string", "length": 255},
        {"name": "Phone", "type": "phone", "length": 40},
        {
            "name": "Rating",
            "type": "picklist",
            "length": 255,
            "restrictedPicklist": True,
            "picklistValues": [{"value": "Hot", "active": True}, {"value": "Cold", "active": True}],
        },  # fmt: skip
    ]
}
# an org whose Task.Description is shorter than the standard 32,000 (the rules are the org's)
TASK = {
    "fields": [
        {"name": "Subject", "type": "combobox", "length": 255},
        {"name": "Description", "type": "textarea", "length": 1000},
    ]
}


@pytest.fixture
def api(sqlite_store: Store, app_factory: Callable[..., Flask], redis_url: str) -> Any:
    seed(sqlite_store)
    client = redis.Redis.from_url(redis_url)
    for sobject, describe in (("Lead", LEAD), ("Task", TASK)):
        client.set(KEY.format(org="acme", sobject=sobject), json.dumps(field_rules(describe)))
    app = app_factory(sqlite_store, redis_url=redis_url)
    secret = token(sqlite_store, list(SCOPES))
    test_client = app.test_client()

    class Api:
        store = sqlite_store
        redis = client
        web = test_client

        def post(self, path: str, body: Any = None) -> Any:
            return test_client.post(
                "/api/v1" + path, json=body, headers={"Authorization": f"Bearer {secret}"}
            )

        def get(self, path: str) -> Any:
            return test_client.get("/api/v1" + path, headers={"Authorization": f"Bearer {secret}"})

    return Api()


def count(store: Store, model: Any) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_a_referral_whose_last_name_is_longer_than_the_org_takes_is_refused(api: Any) -> None:
    referrals, pushes = count(api.store, Referral), count(api.store, Push)
    body = check_error(
        api.post(
            "/referrals",
            {"program": "main", "last_name": "L" * 93, "email": "jo@example.com"},
        ),
        400,
        "value_does_not_fit",
        ["last_name"],
    )
    message = body["error"]["message"]
    assert "Lead.LastName" in message and "80" in message and "93" in message
    # nothing saved: no referral and no push that could never succeed
    assert (count(api.store, Referral), count(api.store, Push)) == (referrals, pushes)
    check(
        api.post("/referrals", {"program": "main", "last_name": "L" * 80}), 201, "ReferralCreated"
    )


def test_an_activity_description_longer_than_the_org_takes_is_refused(api: Any) -> None:
    activity = {
        "org": "acme",
        "activity_id": "c-1",
        "kind": "call",
        "subject": "Hi",
        "description": "d" * 1500,
        "occurred_at": "2026-03-02T09:30:00Z",
    }
    body = check_error(
        api.post("/activities", activity), 400, "value_does_not_fit", ["description"]
    )
    assert "Task.Description takes at most 1000 characters" in body["error"]["message"]


def test_repush_takes_field_overrides_that_fit_and_keeps_the_attempts(api: Any) -> None:
    with api.store.session() as s:
        failed = s.scalar(select(Push).where(Push.state == "failed"))
        assert failed is not None
        failed_id = failed.id
        s.add(
            PushAttempt(
                push_id=failed_id, attempt=1, state="failed", error_code="STRING_TOO_LONG",
                error_message="Company: data value too large", error_class="permanent",
                via="collections",
            )
        )  # fmt: skip
    body = check_error(
        api.post(f"/pushes/{failed_id}/repush", {"fields": {"Rating": "Warm"}}),
        400,
        "value_does_not_fit",
        ["Rating"],
    )
    assert "restricted picklist" in body["error"]["message"]
    check_error(api.post(f"/pushes/{failed_id}/repush", {"fields": {"a b": 1}}), 400,
                "validation_error")  # fmt: skip
    out = check(
        api.post(f"/pushes/{failed_id}/repush", {"fields": {"Company": "Acme", "Rating": "Hot"}}),
        202,
        "Push",
    )
    assert out["state"] == "pending"
    assert out["payload"]["overrides"] == {"Company": "Acme", "Rating": "Hot"}
    attempts = check(api.get(f"/pushes/{failed_id}/attempts"), 200, "PushAttemptList")
    assert [(a["attempt"], a["state"], a["error"]["code"]) for a in attempts["data"]] == [
        (1, "failed", "STRING_TOO_LONG")
    ]
    check_error(api.get("/pushes/999999/attempts"), 404, "not_found")


def test_attempts_are_numbered_in_order_across_repushes_as_on_the_push_page(api: Any) -> None:
    """Two rounds: two sends, a repush, one send. The API and the push page say 1, 2, 3 (the
    second of a round is its retry 1), not the send count of each round (1, 2, 1)."""
    with api.store.session() as s:
        failed = s.scalar(select(Push).where(Push.state == "failed"))
        assert failed is not None
        failed_id = failed.id
        for n, code in ((1, "UNABLE_TO_LOCK_ROW"), (2, "STRING_TOO_LONG"), (1, "STRING_TOO_LONG")):
            s.add(
                PushAttempt(
                    push_id=failed_id, attempt=n, state="failed", error_code=code,
                    error_message="x", error_class="permanent", via="collections",
                )
            )  # fmt: skip
    attempts = check(api.get(f"/pushes/{failed_id}/attempts"), 200, "PushAttemptList")
    assert [(a["attempt"], a["retry"], a["error"]["code"]) for a in attempts["data"]] == [
        (1, 0, "UNABLE_TO_LOCK_ROW"),
        (2, 1, "STRING_TOO_LONG"),
        (3, 0, "STRING_TOO_LONG"),
    ]
    AuthActions(api.web).login("admin@example.com")
    html = api.web.get(f"/reports/pushes/{failed_id}").get_data(as_text=True)
    rows = html.split("<h2>Attempts</h2>", 1)[1].split("<tr><td>")[1:]
    assert [r.split("</td>", 1)[0].split(" ", 1)[0] for r in rows] == ["1", "2", "3"]
    assert "(retry 1)" in rows[1] and "retry" not in rows[0] + rows[2]


def test_the_switch_pauses_and_resumes_each_direction(api: Any) -> None:
    out = check(api.post("/orgs/acme/pause", {"outbound": True}), 200, "OrgSwitch")
    assert out == {"org": "acme", "outbound": "paused", "inbound": "on"}
    with api.store.session() as s:
        conn = s.scalar(select(OrgConnection).where(OrgConnection.name == "acme"))
        assert conn is not None and conn.outbound_paused and not conn.inbound_paused
    both = check(api.post("/orgs/acme/pause"), 200, "OrgSwitch")
    assert both["inbound"] == "paused"
    outbound = Queue("outbound", connection=api.redis)
    assert outbound.count == 0
    out = check(api.post("/orgs/acme/resume", {"outbound": True}), 200, "OrgSwitch")
    assert out == {"org": "acme", "outbound": "on", "inbound": "paused"}
    [job] = outbound.get_jobs()  # turned on: the held pushes are drained at once
    assert job.func_name == "bridge.writeback.jobs.drain_org"
    check_error(api.post("/orgs/nope/pause"), 404, "unknown_org", ["org"])
    check_error(api.post("/orgs/acme/pause", {"sideways": True}), 400, "validation_error")


def _referral_of(store: Store, push_id: int) -> Referral:
    with store.session() as s:
        push = s.get(Push, push_id)
        assert push is not None and push.referral_id is not None
        referral = s.get(Referral, push.referral_id)
        assert referral is not None
        s.expunge(referral)
        return referral


def test_repush_saves_the_fix_on_the_referral_only_when_asked(api: Any) -> None:
    """A STRING_TOO_LONG last name fixed on the push: without `apply_to_referral` the
    referral keeps its value (the default); with it the referral is edited as PATCH does —
    audited, in its field history — and the member field the push carries goes to the
    member. A field that does not come from the referral (Rating) stays the push's alone."""
    with api.store.session() as s:
        failed = s.scalar(select(Push).where(Push.state == "failed"))
        assert failed is not None
        failed_id, referral_id = failed.id, failed.referral_id
        referral = s.get(Referral, referral_id)
        assert referral is not None
        referral.last_name = "L" * 81
        before_company = referral.company
    out = check(
        api.post(f"/pushes/{failed_id}/repush", {"fields": {"LastName": "Lovelace"}}),
        202,
        "Push",
    )
    assert "saved_on_referral" not in out
    assert _referral_of(api.store, failed_id).last_name == "L" * 81
    with api.store.session() as s:
        s.get(Push, failed_id).state = "failed"  # type: ignore[union-attr]

    fix = {"LastName": "Lovelace", "Rating": "Hot", "Referring_Member_Phone__c": "+1 555 0100"}
    out = check(
        api.post(f"/pushes/{failed_id}/repush", {"fields": fix, "apply_to_referral": True}),
        202,
        "Push",
    )
    assert sorted(out["saved_on_referral"]) == ["last_name", "member.phone"]
    assert out["payload"]["overrides"] == fix
    referral = _referral_of(api.store, failed_id)
    assert (referral.last_name, referral.company) == ("Lovelace", before_company)
    assert "Rating" not in (referral.fields or {})
    body = check(api.get(f"/referrals/{referral_id}"), 200, "ReferralDetail")
    assert any(
        h["field"] == "last_name" and h["value"] == "Lovelace" and h["source"] == "local"
        for h in body["history"]
    ), body["history"]
    member = check(api.get(f"/members/{referral.member_id}"), 200, "Member")
    assert member["phone"] == "+1 555 0100"
    with api.store.session() as s:
        actions = [
            (a.action, a.object_id)
            for a in s.scalars(
                select(AuditLog).where(AuditLog.action.in_(("referral.update", "member.update")))
            )
        ]
    assert ("referral.update", str(referral_id)) in actions
    assert ("member.update", str(referral.member_id)) in actions


def test_a_fix_the_referral_cannot_take_is_refused_and_nothing_changes(api: Any) -> None:
    """The org takes any text in the member URL field; the member's URL must be http(s)."""
    with api.store.session() as s:
        failed = s.scalar(select(Push).where(Push.state == "failed"))
        assert failed is not None
        failed_id = failed.id
    check_error(
        api.post(
            f"/pushes/{failed_id}/repush",
            {"fields": {"Referring_Member_URL__c": "ftp://x.test"}, "apply_to_referral": True},
        ),
        400,
        "validation_error",
        ["Referring_Member_URL__c"],
    )
    with api.store.session() as s:
        assert s.get(Push, failed_id).state == "failed"  # type: ignore[union-attr]
