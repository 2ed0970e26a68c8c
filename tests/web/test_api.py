"""JSON API v1 on SQLite and PostgreSQL: success and error shapes of every endpoint."""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bridge.store import Store
from bridge.store.models import AuditLog, Push, Referral
from bridge.vocabulary import SCOPES
from tests.web.apitools import check, check_error
from tests.web.conftest import AuthActions
from tests.web.seed import Seeded, seed, token

pytestmark = pytest.mark.postgres


@dataclass
class Api:
    app: Flask
    client: FlaskClient
    seeded: Seeded
    token: str
    store: Store

    def h(self, tok: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {tok or self.token}"}

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get("/api/v1" + path, headers=kw.pop("headers", self.h()), **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.client.post(
            "/api/v1" + path, json=json, headers=kw.pop("headers", self.h()), **kw
        )

    def patch(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.client.patch(
            "/api/v1" + path, json=json, headers=kw.pop("headers", self.h()), **kw
        )

    def audit(self, action: str) -> list[AuditLog]:
        with self.store.session() as s:
            return list(s.scalars(select(AuditLog).where(AuditLog.action == action)))


@pytest.fixture
def api(store: Store, app_factory: Callable[..., Flask]) -> Api:
    seeded = seed(store)
    app = app_factory(store)
    return Api(app, app.test_client(), seeded, token(store, list(SCOPES)), store)


# ---- authentication -------------------------------------------------------------------------


def test_tokens_are_required_and_checked(api: Api) -> None:
    resp = api.client.get("/api/v1/entries")
    check_error(resp, 401, "unauthorized")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    check_error(api.get("/entries", headers={"Authorization": "Basic abc"}), 401, "unauthorized")
    check_error(api.get("/entries", headers=api.h("sfb_not-a-real-token")), 401, "unauthorized")
    read_only = token(api.store, ["entries:read"])
    check(api.get("/entries", headers=api.h(read_only)), 200, "EntryList")
    body = check_error(
        api.post(f"/entries/{api.seeded.ids['review_fuzzy']}/approve", headers=api.h(read_only)),
        403,
        "insufficient_scope",
    )
    assert "entries:write" in body["error"]["message"]


def test_revoked_tokens_stop_working(api: Api) -> None:
    from bridge.users import find_token, revoke_token

    secret = token(api.store, ["entries:read"])
    check(api.get("/entries", headers=api.h(secret)), 200, "EntryList")
    with api.store.session() as s:
        tok = find_token(s, secret)
        assert tok is not None and tok.last_used_at is not None
        revoke_token(s, tok.id, actor="test")
    check_error(api.get("/entries", headers=api.h(secret)), 401, "unauthorized")


def test_unknown_routes_methods_and_ids_are_json(api: Api) -> None:
    check_error(api.get("/nothing-here"), 404, "not_found")
    check_error(api.get("/entries/999999"), 404, "not_found")
    resp = api.client.delete("/api/v1/entries/1", headers=api.h())
    check_error(resp, 405, "method_not_allowed")
    assert "PATCH" in resp.headers["Allow"]
    check_error(api.post("/pushes/999999/repush"), 404, "not_found")
    huge = 10**20  # past a 64-bit id
    check_error(api.get(f"/entries/{huge}"), 404, "not_found")
    check_error(api.post(f"/pushes/{huge}/repush"), 404, "not_found")
    retry = api.post(f"/entries/{api.seeded.ids['review_fuzzy']}/retry", {"referral_id": huge})
    check_error(retry, 400, "validation_error", ["referral_id"])


# ---- entries --------------------------------------------------------------------------------


def test_list_entries_by_outcome_with_cursor_paging(api: Api) -> None:
    ids = api.seeded.ids
    body = check(api.get("/entries?outcome=review&limit=2"), 200, "EntryList")
    first = [e["id"] for e in body["data"]]
    assert len(first) == 2 and body["next_cursor"]
    body2 = check(
        api.get(f"/entries?outcome=review&limit=2&cursor={body['next_cursor']}"), 200, "EntryList"
    )
    rest = [e["id"] for e in body2["data"]]
    assert body2["next_cursor"] is None
    assert sorted(first + rest) == sorted(
        [ids["review_fuzzy"], ids["review_denied"], ids["review_partner"]]
    )
    assert first == sorted(first, reverse=True)
    check_error(api.get("/entries?outcome=maybe"), 400, "validation_error", ["outcome"])
    check_error(api.get("/entries?limit=0"), 400, "validation_error", ["limit"])
    check_error(api.get("/entries?limit=abc"), 400, "validation_error", ["limit"])
    check_error(api.get("/entries?cursor=%%%"), 400, "validation_error", ["cursor"])
    check_error(api.get("/entries?limit=%C2%B2"), 400, "validation_error", ["limit"])  # "²"
    huge = base64.urlsafe_b64encode(str(10**30).encode()).decode()
    check_error(api.get(f"/entries?cursor={huge}"), 400, "validation_error", ["cursor"])


def test_get_entry(api: Api) -> None:
    body = check(api.get(f"/entries/{api.seeded.ids['review_fuzzy']}"), 200, "Entry")
    assert body["outcome"] == "review"
    assert body["reasons"] == ["status_rule:0", "fuzzy_match", "review_fuzzy_match"]
    assert body["records"]["Lead"]["Email"] == "bob@buyer.test"
    assert body["candidates"][0]["public_id"] == "ref_0000"
    assert body["decision"]["to_status"] == "qualified"


def test_an_entry_has_its_reasons_in_the_words_the_entry_page_shows(api: Api) -> None:
    eid = api.seeded.ids["review_fuzzy"]
    body = check(api.get(f"/entries/{eid}"), 200, "Entry")
    words = body["reasons_in_words"]
    assert [w["code"] for w in words] == body["reasons"]
    assert words[0]["text"] == (
        "Status rule number 0 (counting from 0) matched and sets the status."
    )
    assert words[2]["text"] == ("Auto_process_fuzzy is off: a reviewer approves fuzzy matches.")
    AuthActions(api.client).login()
    page = api.client.get(f"/entries/{eid}").get_data(as_text=True)
    for w in words:
        assert html.escape(w["text"], quote=False) in page


def test_patch_entry_fields(api: Api) -> None:
    eid = api.seeded.ids["failed"]
    body = check(
        api.patch(f"/entries/{eid}", {"fields": {"Lead": {"Email": "eve@error.example"}}}),
        200,
        "Entry",
    )
    assert body["records"]["Lead"]["Email"] == "eve@error.example"
    assert body["records"]["Lead"]["LastName"] == "Error"  # other fields kept
    assert body["outcome"] == "failed"  # edited, not decided again
    [row] = api.audit("entry.edited")
    assert row.detail["before"] == {"Lead": {"Email": "eve@error.test"}}
    check_error(
        api.patch(f"/entries/{eid}", {"fields": {"Lead": {"Email": ["x"]}}}),
        400,
        "validation_error",
    )
    # a field neither the record nor the config knows is a typo, not a new field
    typo = check_error(
        api.patch(f"/entries/{eid}", {"fields": {"Lead": {"Emial": "x"}}}), 400, "unknown_field"
    )
    assert "did you mean Lead.Email?" in typo["error"]["message"]
    check_error(
        api.patch(f"/entries/{eid}", {"fields": {"Task": {"Subject": "x"}}}),
        400,
        "validation_error",
        ["fields.Task.[key]"],
    )
    check_error(
        api.patch(f"/entries/{eid}", {"fields": {"Contact": {"Email": "x@y.z"}}}),
        422,
        "unprocessable",
        ["fields.Contact"],
    )
    check_error(
        api.patch(f"/entries/{eid}", {"fields": {}, "extra": 1}),
        400,
        "validation_error",
        ["fields", "extra"],
    )
    check_error(
        api.patch(
            f"/entries/{api.seeded.ids['processed']}", {"fields": {"Opportunity": {"Name": "x"}}}
        ),
        409,
        "entry_state",
    )
    resp = api.client.patch(
        f"/api/v1/entries/{eid}", data="{not json", content_type="application/json", headers=api.h()
    )
    check_error(resp, 400, "invalid_json")


def test_a_chunked_body_that_is_not_json_is_refused(api: Api) -> None:
    eid = api.seeded.ids["review_fuzzy"]
    resp = api.client.post(
        f"/api/v1/entries/{eid}/approve",
        data=b"{not json",
        content_type="application/json",
        headers={**api.h(), "Transfer-Encoding": "chunked"},  # no Content-Length
        environ_overrides={"wsgi.input_terminated": True},  # as gunicorn sets for chunked
    )
    check_error(resp, 400, "invalid_json")
    assert api.get(f"/entries/{eid}").get_json()["outcome"] == "review"


def test_approve_reject_retry(api: Api) -> None:
    ids = api.seeded.ids
    body = check(api.post(f"/entries/{ids['review_fuzzy']}/approve"), 200, "Entry")
    assert body["outcome"] != "review"
    check_error(api.post(f"/entries/{ids['review_fuzzy']}/approve"), 409, "entry_state")
    check_error(
        api.post(f"/entries/{ids['review_denied']}/approve", {"force": True}),
        400,
        "validation_error",
        ["force"],
    )
    body = check(
        api.post(f"/entries/{ids['review_partner']}/reject", {"note": "spam"}), 200, "Entry"
    )
    assert body["outcome"] == "skipped"
    check_error(api.post(f"/entries/{ids['processed']}/reject"), 409, "entry_state")
    check_error(
        api.post(f"/entries/{ids['failed']}/retry", {"referral_id": 999999}),
        422,
        "unprocessable",
        ["referral_id"],
    )
    body = check(
        api.post(
            f"/entries/{ids['failed']}/retry", {"fields": {"Lead": {"Referral_Code__c": "ALICE"}}}
        ),
        200,
        "Entry",
    )
    assert body["records"]["Lead"]["Referral_Code__c"] == "ALICE"
    assert body["outcome"] == "processed" and "member_match" in body["reasons"]
    assert [a.actor.split(" ")[0] for a in api.audit("entry.approved")] == ["admin@example.com"]


def test_submit_an_entry_directly(api: Api) -> None:
    record = {
        "Id": "00Q0000000000XYAAA",
        "FirstName": "Zed",
        "LastName": "Zulu",
        "Email": "zed@zulu.test",
        "SystemModstamp": "2026-01-01T00:00:00.000+0000",
    }
    payload = {
        "org": "acme",
        "sobject_type": "Lead",
        "record": record,
        "related": {"Account": None},
    }
    first = check(api.post("/entries", payload), 201, "Entry")
    assert first["source"] == "api" and first["records"]["Lead"]["Email"] == "zed@zulu.test"
    # decided at once by the receiver: no Status field for the status rule -> missing data
    assert first["outcome"] == "failed" and first["reasons"] == ["missing_data"]
    changed = {
        **record,
        "Status": "Qualified",
        "Email": "BOB@buyer.test",
        "SystemModstamp": "2026-01-02T00:00:00.000+0000",
    }
    known = check(api.post("/entries", {**payload, "record": changed}), 201, "Entry")
    assert known["outcome"] == "review" and "fuzzy_match" in known["reasons"]
    again = check(api.post("/entries", payload), 200, "Entry")
    assert again["id"] == first["id"]
    check_error(api.post("/entries", {**payload, "org": "nope"}), 422, "org_not_connected", ["org"])
    check_error(
        api.post("/entries", {"org": "acme", "record": {}}),
        400,
        "validation_error",
        ["sobject_type", "record.Id"],
    )
    check_error(
        api.post("/entries", {**payload, "sobject_type": "Task"}),
        400,
        "validation_error",
        ["sobject_type"],
    )
    check_error(api.post("/entries", [1, 2]), 400, "invalid_json")


# ---- referrals, members, activities ---------------------------------------------------------


def test_create_and_list_referrals(api: Api) -> None:
    body = check(
        api.post(
            "/referrals",
            {
                "program": "main",
                "first_name": "Quinn",
                "last_name": "O'Neil",
                "email": "Quinn.ONeil@Example.COM",
                "company": "Quinn Holdings Inc.",
                "phone": "+1 (555) 010-2030",
                "external_id": "crm-42",
                "member": {"referral_code": "ALICE"},
            },
        ),
        201,
        "ReferralCreated",
    )
    ref, push = body["referral"], body["push"]
    assert ref["status"] == "pending" and ref["member_id"] == api.seeded.ids["member"]
    assert push["state"] == "pending" and push["external_id"] == ref["public_id"]
    assert push["external_id_field"] == "Referral_ID__c" and push["sobject_type"] == "Lead"
    assert push["payload"]["fields"]["Email"] == "Quinn.ONeil@Example.COM"
    assert push["payload"]["fields"]["Referral_ID__c"] == ref["public_id"]
    assert "no Redis configured" in push["note"]  # this app has no Redis: saved, not queued
    with api.store.session() as s:
        row = s.get(Referral, ref["id"])
        assert row is not None
        assert row.email_key == "quinn.oneil@example.com"
        assert row.name_key and "quinn" in row.name_key
        assert row.phone_key == "5550102030"
    check_error(
        api.post("/referrals", {"program": "main", "last_name": "X", "external_id": "crm-42"}),
        409,
        "duplicate",
        ["external_id"],
    )
    check_error(
        api.post("/referrals", {"program": "nope", "last_name": "X"}),
        422,
        "unknown_program",
        ["program"],
    )
    check_error(
        api.post(
            "/referrals",
            {"program": "main", "last_name": "X", "member": {"referral_code": "NOBODY"}},
        ),
        422,
        "unknown_member",
        ["member"],
    )
    check_error(
        api.post("/referrals", {"program": "main", "email": "not-an-email"}),
        400,
        "validation_error",
        ["last_name", "email"],
    )
    listed = check(api.get("/referrals?status=denied"), 200, "ReferralList")
    assert [r["email"] for r in listed["data"]] == ["dan@denied.test"]
    listed = check(api.get("/referrals?email=QUINN.ONEIL@example.com"), 200, "ReferralList")
    assert [r["id"] for r in listed["data"]] == [ref["id"]]
    check_error(api.get("/referrals?status=lost"), 400, "validation_error", ["status"])


def test_email_lookups_use_the_stored_key_that_matching_uses(api: Api) -> None:
    # Stored keys fold Gmail's dots and +tags (bridge.matchkeys.email_key); a lookup that
    # only lower-cased what it was given found nothing for another spelling of the mailbox.
    member = check(
        api.post("/members", {"program": "main", "name": "Jo Gmail", "email": "jo.gee@gmail.com"}),
        201,
        "Member",
    )
    body = check(
        api.post(
            "/referrals",
            {
                "program": "main",
                "last_name": "Doe",
                "email": "janedoe@gmail.com",
                "member": {"email": "JoGee+members@GoogleMail.com"},
            },
        ),
        201,
        "ReferralCreated",
    )
    assert body["referral"]["member_id"] == member["id"]
    listed = check(
        api.get("/referrals", query_string={"email": "Jane.Doe+ref@Gmail.com"}), 200, "ReferralList"
    )
    assert [r["id"] for r in listed["data"]] == [body["referral"]["id"]]
    # Not an email address at all: nothing matches (not the referrals without an email).
    listed = check(
        api.get("/referrals", query_string={"email": "+@gmail.com"}), 200, "ReferralList"
    )
    assert listed["data"] == []


def test_create_members(api: Api) -> None:
    body = check(
        api.post(
            "/members",
            {
                "program": "main",
                "name": "Mo Member",
                "email": "mo@members.test",
                "referral_code": "MO1",
                "external_id": "m-2",
            },
        ),
        201,
        "Member",
    )
    assert body["referral_code"] == "MO1"
    check_error(
        api.post("/members", {"program": "main", "name": "Again", "referral_code": "MO1"}),
        409,
        "duplicate",
        ["referral_code"],
    )
    check_error(api.post("/members", {"program": "main"}), 400, "validation_error", ["name"])


def test_activities_are_idempotent_on_their_content(api: Api) -> None:
    activity = {
        "org": "acme",
        "activity_id": "act-1",
        "kind": "meeting",
        "subject": "Intro call",
        "occurred_at": "2026-03-01T10:00:00Z",
        "who_email": "bob@buyer.test",
    }
    first = check(api.post("/activities", activity), 201, "Push")
    assert first["sobject_type"] == "Event" and first["external_id"] == "act-1"
    assert first["external_id_field"] == "SFBridge_Activity_Id__c" and first["state"] == "pending"
    again = check(api.post("/activities", activity), 200, "Push")
    assert again["id"] == first["id"]
    changed = check(
        api.post("/activities", {**activity, "subject": "Intro call (moved)"}), 201, "Push"
    )
    assert changed["id"] != first["id"] and changed["external_id"] == "act-1"  # an update
    check_error(
        api.post("/activities", {**activity, "activity_id": "a2", "org": "zzz"}),
        422,
        "unknown_org",
        ["org"],
    )
    check_error(
        api.post("/activities", {**activity, "referral_id": 999999}),
        422,
        "unknown_referral",
        ["referral_id"],
    )
    check_error(
        api.post("/activities", {**activity, "kind": "fax"}), 400, "validation_error", ["kind"]
    )


# ---- pushes ---------------------------------------------------------------------------------


def test_list_and_repush_pushes(api: Api) -> None:
    ids = api.seeded.ids
    body = check(api.get("/pushes?state=failed"), 200, "PushList")
    [failed] = body["data"]
    assert failed["error"] == {
        "code": "STRING_TOO_LONG",
        "message": "Company: data value too large",
        "fields": ["Company"],
    }
    body = check(api.post(f"/pushes/{ids['push_failed']}/repush"), 202, "Push")
    assert body["state"] == "pending" and body["error"] is None and body["attempts"] == 0
    with api.store.session() as s:
        push = s.get(Push, ids["push_failed"])
        assert push is not None and push.state == "pending"
    check_error(api.post(f"/pushes/{ids['push_sent']}/repush"), 409, "push_state")
    check_error(api.get("/pushes?state=lost"), 400, "validation_error", ["state"])
    assert [a.object_id for a in api.audit("push.repush")] == [str(ids["push_failed"])]
    check_error(api.post(f"/pushes/{ids['push_pending']}/repush"), 409, "push_state")


def test_new_pushes_are_queued_for_the_writeback(
    sqlite_store: Store, app_factory: Callable[..., Flask], redis_url: str
) -> None:
    import redis
    from rq import Queue

    seed(sqlite_store)
    app = app_factory(sqlite_store, redis_url=redis_url)
    secret = token(sqlite_store, list(SCOPES))
    client = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    body = check(
        client.post(
            "/api/v1/activities",
            headers=headers,
            json={
                "org": "acme",
                "activity_id": "call-7",
                "kind": "call",
                "subject": "Catch-up",
                "occurred_at": "2026-03-02T09:30:00Z",
                "who_email": "carol@client.test",
            },
        ),
        201,
        "Push",
    )
    assert body["note"] == "queued for sending"
    outbound = Queue("outbound", connection=redis.Redis.from_url(redis_url))
    [job] = outbound.get_jobs()
    # the org's drain, which takes every pending push of the org after the coalescing window
    with sqlite_store.session() as s:
        org_id = s.get(Push, body["id"]).org_connection_id  # type: ignore[union-attr]
    assert job.func_name == "bridge.writeback.jobs.drain_org" and job.args == ([org_id],)
    failed = check(client.get("/api/v1/pushes?state=failed", headers=headers), 200, "PushList")
    repushed = check(
        client.post(f"/api/v1/pushes/{failed['data'][0]['id']}/repush", headers=headers),
        202,
        "Push",
    )
    # the same org's drain is still queued: it takes the repushed push too
    assert repushed["note"] == "queued for sending" and outbound.count == 1


def test_admin_only_scopes(api: Api) -> None:
    import pytest as _pytest

    from bridge.errors import UsageError
    from bridge.store.models import User

    with _pytest.raises(UsageError, match="need an admin"):
        token(api.store, ["pushes:write"], email="reviewer@example.com")
    reviewer_read = token(api.store, ["pushes:read"], email="reviewer@example.com")
    check(api.get("/pushes", headers=api.h(reviewer_read)), 200, "PushList")
    admin_write = token(api.store, ["pushes:write"])
    with api.store.session() as s:
        admin = s.scalars(select(User).where(User.email == "admin@example.com")).one()
        admin.role = "reviewer"  # demoted after the token was made
    check_error(
        api.post(f"/pushes/{api.seeded.ids['push_failed']}/repush", headers=api.h(admin_write)),
        403,
        "insufficient_scope",
    )


def test_a_missing_config_file_is_a_clear_error_not_a_500(api: Api, config_file: Path) -> None:
    config_file.unlink()  # e.g. SFBRIDGE_CONFIG points at a file that was moved
    body = check_error(
        api.post(f"/entries/{api.seeded.ids['review_fuzzy']}/approve"), 422, "config_error"
    )
    assert "sfbridge.yaml" in body["error"]["message"]
    payload = {"org": "acme", "sobject_type": "Lead", "record": {"Id": "00Q0000000000XYAAA"}}
    check_error(api.post("/entries", payload), 422, "config_error")
    activity = {
        "org": "acme",
        "activity_id": "a-1",
        "kind": "call",
        "subject": "Call",
        "occurred_at": "2026-01-01T10:00:00Z",
    }
    check_error(api.post("/activities", activity), 422, "config_error")
    assert api.get(f"/entries/{api.seeded.ids['review_fuzzy']}").get_json()["outcome"] == "review"


def test_unexpected_failures_are_json_too(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge.web import actions

    def broken(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(actions, "get_entry", broken)
    resp = api.get(f"/entries/{api.seeded.ids['failed']}")
    body = check_error(resp, 500, "internal_server_error")
    assert "database on fire" not in body["error"]["message"]  # no internals leak
