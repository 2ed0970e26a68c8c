"""Lead routing through the API on SQLite and PostgreSQL: the score on create and PATCH, a
referral below the criteria stays local with its reason, a raised score waits for the delay,
a manual sync makes the push at once (audited), and bad input is a 4xx JSON error."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from sqlalchemy import select

from bridge.store import Store
from bridge.store.models import AuditLog, FieldChange, OrgConnection, Push, Referral
from bridge.vocabulary import SCOPES
from bridge.writeback import users
from bridge.writeback.describes import KEY
from bridge.writeback.fit import field_rules
from tests.web.apitools import check, check_error
from tests.web.conftest import AuthActions
from tests.web.seed import CONFIG_YAML, seed, token

pytestmark = pytest.mark.postgres

ROUTING = """\
    users:
      sally: {email: sally@acme.example}
    routing:
      minimum_score: two
      delay: 15m
      lead_owner: {fallback: sally}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "sfbridge.yaml"
    path.write_text(CONFIG_YAML + ROUTING, encoding="utf-8")
    return path


class Client:
    def __init__(self, app: Flask, tok: str) -> None:
        self.client = app.test_client()
        self.headers = {"Authorization": f"Bearer {tok}"}

    def call(self, method: str, path: str, json: Any = None) -> Any:
        return self.client.open("/api/v1" + path, method=method, json=json, headers=self.headers)


@pytest.fixture
def api(store: Store, app_factory: Callable[..., Flask]) -> Client:
    seed(store)
    return Client(app_factory(store), token(store, list(SCOPES)))


def referral_pushes(store: Store, referral_id: int) -> list[Push]:
    with store.session() as s:
        return list(
            s.scalars(select(Push).where(Push.referral_id == referral_id, Push.kind == "referral"))
        )


def create(api: Client, **extra: Any) -> Any:
    body = {"program": "main", "last_name": "Routed", "email": "routed@example.com", **extra}
    return check(api.call("POST", "/referrals", body), 201, "ReferralCreated")


def test_below_criteria_stays_local_and_says_why(api: Client, store: Store) -> None:
    out = create(api, score=1, meeting_owner="sally")
    rid = out["referral"]["id"]
    assert out["push"] is None
    assert out["referral"]["routing"]["score"] == 1
    assert out["referral"]["routing"]["meeting_owner"] == "sally"
    got = check(api.call("GET", f"/referrals/{rid}"), 200, "ReferralDetail")
    assert got["not_sent_reason"] == "score 1 is below the minimum of 2"
    assert referral_pushes(store, rid) == []


def test_raising_the_score_starts_the_delay(api: Client, store: Store) -> None:
    rid = create(api, score=0)["referral"]["id"]
    out = check(api.call("PATCH", f"/referrals/{rid}", {"score": 2}), 200, "ReferralUpdated")
    assert out["pushes"] == []  # held for the delay, not sent yet
    assert out["routing"]["send_due_at"] is not None
    got = check(api.call("GET", f"/referrals/{rid}"), 200, "ReferralDetail")
    assert got["not_sent_reason"].startswith("waiting 0:15:00 after qualifying, until ")
    with store.session() as s:
        actions = s.scalars(select(AuditLog.action).where(AuditLog.object_id == str(rid))).all()
    assert "referral.routing" in actions


def test_with_no_minimum_a_referral_goes_at_once(
    store: Store, app_factory: Callable[..., Flask], config_file: Path
) -> None:
    config_file.write_text(CONFIG_YAML, encoding="utf-8")  # no routing: as before
    seed(store)
    api = Client(app_factory(store), token(store, list(SCOPES)))
    out = create(api)
    assert out["push"] is not None and out["push"]["state"] == "pending"


def test_manual_sync_pushes_now_and_is_audited(api: Client, store: Store) -> None:
    rid = create(api, score=0)["referral"]["id"]
    out = check(api.call("POST", f"/referrals/{rid}/sync"), 200, "ReferralCreated")
    assert out["push"]["state"] == "pending"
    assert [p.id for p in referral_pushes(store, rid)] == [out["push"]["id"]]
    got = check(api.call("GET", f"/referrals/{rid}"), 200, "ReferralDetail")
    assert got["not_sent_reason"] == "queued to be sent"
    with store.session() as s:
        audit = s.scalar(
            select(AuditLog).where(
                AuditLog.action == "referral.sync", AuditLog.object_id == str(rid)
            )
        )
    assert audit is not None and audit.detail["push_id"] == out["push"]["id"]
    again = check(api.call("POST", f"/referrals/{rid}/sync"), 200, "ReferralCreated")
    assert again["push"]["id"] == out["push"]["id"]  # one push per referral


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/referrals", {"program": "main", "last_name": "X", "score": -1}, 400,
         "validation_error"),
        ("POST", "/referrals", {"program": "main", "last_name": "X", "score": "three"}, 400,
         "validation_error"),
        ("PATCH", "/referrals/{rid}", {"score": "high"}, 400, "validation_error"),
        ("PATCH", "/referrals/{rid}", {"conversation_closed_at": "yesterday"}, 400,
         "validation_error"),
        ("POST", "/referrals/999999/sync", None, 404, "not_found"),
        ("POST", "/referrals/{rid}/sync", {"now": True}, 400, "validation_error"),
    ],
)  # fmt: skip
def test_bad_routing_input_is_a_clear_error(
    api: Client, store: Store, method: str, path: str, body: Any, status: int, code: str
) -> None:
    rid = create(api, score=0)["referral"]["id"]
    check_error(api.call(method, path.format(rid=rid), body), status, code)
    with store.session() as s:
        assert s.get(Referral, rid).score == 0  # type: ignore[union-attr]


