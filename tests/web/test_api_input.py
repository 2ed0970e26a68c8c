"""Bad input never gets a 500 (SPEC §10), on SQLite and PostgreSQL: each case here was a 500
(or a silent loss) before, and is now a clear 4xx JSON error or an entry saved with its reason.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, text

from bridge.store import Store
from bridge.store.models import InboundEvent, Referral, SalesEntry
from bridge.vocabulary import SCOPES
from bridge.web.inputs import MAX_JSON_DEPTH
from tests.web.apitools import check, check_error
from tests.web.seed import seed, token
from tests.web.test_api import Api

pytestmark = pytest.mark.postgres

LEAD = {
    "Id": "00Q000000000ZZZAAA",
    "FirstName": "Nia",
    "LastName": "Newcomer",
    "Email": "nia@new.test",
    "SystemModstamp": "2026-01-01T00:00:00.000+0000",
}


@pytest.fixture
def api(store: Store, app_factory: Callable[..., Flask]) -> Api:
    seeded = seed(store)
    app = app_factory(store)
    return Api(app, app.test_client(), seeded, token(store, list(SCOPES)), store)


def raw_post(api: Api, path: str, data: str | bytes, **headers: str) -> Any:
    return api.client.post(
        "/api/v1" + path,
        data=data,
        headers={**api.h(), "Content-Type": "application/json", **headers},
    )


def entry(record: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"org": "acme", "sobject_type": "Lead", "record": record or dict(LEAD), **extra}


@pytest.mark.parametrize(
    "path", ["/entries", "/referrals", "/members", "/activities", "/entries/1/retry"]
)
def test_deeply_nested_json_is_refused_on_every_json_endpoint(api: Api, path: str) -> None:
    for depth in (MAX_JSON_DEPTH + 1, 1000, 100_000):
        deep = '{"record": ' + "[" * depth + "]" * depth + "}"
        check_error(raw_post(api, path, deep), 400, "too_deep")
    # nesting within the limit is fine as far as depth goes (the field's own rule decides)
    resp = raw_post(api, path, '{"x": [[[]]]}')
    assert resp.status_code in (400, 404, 422) and resp.get_json()["error"]["code"] != "too_deep"


@pytest.mark.parametrize(
    "value", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"], ids=lambda v: v
)
def test_nan_and_infinity_are_refused_never_stored(api: Api, value: str) -> None:
    body = (
        '{"org": "acme", "sobject_type": "Lead", "record": {"Id": "00Q000000000ZZZAAA", '
        f'"AnnualRevenue": {value}}}}}'
    )
    check_error(raw_post(api, "/entries", body), 400, "invalid_json")
    body = '{"program": "main", "last_name": "X", "fields": {"Score__c": ' + value + "}}"
    check_error(raw_post(api, "/referrals", body), 400, "invalid_json")
    with api.store.session() as s:
        assert s.scalar(select(SalesEntry).where(SalesEntry.record_id == LEAD["Id"])) is None
    # every list stays valid JSON
    assert api.get("/entries").get_json() is not None


def test_a_nan_stored_before_is_written_as_null_not_invalid_json(
    sqlite_store: Store, app_factory: Callable[..., Flask]
) -> None:
    """SQLite kept what older versions let through (PostgreSQL's json refuses NaN)."""
    seeded = seed(sqlite_store)
    app = app_factory(sqlite_store)
    api = Api(app, app.test_client(), seeded, token(sqlite_store, list(SCOPES)), sqlite_store)
    with api.store.session() as s:
        entry = s.get(SalesEntry, api.seeded.ids["review_fuzzy"])
        assert entry is not None
        entry.decision = {**entry.decision, "score": float("nan"), "max": float("inf")}
    raw = api.get("/entries").get_data(as_text=True)
    body = json.loads(raw, parse_constant=lambda name: pytest.fail(f"{name} in the output"))
    stored = next(e for e in body["data"] if e["id"] == api.seeded.ids["review_fuzzy"])
    assert stored["decision"]["score"] is None and stored["decision"]["max"] is None


@pytest.mark.parametrize(
    "record_id",
    [["00Q000000000ZZZAAA"], {"x": 1}, 123456789012345678, True, None, "00Q" + "A" * 16, "short"],
    ids=["list", "object", "number", "bool", "null", "19 chars", "too short"],
)
def test_a_record_id_that_is_not_a_salesforce_id_is_refused(api: Api, record_id: Any) -> None:
    check_error(
        api.post("/entries", entry({**LEAD, "Id": record_id})),
        400,
        "validation_error",
        ["record.Id"],
    )


def test_a_related_records_id_must_be_a_salesforce_id_too(api: Api) -> None:
    """It would be written to the referral's sf_account_id (18 characters)."""
    check_error(
        api.post("/entries", entry(related={"Account": {"Id": "001" + "A" * 297}})),
        400,
        "validation_error",
        ["related.Account.Id"],
    )
    body = check(
        api.post("/entries", entry(related={"Account": {"Name": "No Id Ltd"}, "Contact": None})),
        201,
        "Entry",
    )
    assert body["records"]["Account"] == {"Name": "No Id Ltd"}


def test_an_entry_without_a_record_id_is_refused(api: Api) -> None:
    record = {k: v for k, v in LEAD.items() if k != "Id"}
    check_error(api.post("/entries", entry(record)), 400, "validation_error", ["record.Id"])


def test_an_entry_without_systemmodstamp_is_idempotent_on_its_content(api: Api) -> None:
    record = {k: v for k, v in LEAD.items() if k != "SystemModstamp"}
    first = check(api.post("/entries", entry(record)), 201, "Entry")
    again = check(api.post("/entries", entry(record)), 200, "Entry")
    assert again["id"] == first["id"]
    other = check(api.post("/entries", entry({**record, "Email": "nia2@new.test"})), 201, "Entry")
    assert other["id"] != first["id"]


@pytest.mark.parametrize(
    "stamp", ["2026-01-01T00:00:00.000+0000" + "0" * 230, "yesterday", 20260101, ""]
)
def test_a_systemmodstamp_that_is_not_a_timestamp_is_refused(api: Api, stamp: Any) -> None:
    check_error(
        api.post("/entries", entry({**LEAD, "SystemModstamp": stamp})),
        400,
        "validation_error",
        ["record.SystemModstamp"],
    )


def test_field_names_must_be_salesforce_field_names(api: Api) -> None:
    check_error(
        api.post("/entries", entry({**LEAD, "not a field": 1})),
        400,
        "validation_error",
        ["record"],
    )
    check_error(
        api.post("/entries", entry(previous={"Sta tus": "Open"})),
        400,
        "validation_error",
    )


def test_nul_characters_are_refused_in_bodies_queries_and_forms(api: Api) -> None:
    check_error(
        api.post("/entries", entry({**LEAD, "LastName": "New\x00comer"})), 400, "invalid_text"
    )
    check_error(
        api.post("/referrals", {"program": "main", "last_name": "a\x00b"}), 400, "invalid_text"
    )
    check_error(api.post("/entries", entry({**LEAD, "Last\x00Name": "x"})), 400, "invalid_text")
    check_error(api.get("/referrals?email=a%00b@x.test"), 400, "invalid_text", ["email"])
    check_error(api.get("/referrals?program=ma%00in"), 400, "invalid_text", ["program"])
    # the console too (a 400 page, not a database error)
    assert api.client.get("/entries?q=a%00b").status_code == 400


@pytest.mark.parametrize("big", [2**31, 2**31 + 1, 2**32, 2**62, 2**63 - 1])
def test_ids_and_cursors_from_2_31_up_are_answered(api: Api, big: int) -> None:
    check_error(api.get(f"/entries/{big}"), 404, "not_found")
    check_error(api.post(f"/entries/{big}/approve"), 404, "not_found")
    check_error(api.post(f"/pushes/{big}/repush"), 404, "not_found")
    cursor = base64.urlsafe_b64encode(str(big).encode()).decode().rstrip("=")
    assert check(api.get(f"/entries?cursor={cursor}"), 200, "EntryList")["data"]
    check_error(
        api.post("/activities", {**_activity(), "referral_id": big}), 422, "unknown_referral"
    )
    review = api.seeded.ids["review_fuzzy"]
    check_error(api.post(f"/entries/{review}/retry", {"referral_id": big}), 422, "unprocessable")


def test_rows_with_ids_from_2_31_up_are_stored_on_postgresql(postgres_store: Store) -> None:
    """The columns are 64-bit (migration 0002_inputhard), and so are the sequences."""
    seed(postgres_store)
    with postgres_store.session() as s:
        s.execute(text("SELECT setval('sales_entries_id_seq', 3000000000)"))
        entry = SalesEntry(source="api", sobject_type="Lead", change_type="updated")
        s.add(entry)
        s.flush()
        assert entry.id == 3000000001
        s.execute(text("SELECT setval('referrals_id_seq', 5000000000)"))
        program = s.scalars(select(Referral.program_id)).first()
        referral = Referral(public_id="RBIG", program_id=program, status="pending")
        s.add(referral)
        s.flush()
        entry.referral_id = referral.id
    with postgres_store.session() as s:
        assert s.get(SalesEntry, 3000000001).referral_id == 5000000001  # type: ignore[union-attr]


def _activity() -> dict[str, Any]:
    return {
        "org": "acme",
        "activity_id": "act-big-1",
        "kind": "call",
        "subject": "Call",
        "occurred_at": "2026-01-01T10:00:00Z",
    }


def test_a_300_character_company_by_member_match_is_saved_failed_with_its_reason(
    api: Api,
) -> None:
    record = {**LEAD, "Status": "Open", "Company": "C" * 300, "Referral_Code__c": "ALICE"}
    body = check(api.post("/entries", entry(record)), 201, "Entry")
    assert body["outcome"] == "failed"
    assert body["reasons"][-1] == "value_too_long"
    assert "company has 300 characters, 255 fit" in body["error"]
    with api.store.session() as s:
        saved = s.get(SalesEntry, body["id"])
        assert saved is not None and saved.records["Lead"]["Company"] == "C" * 300  # not lost
        assert s.scalar(select(Referral).where(Referral.email == "nia@new.test")) is None
        assert s.scalar(select(InboundEvent).where(InboundEvent.record_id == LEAD["Id"]))
    # edited to fit, the retry creates the referral
    api.patch(f"/entries/{body['id']}", {"fields": {"Lead": {"Company": "Short Ltd"}}})
    retried = check(api.post(f"/entries/{body['id']}/retry", {}), 200, "Entry")
    assert retried["outcome"] == "processed" and "referral_created" in retried["reasons"]


def test_oversized_bodies_get_413_as_json(api: Api) -> None:
    limit = api.app.config["MAX_CONTENT_LENGTH"]
    big = '{"org": "' + "x" * limit + '"}'
    check_error(raw_post(api, "/entries", big), 413, "request_entity_too_large")
    # chunked: no Content-Length, the limit still holds while the body is read
    resp = api.client.post(
        "/api/v1/entries",
        data=big.encode(),
        content_type="application/json",
        headers={**api.h(), "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},  # as gunicorn sets for chunked
    )
    check_error(resp, 413, "request_entity_too_large")


@pytest.mark.parametrize(
    ("email", "accepted"),
    [
        ("jane.doe+ref@example.co.uk", True),
        ("a..b@example.test", True),  # Salesforce allows consecutive dots inside…
        ("trailing.@example.test", True),  # …and one at the end of the local part
        ("o'neil&co{1}@example.test", True),
        (".lead@example.test", False),  # but not at the start
        ("no-domain-dot@example", False),
        ("two@@example.test", False),
        ("space inside@example.test", False),
        ("under_score@exa_mple.test", False),  # the domain: letters, digits, dashes
        ("x" * 70 + "@example.test", False),  # 83 characters: Email fields hold 80
    ],
)
def test_emails_are_validated_as_salesforce_validates_them(
    api: Api, email: str, accepted: bool
) -> None:
    resp = api.post("/members", {"program": "main", "name": "M", "email": email})
    if accepted:
        check(resp, 201, "Member")
    else:
        check_error(resp, 400, "validation_error", ["email"])