def test_the_referral_page_says_why_and_syncs_by_hand(
    app_factory: Callable[..., Flask], store: Store
) -> None:
    seeded = seed(store)
    app = app_factory(store)
    client = app.test_client()
    auth = AuthActions(client)
    rid = seeded.ids["ref_carol"]
    with store.session() as s:
        carol = s.get(Referral, rid)
        assert carol is not None
        carol.sf_lead_id = carol.sf_contact_id = None
        carol.score = 1
    auth.login()
    html = client.get(f"/referrals/{rid}").get_data(as_text=True)
    assert "score 1 is below the minimum of 2" in html and 'id="sync-now"' in html
    page = auth.post(f"/referrals/{rid}/sync", {}, follow_redirects=True).get_data(as_text=True)
    assert "queued to be sent" in page  # the reason now
    with store.session() as s:
        [push] = [p for p in referral_pushes(store, rid) if p.state == "pending"]
        audit = s.scalar(select(AuditLog).where(AuditLog.action == "referral.sync"))
        assert audit is not None and audit.actor == "reviewer@example.com"
        assert audit.detail["push_id"] == push.id


def test_the_admin_page_lists_the_user_mapping(
    app_factory: Callable[..., Flask], store: Store
) -> None:
    seed(store)
    client = app_factory(store).test_client()
    with store.session() as s:
        org_id = s.scalar(select(OrgConnection.id))
    assert org_id is not None
    users.save(
        store,
        org_id,
        users.UserMap(
            {"sally": None}, {"sally": "no Salesforce user has the email sally@acme.example"}
        ),
    )
    AuthActions(client).login("admin@example.com")
    html = client.get("/admin/users").get_data(as_text=True)
    assert 'id="user-mapping"' in html and "sally" in html
    assert "no Salesforce user has the email sally@acme.example" in html


def test_outbound_off_is_the_reason_while_paused(api: Client, store: Store) -> None:
    rid = create(api, score=0)["referral"]["id"]
    check(api.call("POST", f"/referrals/{rid}/sync"), 200, "ReferralCreated")
    with store.session() as s:
        for conn in s.scalars(select(OrgConnection)):
            conn.outbound_paused = True
    got = check(api.call("GET", f"/referrals/{rid}"), 200, "ReferralDetail")
    assert got["not_sent_reason"] == (
        "the integration's outbound direction is off (saved: it is sent when outbound is resumed)"
    )


def test_a_held_referral_is_still_refused_at_the_door_when_it_cannot_fit(
    sqlite_store: Store, app_factory: Callable[..., Flask], redis_url: str
) -> None:
    seed(sqlite_store)
    client = redis.Redis.from_url(redis_url)
    lead = {"fields": [{"name": "LastName", "type": "string", "length": 80}]}
    client.set(KEY.format(org="acme", sobject="Lead"), json.dumps(field_rules(lead)))
    app = app_factory(sqlite_store, redis_url=redis_url)
    api = Client(app, token(sqlite_store, list(SCOPES)))
    body = {"program": "main", "last_name": "x" * 81, "score": 0}  # below the criteria
    check_error(api.call("POST", "/referrals", body), 400, "value_does_not_fit", ["last_name"])
    with sqlite_store.session() as s:
        assert s.scalar(select(Referral).where(Referral.last_name == "x" * 81)) is None


# ---- the owner rep ---------------------------------------------------------------------------


def test_an_owner_given_on_create_is_the_referrals_owner(api: Client, store: Store) -> None:
    out = create(api, score=0, owner="sally")
    assert out["referral"]["owner"] == "sally"
    with store.session() as s:
        assert s.get(Referral, out["referral"]["id"]).owner == "sally"  # type: ignore[union-attr]


def test_a_patched_owner_is_kept_in_the_history_and_pushed_as_the_owner_rep(
    store: Store, app_factory: Callable[..., Flask]
) -> None:
    rid = seed(store).ids["ref_carol"]  # already a Lead in Salesforce
    api = Client(app_factory(store), token(store, list(SCOPES)))
    out = check(api.call("PATCH", f"/referrals/{rid}", {"owner": "sally"}), 200, "ReferralUpdated")
    assert out["owner"] == "sally"
    [pushed] = out["pushes"]
    with store.session() as s:
        push = s.get(Push, pushed["id"])
        assert push is not None and push.kind == "field_update"
        assert push.payload["owner"] == "sally"  # OwnerId from the user mapping at send time
        change = s.scalar(
            select(FieldChange).where(FieldChange.referral_id == rid, FieldChange.field == "owner")
        )
        assert change is not None and (change.value, change.source) == ("sally", "local")
        actions = s.scalars(select(AuditLog.action).where(AuditLog.object_id == str(rid))).all()
    assert "referral.update" in actions
    got = check(api.call("GET", f"/referrals/{rid}"), 200, "ReferralDetail")
    assert got["owner"] == "sally"


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("POST", {"program": "main", "last_name": "X", "owner": "mallory"}),
        ("PATCH", {"owner": "mallory"}),
        ("PATCH", {"owner": "mallory", "first_name": "Changed"}),
    ],
)
def test_an_owner_not_in_users_is_refused_naming_the_field(
    api: Client, store: Store, method: str, body: Any
) -> None:
    rid = create(api, score=0, owner="sally")["referral"]["id"]
    path = "/referrals" if method == "POST" else f"/referrals/{rid}"
    err = check_error(api.call(method, path, body), 422, "unknown_owner", ["owner"])
    assert "mallory" in err["error"]["message"] and "sally" in err["error"]["message"]
    with store.session() as s:
        kept = s.get(Referral, rid)
        assert kept is not None and (kept.owner, kept.first_name) == ("sally", None)
        assert s.scalar(select(Referral).where(Referral.last_name == "X")) is None
