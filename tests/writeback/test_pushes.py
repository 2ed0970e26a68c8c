"""Push lifecycle on SQLite and PostgreSQL against an HTTP double of Salesforce's REST API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import responses
from sqlalchemy import func, inspect, select

from bridge.config import OrgConfig
from bridge.errors import UsageError
from bridge.store import Store
from bridge.store.models import (
    AuditLog,
    Member,
    OrgConnection,
    Program,
    Push,
    Referral,
    ReferralStatusChange,
)
from bridge.writeback import (
    MAX_ATTEMPTS,
    queue_activity,
    queue_field_update,
    queue_referral_add,
    repush,
)
from bridge.writeback.pushes import claim
from bridge.writeback.sender import send
from tests import factories
from tests.writeback.sfdouble import SalesforceDouble

NOW = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)

# Decisions that do not depend on the database run on SQLite only; the push lifecycle (save,
# absorb duplicates, errors, retries, repush, denial, races) runs on both.
SQLITE_ONLY = pytest.mark.parametrize("store", ["sqlite"], indirect=True)


PROGRAM_NAME = "Partner Program"


def org_config(writeback: dict[str, Any] | None = None) -> OrgConfig:
    return factories.org_config(
        program="partners", program_name=PROGRAM_NAME, writeback=writeback or {}
    )


@pytest.fixture
def sf() -> Iterator[SalesforceDouble]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield SalesforceDouble(rsps)


@pytest.fixture
def seeded(store: Store) -> dict[str, int]:
    return seed(store)


def seed(store: Store) -> dict[str, int]:
    with store.session() as s:
        org = factories.connected_org(s, integration_user_id=None)
        (program,) = factories.programs(s, "partners", partners=PROGRAM_NAME)
        member = Member(
            program_id=program.id,
            external_id="M-1",
            referral_code="ANNA10",
            name="Anna Member",
            email="anna@member.example",
            phone="+1 555 0100",
            url="https://member.example/anna",
        )
        s.add(member)
        s.flush()
        return {"org": org.id, "program": program.id, "member": member.id}


def add_referral(store: Store, seeded: dict[str, int], n: int, **values: Any) -> int:
    with store.session() as s:
        referral = Referral(
            public_id=f"R-{n}",
            program_id=seeded["program"],
            member_id=seeded["member"],
            first_name=values.pop("first_name", f"First{n}"),
            last_name=values.pop("last_name", f"Last{n}"),
            email=values.pop("email", f"person{n}@example.com"),
            **values,
        )
        s.add(referral)
        s.flush()
        return referral.id


def queue_referrals(
    store: Store, seeded: dict[str, int], cfg: OrgConfig, ids: list[int]
) -> list[int]:
    with store.session() as s:
        org = s.get(OrgConnection, seeded["org"])
        assert org is not None
        return [queue_referral_add(s, org, cfg, s.get(Referral, i)).id for i in ids]  # type: ignore[arg-type]


def get_push(store: Store, push_id: int) -> Push:
    with store.session() as s:
        push = s.get(Push, push_id)
        assert push is not None
        return push


def get_referral(store: Store, referral_id: int) -> Referral:
    with store.session() as s:
        referral = s.get(Referral, referral_id)
        assert referral is not None
        return referral


# ---- referral add ----------------------------------------------------------------------------


def test_referral_add_creates_leads_in_one_batch(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    cfg = org_config()
    ids = [add_referral(store, seeded, n) for n in range(3)]
    ids.append(add_referral(store, seeded, 3, last_name=None, company="Globex"))
    pushes = queue_referrals(store, seeded, cfg, ids)

    report = send(store, sf.writer(), cfg, pushes, now=NOW)

    assert sorted(report.sent) == sorted(pushes)
    # one lookup per object for the whole batch, one collection request for all four
    assert len(sf.queries) == 2
    assert "Email IN ('person0@example.com','person1@example.com'" in sf.queries[0]
    calls = sf.collection_calls()
    assert len(calls) == 1
    assert calls[0].request.method == "PATCH"
    assert calls[0].request.url.endswith("/composite/sobjects/Lead/Referral_ID__c")
    body = json.loads(calls[0].request.body)
    assert body["allOrNone"] is False
    first = body["records"][0]
    assert first == {
        "attributes": {"type": "Lead"},
        "FirstName": "First0",
        "LastName": "Last0",
        "Email": "person0@example.com",
        "Company": "[not provided]",
        "Referral_ID__c": "R-0",
        "Referral_Code__c": "ANNA10",
        "Referral_Source__c": "Partner Program",
        "Referring_Member_Name__c": "Anna Member",
        "Referring_Member_Email__c": "anna@member.example",
        "Referring_Member_External_ID__c": "M-1",
        "Referring_Member_Phone__c": "+1 555 0100",
        "Referring_Member_URL__c": "https://member.example/anna",
        "Referring_Member_Code__c": "ANNA10",
    }
    last = body["records"][3]
    assert last["LastName"] == "[not provided]" and last["Company"] == "Globex"

    for push_id, referral_id in zip(pushes, ids, strict=True):
        push = get_push(store, push_id)
        assert push.state == "sent" and push.attempts == 1 and push.sf_id.startswith("00Q")  # type: ignore[union-attr]
        assert get_referral(store, referral_id).sf_lead_id == push.sf_id
    assert len(sf.records["Lead"]) == 4


def test_duplicates_are_absorbed_and_sending_twice_writes_once(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    cfg = org_config()
    rid = add_referral(store, seeded, 1)
    first = queue_referrals(store, seeded, cfg, [rid])
    again = queue_referrals(store, seeded, cfg, [rid])
    assert first == again
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Push)) == 1

    send(store, sf.writer(), cfg, first, now=NOW)
    calls = len(sf.rsps.calls)
    report = send(store, sf.writer(), cfg, first, now=NOW)  # already sent: nothing to do
    assert report.sent == [] and len(sf.rsps.calls) == calls
    assert len(sf.records["Lead"]) == 1


@SQLITE_ONLY
def test_repush_of_a_sent_referral_upserts_the_same_lead(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    """A push left pending by a crash after Salesforce saved it is sent again: no duplicate."""
    cfg = org_config()
    rid = add_referral(store, seeded, 1)
    [pid] = queue_referrals(store, seeded, cfg, [rid])
    send(store, sf.writer(), cfg, [pid], now=NOW)
    lead_id = get_push(store, pid).sf_id
    with store.session() as s:
        s.get(Push, pid).state = "pending"  # type: ignore[union-attr]
    send(store, sf.writer(), cfg, [pid], now=NOW)
    assert len(sf.records["Lead"]) == 1
    assert get_push(store, pid).sf_id == lead_id


def test_record_errors_are_saved_per_push_and_repush_sends_the_fix(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    cfg = org_config()
    good = add_referral(store, seeded, 1)
    bad = add_referral(store, seeded, 2, last_name="X" * 90)
    pushes = queue_referrals(store, seeded, cfg, [good, bad])

    def too_long(sobject: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        if len(fields.get("LastName", "")) > 80:
            return {
                "statusCode": "STRING_TOO_LONG",
                "message": "Last Name: data value too large: " + fields["LastName"][:20],
                "fields": ["LastName"],
            }
        return None

    sf.fault = too_long
    report = send(store, sf.writer(), cfg, pushes, now=NOW)
    assert report.sent == [pushes[0]] and report.failed == [pushes[1]]
    failed = get_push(store, pushes[1])
    assert failed.state == "failed"
    assert failed.error_code == "STRING_TOO_LONG"
    assert failed.error_fields == ["LastName"]
    assert failed.error_class == "permanent"
    assert "data value too large" in (failed.error_message or "")
    assert get_referral(store, bad).sf_lead_id is None

    # the user shortens the name, then repushes
    with store.session() as s:
        s.get(Referral, bad).last_name = "Short"  # type: ignore[union-attr]
        repush(s, pushes[1], actor="admin@example.com")
    pending = get_push(store, pushes[1])
    assert pending.state == "pending" and pending.error_code is None and pending.attempts == 0
    report = send(store, sf.writer(), cfg, [pushes[1]], now=NOW)
    assert report.sent == [pushes[1]]
    assert sf.writes[-1][2]["LastName"] == "Short"
    assert get_referral(store, bad).sf_lead_id == get_push(store, pushes[1]).sf_id
    with store.session() as s:
        entry = s.scalars(select(AuditLog).where(AuditLog.action == "push.repush")).one()
        assert entry.actor == "admin@example.com" and entry.object_id == str(pushes[1])
        assert entry.detail["previous"]["error_code"] == "STRING_TOO_LONG"


def test_a_repushed_push_is_free_for_the_next_drain_at_once(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    """A failed push keeps the claim of the drain that sent it; repushing must not leave the
    push waiting for that claim to expire."""
    cfg = org_config()
    [pid] = queue_referrals(store, seeded, cfg, [add_referral(store, seeded, 1)])
    until = NOW + timedelta(minutes=10)
    with store.session() as s:
        org = s.get(Push, pid).org_connection_id  # type: ignore[union-attr]
        assert claim(s, "first", until=until, now=NOW, org_connection_id=org) == [pid]
        s.get(Push, pid).state = "failed"  # type: ignore[union-attr]
    with store.session() as s:
        repush(s, pid, actor="admin")
    with store.session() as s:
        later = NOW + timedelta(seconds=1)
        assert claim(s, "second", until=until, now=later, org_connection_id=org) == [pid]


def test_repush_refuses_pending_and_sent_pushes(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    cfg = org_config()
    [pid] = queue_referrals(store, seeded, cfg, [add_referral(store, seeded, 1)])
    with store.session() as s, pytest.raises(UsageError) as exc:
        repush(s, pid, actor="admin")
    assert exc.value.code == "push_not_repushable"
    with store.session() as s, pytest.raises(UsageError) as exc:
        repush(s, 999_999, actor="admin")
    assert exc.value.code == "push_not_found"


def test_transient_record_errors_stay_pending_until_the_last_attempt(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    cfg = org_config()
    [pid] = queue_referrals(store, seeded, cfg, [add_referral(store, seeded, 1)])
    sf.fault = lambda sobject, fields: {
        "statusCode": "UNABLE_TO_LOCK_ROW",
        "message": "unable to obtain exclusive access to this record",
        "fields": [],
    }
    for attempt in range(1, MAX_ATTEMPTS + 1):
        report = send(store, sf.writer(), cfg, [pid], now=NOW)
        push = get_push(store, pid)
        assert push.attempts == attempt
        assert push.error_code == "UNABLE_TO_LOCK_ROW" and push.error_class == "transient"
        if attempt < MAX_ATTEMPTS:
            assert push.state == "pending" and report.retry == [pid]
    assert push.state == "failed" and report.failed == [pid]


@pytest.mark.parametrize(
    ("status", "body", "state", "error_class"),
    [
        (
            400,
            [
                {
                    "message": "No such column 'Referral_ID__c' on entity 'Lead'.",
                    "errorCode": "INVALID_FIELD",
                }
            ],
            "failed",
            "permanent",
        ),
        (
            403,
            [
                {
                    "message": "insufficient access rights on object id",
                    "errorCode": "INSUFFICIENT_ACCESS_OR_READONLY",
                }
            ],
            "failed",
            "usage",
        ),
        (
            503,
            [{"message": "Server unavailable", "errorCode": "SERVER_UNAVAILABLE"}],
            "pending",
            "transient",
        ),
        (
            403,
            [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
            "pending",
            "transient",
        ),
    ],
)
def test_a_failed_request_is_saved_on_every_push_it_carried(
    store: Store,
    seeded: dict[str, int],
    sf: SalesforceDouble,
    status: int,
    body: list[dict[str, str]],
    state: str,
    error_class: str,
) -> None:
    cfg = org_config()
    pushes = queue_referrals(
        store, seeded, cfg, [add_referral(store, seeded, 1), add_referral(store, seeded, 2)]
    )
    sf.request_faults.append(("composite/sobjects", status, body))
    send(store, sf.writer(), cfg, pushes, now=NOW)
    for pid in pushes:
        push = get_push(store, pid)
        assert (push.state, push.error_class) == (state, error_class)
        assert push.error_code == body[0]["errorCode"]
        assert push.error_message == body[0]["message"]


def test_a_failed_lookup_fails_the_pushes_that_needed_it(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    cfg = org_config()
    [pid] = queue_referrals(store, seeded, cfg, [add_referral(store, seeded, 1)])
    sf.request_faults.append(
        (
            "query",
            400,
            [{"message": "sObject type 'Lead' is not supported.", "errorCode": "INVALID_TYPE"}],
        )
    )
    send(store, sf.writer(), cfg, [pid], now=NOW)
    push = get_push(store, pid)
    assert (push.state, push.error_code, push.error_class) == ("failed", "INVALID_TYPE", "usage")
    assert sf.collection_calls() == []


# ---- on_existing_email -------------------------------------------------------------------------


def existing_lead(sf: SalesforceDouble, created: datetime, **values: Any) -> dict[str, Any]:
    return sf.add(
        "Lead",
        Email=values.pop("Email", "person1@example.com"),
        CreatedDate=created.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
        FirstName=values.pop("FirstName", None),
        LastName=values.pop("LastName", "Existing"),
        Company=values.pop("Company", "Initech"),
        Phone=None,
        Referral_ID__c=values.pop("Referral_ID__c", None),
        **values,
    )


@SQLITE_ONLY
def test_existing_email_update_writes_referral_fields_onto_it(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    cfg = org_config({"referral_add": {"on_existing_email": "update"}})
    lead = existing_lead(sf, NOW - timedelta(days=30))
    rid = add_referral(store, seeded, 1, phone="+44 20 7946 0000")
    [pid] = queue_referrals(store, seeded, cfg, [rid])
    send(store, sf.writer(), cfg, [pid], now=NOW)

    method, path, record = sf.writes[-1]
    assert (method, path) == ("PATCH", "composite/sobjects") and record["Id"] == lead["Id"]
    assert lead["Referral_ID__c"] == "R-1" and lead["Referring_Member_Code__c"] == "ANNA10"
    # identity fields only where Salesforce had none
    assert lead["LastName"] == "Existing" and lead["Company"] == "Initech"
    assert lead["FirstName"] == "First1" and lead["Phone"] == "+44 20 7946 0000"
    assert len(sf.records["Lead"]) == 1
    assert get_push(store, pid).sf_id == lead["Id"]
    assert get_referral(store, rid).sf_lead_id == lead["Id"]


@SQLITE_ONLY
def test_existing_contact_is_updated_rather_than_duplicated_as_a_lead(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    cfg = org_config()
    contact = sf.add(
        "Contact",
        Email="PERSON1@example.com",
        LastName="Known",
        CreatedDate="2024-01-01T00:00:00.000+0000",
    )
    rid = add_referral(store, seeded, 1)
    [pid] = queue_referrals(store, seeded, cfg, [rid])
    send(store, sf.writer(), cfg, [pid], now=NOW)
    assert "Lead" not in sf.records
    assert contact["Referral_ID__c"] == "R-1" and "Company" not in contact
    push = get_push(store, pid)
    assert push.sobject_type == "Contact" and push.sf_id == contact["Id"]
    assert get_referral(store, rid).sf_contact_id == contact["Id"]


@SQLITE_ONLY
def test_existing_email_skip(store: Store, seeded: dict[str, int], sf: SalesforceDouble) -> None:
    cfg = org_config({"referral_add": {"on_existing_email": "skip"}})
    lead = existing_lead(sf, NOW - timedelta(days=2))
    rid = add_referral(store, seeded, 1)
    [pid] = queue_referrals(store, seeded, cfg, [rid])
    report = send(store, sf.writer(), cfg, [pid], now=NOW)
    push = get_push(store, pid)
    assert report.skipped == [pid] and push.state == "skipped"
    assert push.error_code == "existing_email" and lead["Id"] in (push.error_message or "")
    assert sf.collection_calls() == [] and lead["Referral_ID__c"] is None
    assert get_referral(store, rid).status == "pending"


def test_existing_email_deny_denies_the_referral(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    cfg = org_config({"referral_add": {"on_existing_email": "deny"}})
    existing_lead(sf, NOW - timedelta(minutes=61))
    rid = add_referral(store, seeded, 1)
    [pid] = queue_referrals(store, seeded, cfg, [rid])
    send(store, sf.writer(), cfg, [pid], now=NOW)
    push = get_push(store, pid)
    assert (push.state, push.error_code) == ("skipped", "existing_email")
    assert sf.collection_calls() == []
    with store.session() as s:
        referral = s.get(Referral, rid)
        assert referral is not None and referral.status == "denied"
        change = s.scalars(select(ReferralStatusChange)).one()
        assert (change.from_status, change.to_status, change.actor) == (
            "pending",
            "denied",
            "writeback",
        )
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "referral.denied")).one()
        assert audit.detail["reason"] == "existing_email"


@SQLITE_ONLY
def test_existing_email_deny_updates_a_record_created_within_the_hour(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    cfg = org_config({"referral_add": {"on_existing_email": "deny"}})
    lead = existing_lead(sf, NOW - timedelta(minutes=59))
    rid = add_referral(store, seeded, 1)
    [pid] = queue_referrals(store, seeded, cfg, [rid])
    send(store, sf.writer(), cfg, [pid], now=NOW)
    assert get_push(store, pid).state == "sent"
    assert lead["Referral_ID__c"] == "R-1"
    assert get_referral(store, rid).status == "pending"


@SQLITE_ONLY
def test_deny_never_denies_a_referral_because_of_its_own_lead(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    cfg = org_config({"referral_add": {"on_existing_email": "deny"}})
    lead = existing_lead(sf, NOW - timedelta(days=3), Referral_ID__c="R-1")
    rid = add_referral(store, seeded, 1)
    [pid] = queue_referrals(store, seeded, cfg, [rid])
    send(store, sf.writer(), cfg, [pid], now=NOW)
    assert get_push(store, pid).sf_id == lead["Id"]
    assert get_referral(store, rid).status == "pending"


@SQLITE_ONLY
def test_create_as_contact_and_sync_modes(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    cfg = org_config(
        {
            "referral_add": {"create_as": "Contact", "field_mappings": {"plan": "Plan__c"}},
            "objects": {"Contact": {"sync_mode": "create_update"}},
        }
    )
    rid = add_referral(store, seeded, 1, company="Globex", fields={"plan": "gold"})
    [pid] = queue_referrals(store, seeded, cfg, [rid])
    send(store, sf.writer(), cfg, [pid], now=NOW)
    [contact] = sf.records["Contact"]
    assert contact["Plan__c"] == "gold" and "Company" not in contact
    assert len(sf.queries) == 1 and "FROM Contact" in sf.queries[0]  # a Lead is no duplicate

    only_update = org_config(
        {
            "referral_add": {"create_as": "Contact"},
            "objects": {"Contact": {"sync_mode": "update_only"}},
        }
    )
    [pid2] = queue_referrals(store, seeded, only_update, [add_referral(store, seeded, 2)])
    send(store, sf.writer(), only_update, [pid2], now=NOW)
    push = get_push(store, pid2)
    assert (push.state, push.error_code) == ("skipped", "no_existing_record")


@SQLITE_ONLY
def test_field_mappings_follow_sync_rules_on_an_existing_record(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    cfg = org_config(
        {
            "objects": {
                "Lead": {
                    "fields": [
                        {"local": "company", "salesforce": "Company", "sync": "ours"},
                        {"local": "title", "salesforce": ["Title"], "sync": "read_only"},
                        {
                            "local": "website",
                            "salesforce": "Website",
                            "sync": "ours",
                            "strategy": "if_empty",
                        },
                    ]
                }
            }
        }
    )
    lead = existing_lead(
        sf, NOW - timedelta(days=9), Title="VP Sales", Website="https://initech.example"
    )
    rid = add_referral(
        store, seeded, 1, company="Initrode", fields={"website": "https://initrode.example"}
    )
    [pid] = queue_referrals(store, seeded, cfg, [rid])
    send(store, sf.writer(), cfg, [pid], now=NOW)
    assert "Title" in sf.queries[0] and "Website" in sf.queries[0]
    assert lead["Company"] == "Initrode"  # ours + override beats the blank-only identity rule
    assert lead["Website"] == "https://initech.example"  # if_empty: kept
    referral = get_referral(store, rid)
    assert referral.fields["title"] == "VP Sales"  # read back from Salesforce


@SQLITE_ONLY
def test_fields_mapped_read_only_or_none_are_never_written(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    cfg = org_config(
        {
            "objects": {
                "Lead": {
                    "fields": [
                        {"local": "phone", "salesforce": "Phone", "sync": "read_only"},
                        {"local": "x", "salesforce": "Referring_Member_Email__c", "sync": "none"},
                        {"local": "last_name", "salesforce": "LastName", "sync": "none"},
                    ]
                }
            }
        }
    )
    new = add_referral(store, seeded, 1, phone="+1 555 0199")
    lead = existing_lead(sf, NOW - timedelta(days=5), LastName=None, Email="person2@example.com")
    lead["Phone"] = "+1 555 0000"
    old = add_referral(store, seeded, 2, phone="+1 555 0101")
    send(store, sf.writer(), cfg, queue_referrals(store, seeded, cfg, [new, old]), now=NOW)
    created = next(r for r in sf.records["Lead"] if r["Referral_ID__c"] == "R-1")
    assert "Phone" not in created and "Referring_Member_Email__c" not in created
    assert created["LastName"] == "Last1"  # required to create: written anyway
    assert lead["Phone"] == "+1 555 0000" and lead["LastName"] is None  # update: hands off
    assert lead["Referral_ID__c"] == "R-2"
    assert get_referral(store, old).phone == "+1 555 0000"  # read back


# ---- activities --------------------------------------------------------------------------------


def queue_activities(
    store: Store, seeded: dict[str, int], cfg: OrgConfig, items: list[dict[str, Any]]
) -> list[int]:
    with store.session() as s:
        org = s.get(OrgConnection, seeded["org"])
        assert org is not None
        return [queue_activity(s, org, cfg, item).id for item in items]


@SQLITE_ONLY
def test_activities_upsert_tasks_and_events_by_activity_id(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    cfg = org_config(
        {
            "activities": {
                "kinds": {
                    "call": {
                        "object": "Task",
                        "static": {"Type": "Call", "Priority": "High"},
                        "subject_prefix": "[Call] ",
                    }
                }
            }
        }
    )
    contact = sf.add("Contact", Email="ann@example.com", CreatedDate="2024-01-01T00:00:00.000+0000")
    lead = sf.add("Lead", Email="bob@example.com", CreatedDate="2024-01-01T00:00:00.000+0000")
    items = [
        {
            "id": "act-1",
            "kind": "call",
            "email": "Ann@Example.com",
            "subject": "Intro",
            "occurred_at": "2026-11-20T15:30:00Z",
        },
        {
            "id": "act-2",
            "kind": "email",
            "email": "bob@example.com",
            "subject": "Follow-up",
            "description": "Hi Bob",
            "occurred_at": "2026-11-21T09:00:00+01:00",
        },
        {
            "id": "act-3",
            "kind": "meeting",
            "email": "nobody@example.com",
            "subject": "Demo",
            "occurred_at": "2026-11-22T10:00:00Z",
            "duration_minutes": 45,
        },
    ]
    pushes = queue_activities(store, seeded, cfg, items)
    report = send(store, sf.writer(), cfg, pushes, now=NOW)
    assert sorted(report.sent) == sorted(pushes)

    tasks = {t["SFBridge_Activity_Id__c"]: t for t in sf.records["Task"]}
    assert tasks["act-1"]["WhoId"] == contact["Id"]
    assert tasks["act-1"]["Subject"] == "[Call] Intro"
    assert (tasks["act-1"]["Type"], tasks["act-1"]["Priority"]) == ("Call", "High")
    assert tasks["act-1"]["ActivityDate"] == "2026-11-20"
    assert tasks["act-2"]["WhoId"] == lead["Id"] and tasks["act-2"]["Type"] == "Email"
    assert tasks["act-2"]["Status"] == "Completed" and tasks["act-2"]["Description"] == "Hi Bob"
    [event] = sf.records["Event"]
    assert event["StartDateTime"] == "2026-11-22T10:00:00.000+0000"
    assert event["EndDateTime"] == "2026-11-22T10:45:00.000+0000"
    assert "WhoId" not in event and event["Type"] == "Meeting"
    assert sorted({path for _m, path, _r in sf.writes}) == [
        "composite/sobjects/Event/SFBridge_Activity_Id__c",
        "composite/sobjects/Task/SFBridge_Activity_Id__c",
    ]
    assert len(sf.collection_calls()) == 1  # both collections in one composite call
    # one lookup per object for all three emails
    assert len(sf.queries) == 2

    # the same activity again: absorbed; changed: updates the same Task
    again = queue_activities(store, seeded, cfg, [items[0]])
    assert again == [pushes[0]]
    changed = queue_activities(store, seeded, cfg, [{**items[0], "subject": "Intro call"}])
    assert changed != [pushes[0]]
    send(store, sf.writer(), cfg, changed, now=NOW)
    assert len(sf.records["Task"]) == 2
    assert tasks["act-1"]["Subject"] == "[Call] Intro call"
    assert get_push(store, changed[0]).sf_id == tasks["act-1"]["Id"]


@SQLITE_ONLY
def test_bad_activity_input_is_a_clear_usage_error(store: Store, seeded: dict[str, int]) -> None:
    with store.session() as s:
        org = s.get(OrgConnection, seeded["org"])
        assert org is not None
        with pytest.raises(UsageError) as exc:
            queue_activity(
                s, org, org_config(), {"id": "x" * 101, "kind": "fax", "occurred_at": "soon"}
            )
    assert exc.value.code == "invalid_activity"
    assert {"id", "kind", "occurred_at"} <= set(exc.value.fields)


def test_collections_are_split_at_200_records(sqlite_store: Store, sf: SalesforceDouble) -> None:
    """(SQLite only: the split does not depend on the database.)"""
    store, seeded = sqlite_store, seed(sqlite_store)
    cfg = org_config()
    items = [
        {
            "id": f"act-{n}",
            "kind": "email",
            "subject": f"n{n}",
            "occurred_at": "2026-11-20T10:00:00Z",
        }
        for n in range(201)
    ]
    pushes = queue_activities(store, seeded, cfg, items)
    report = send(store, sf.writer(), cfg, pushes, now=NOW)
    assert len(report.sent) == 201
    [call] = sf.collection_calls()  # two collection requests in one composite call
    subs = json.loads(call.request.body)["compositeRequest"]
    assert [len(s["body"]["records"]) for s in subs] == [200, 1]
    assert sf.queries == []  # no emails: nothing to resolve


@SQLITE_ONLY
def test_field_update_and_repush_with_edited_fields(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    cfg = org_config()
    account = sf.add("Account", Name="Initech", Website=None)
    with store.session() as s:
        org = s.get(OrgConnection, seeded["org"])
        assert org is not None
        pid = queue_field_update(
            s, org, "Account", {"Website": "not a url" * 40}, record_id=account["Id"]
        ).id
    sf.fault = lambda sobject, fields: (
        {
            "statusCode": "STRING_TOO_LONG",
            "message": "Website: data value too large",
            "fields": ["Website"],
        }
        if len(fields.get("Website", "")) > 255
        else None
    )
    send(store, sf.writer(), cfg, [pid], now=NOW)
    assert get_push(store, pid).error_fields == ["Website"]
    with store.session() as s:
        repush(s, pid, actor="admin", fields={"Website": "https://initech.example"})
    send(store, sf.writer(), cfg, [pid], now=NOW)
    assert get_push(store, pid).state == "sent"
    assert account["Website"] == "https://initech.example"


@SQLITE_ONLY
def test_activity_pushes_saved_with_the_activity_as_payload_are_built_when_sent(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    """The JSON API saves the activity itself; the Task is built at send time."""
    cfg = org_config()
    contact = sf.add("Contact", Email="ann@example.com", CreatedDate="2024-01-01T00:00:00.000+0000")
    rid = add_referral(store, seeded, 1)
    with store.session() as s:
        s.get(Referral, rid).sf_lead_id = "00Q000000000042AAA"  # type: ignore[union-attr]
        api_saved = [
            Push(
                org_connection_id=seeded["org"],
                kind="activity",
                idempotency_key=f"activity:acme:{activity_id}",
                sobject_type="Task",
                external_id_field="SFBridge_Activity_Id__c",
                external_id=activity_id,
                payload=payload,
                referral_id=referral_id,
            )
            for activity_id, payload, referral_id in [
                (
                    "api-1",
                    {
                        "kind": "call",
                        "subject": "Intro",
                        "occurred_at": "2026-11-20T15:30:00+00:00",
                        "who_email": "ann@example.com",
                    },
                    None,
                ),
                (
                    "api-2",
                    {"kind": "email", "subject": "Hello", "occurred_at": "2026-11-20T09:00:00Z"},
                    rid,
                ),
                ("api-3", {"kind": "fax", "subject": "?", "occurred_at": "2026-11-20"}, None),
            ]
        ]
        s.add_all(api_saved)
        s.flush()
        ids = [p.id for p in api_saved]
    report = send(store, sf.writer(), cfg, ids, now=NOW)
    assert report.sent == ids[:2] and report.failed == [ids[2]]
    tasks = {t["SFBridge_Activity_Id__c"]: t for t in sf.records["Task"]}
    assert tasks["api-1"]["Subject"] == "Call: Intro" and tasks["api-1"]["WhoId"] == contact["Id"]
    assert tasks["api-2"]["WhoId"] == "00Q000000000042AAA"  # the referral's Lead
    bad = get_push(store, ids[2])
    assert (bad.error_code, bad.error_class) == ("invalid_activity", "usage")
    assert "kind" in bad.error_fields


@SQLITE_ONLY
def test_field_edits_at_repush_survive_the_rebuild_of_a_referral(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    cfg = org_config()
    [pid] = queue_referrals(store, seeded, cfg, [add_referral(store, seeded, 1)])
    sf.fault = lambda sobject, fields: (
        {
            "statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            "message": "Company must not be a placeholder",
            "fields": ["Company"],
        }
        if fields.get("Company") == "[not provided]"
        else None
    )
    send(store, sf.writer(), cfg, [pid], now=NOW)
    assert get_push(store, pid).error_code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    with store.session() as s:
        repush(s, pid, actor="admin", fields={"Company": "Acme Ltd", "Phone": None})
    send(store, sf.writer(), cfg, [pid], now=NOW)
    push = get_push(store, pid)
    assert push.state == "sent" and push.payload["fields"]["Company"] == "Acme Ltd"
    assert sf.records["Lead"][0]["Company"] == "Acme Ltd"


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("policy", "second_state", "lead_referral_id"),
    [("update", "sent", "R-2"), ("skip", "skipped", "R-1"), ("deny", "skipped", "R-1")],
)
def test_referrals_sharing_an_email_in_one_batch_create_one_person(
    store: Store,
    seeded: dict[str, int],
    sf: SalesforceDouble,
    policy: str,
    second_state: str,
    lead_referral_id: str,
) -> None:
    cfg = org_config({"referral_add": {"on_existing_email": policy}})
    first = add_referral(store, seeded, 1, email="same@example.com")
    second = add_referral(store, seeded, 2, email="SAME@example.com")
    pushes = queue_referrals(store, seeded, cfg, [first, second])
    send(store, sf.writer(), cfg, pushes, now=datetime.now(UTC))
    [lead] = sf.records["Lead"]
    assert lead["Referral_ID__c"] == lead_referral_id
    assert get_push(store, pushes[0]).state == "sent"
    assert get_push(store, pushes[1]).state == second_state
    # a Lead the bridge made for another referral minutes ago is not a grace-hour newcomer
    assert get_referral(store, second).status == ("denied" if policy == "deny" else "pending")


def test_a_referral_push_whose_referral_is_gone_fails_with_a_reason(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    with store.session() as s:
        push = Push(
            org_connection_id=seeded["org"],
            kind="referral",
            idempotency_key="referral:gone",
            sobject_type="Lead",
            external_id_field="Referral_ID__c",
            external_id="ref_gone",
            payload={"referral_id": 424242},
        )
        s.add(push)
        s.flush()
        pid = push.id
    send(store, sf.writer(), org_config(), [pid], now=NOW)
    failed = get_push(store, pid)
    assert (failed.state, failed.error_code, failed.error_class) == (
        "failed",
        "referral_missing",
        "permanent",
    )
    assert len(sf.rsps.calls) == 0


def test_losing_an_insert_race_returns_the_saved_push_and_keeps_the_transaction(
    store: Store, seeded: dict[str, int]
) -> None:
    """Two writers queue the same key: the loser's insert conflicts and inserts nothing (a
    concurrent winner's, on PostgreSQL, once the winner commits), and it gets the winner's
    push, its transaction intact (no savepoint is needed: nothing failed)."""
    from bridge.writeback.pushes import queue_push

    with store.session() as s:
        winner, created = queue_push(
            s,
            kind="activity",
            idempotency_key="activity:race",
            sobject_type="Task",
            payload={"fields": {"Subject": "first"}},
            org_connection_id=seeded["org"],
        )
        assert created
        winner_id = winner.id

    with store.session() as s:
        s.add(Program(key="other", name="Other"))  # earlier work in the same transaction
        loser, created = queue_push(
            s,
            kind="activity",
            idempotency_key="activity:race",
            sobject_type="Task",
            payload={"fields": {"Subject": "second"}},
            org_connection_id=seeded["org"],
        )
        assert not created and loser.id == winner_id
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Push)) == 1
        assert s.scalar(select(func.count()).select_from(Program)) == 2  # the rest committed


def test_a_concurrent_writer_of_the_same_key_waits_and_gets_the_winners_push(
    postgres_store: Store,
) -> None:
    """(PostgreSQL: SQLite serializes writers.) The loser's insert waits for the winner's
    open transaction and, once it commits, inserts nothing and returns the winner's push."""
    import threading

    from bridge.writeback.pushes import queue_push

    seeded = seed(postgres_store)

    def queue(s: Any, subject: str) -> tuple[Any, bool]:
        return queue_push(
            s,
            kind="activity",
            idempotency_key="activity:concurrent",
            sobject_type="Task",
            payload={"fields": {"Subject": subject}},
            org_connection_id=seeded["org"],
        )

    outcome: dict[str, Any] = {}

    def loser() -> None:
        with postgres_store.session() as s:
            push, created = queue(s, "second")
            outcome.update(id=push.id, created=created)

    with postgres_store.session() as s:
        winner, created = queue(s, "first")
        assert created
        thread = threading.Thread(target=loser)
        thread.start()
        thread.join(1.0)
        assert thread.is_alive(), "the loser waits for the winner's transaction"
    thread.join(10)
    assert outcome == {"id": winner.id, "created": False}
    with postgres_store.session() as s:
        assert s.scalar(select(func.count()).select_from(Push)) == 1


def test_a_batch_writes_its_pushes_with_one_insert_and_gives_saved_keys_their_push(
    store: Store, seeded: dict[str, int]
) -> None:
    """In `pushes.batched` a push has its id when queued and the block's pushes are written
    by one INSERT: a key queued twice gives the first push, a key saved before inserts
    nothing and `write_batched` names the saved push in its place."""
    from sqlalchemy import event

    from bridge.writeback.pushes import batched, queue_push, write_batched

    def queue(s: Any, key: str, subject: str) -> tuple[Any, bool]:
        return queue_push(
            s,
            kind="activity",
            idempotency_key=key,
            sobject_type="Task",
            payload={"fields": {"Subject": subject}},
            org_connection_id=seeded["org"],
        )

    with store.session() as s:
        saved_id = queue(s, "activity:saved", "saved before")[0].id
    inserts: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.split()[:3] == ["INSERT", "INTO", "pushes"]:
            inserts.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        with store.session() as s, batched(s):
            a, a_new = queue(s, "activity:a", "a")
            b, b_new = queue(s, "activity:b", "b")
            again, again_new = queue(s, "activity:a", "a again")
            saved, saved_new = queue(s, "activity:saved", "saved again")
            assert inserts == []  # nothing written yet
            assert (a_new, b_new, again_new, saved_new) == (True, True, False, True)
            assert again is a and len({a.id, b.id, saved.id, saved_id}) == 4
            listed = [a.id, saved.id, b.id]
            assert write_batched(s, listed) == [a.id, saved_id, b.id]
            assert write_batched(s, listed) == [a.id, saved_id, b.id]  # written once
            ids = {"a": a.id, "b": b.id}
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    assert len(inserts) == 1
    with store.session() as s:
        rows = dict(s.execute(select(Push.idempotency_key, Push.id)).all())
        subjects = {
            p.idempotency_key: p.payload["fields"]["Subject"] for p in s.scalars(select(Push))
        }
    assert rows == {"activity:saved": saved_id, "activity:a": ids["a"], "activity:b": ids["b"]}
    assert subjects["activity:saved"] == "saved before" and subjects["activity:a"] == "a"


def test_a_batched_push_holds_what_one_queued_alone_holds(
    store: Store, seeded: dict[str, int]
) -> None:
    """A batch builds its pushes without the ORM's constructor and leaves them out of the
    session once written: each holds what a push queued alone holds, and the session reads
    the saved row by its id."""
    from bridge.store import row_values
    from bridge.writeback.pushes import batched, queue_push

    def queue(s: Any, key: str) -> Push:
        return queue_push(
            s,
            kind="activity",
            idempotency_key=key,
            sobject_type="Task",
            payload={"fields": {"Subject": key}},
            org_connection_id=seeded["org"],
            referral_id=None,
        )[0]

    def columns(push: Push) -> dict[str, Any]:
        return {k: v for k, v in row_values(push).items() if k not in ("id", "idempotency_key")}

    with store.session() as s:
        alone = columns(queue(s, "activity:alone"))
    with store.session() as s:
        with batched(s):
            push = queue(s, "activity:batched")
        assert not s.dirty and not inspect(push).persistent
        mine = columns(push)
        read = s.get(Push, push.id)
        assert read is not None and read is not push
        loaded = {k: getattr(read, k) for k in mine}
    for values in (mine, loaded):
        assert {k: v for k, v in values.items() if k != "payload" and not k.endswith("_at")} == {
            k: v for k, v in alone.items() if k != "payload" and not k.endswith("_at")
        }
    with store.session() as s:
        saved = s.scalars(select(Push).where(Push.idempotency_key == "activity:batched")).one()
        assert saved.state == "pending" and saved.attempts == 0 and saved.error_fields == []
        assert saved.payload == {"fields": {"Subject": "activity:batched"}}


def test_a_batch_rolled_back_leaves_no_push(store: Store, seeded: dict[str, int]) -> None:
    from bridge.writeback.pushes import batched, queue_push

    with pytest.raises(RuntimeError, match="killed"), store.session() as s, batched(s):
        queue_push(
            s,
            kind="activity",
            idempotency_key="activity:lost",
            sobject_type="Task",
            payload={"fields": {}},
            org_connection_id=seeded["org"],
        )
        raise RuntimeError("killed mid-batch")
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Push)) == 0


def test_lookups_are_batched_100_emails_per_query(
    sqlite_store: Store, sf: SalesforceDouble
) -> None:
    """(SQLite only: the batching does not depend on the database.)"""
    seeded = seed(sqlite_store)
    cfg = org_config()
    ids = [add_referral(sqlite_store, seeded, n) for n in range(150)]
    pushes = queue_referrals(sqlite_store, seeded, cfg, ids)
    report = send(sqlite_store, sf.writer(), cfg, pushes, now=NOW)
    assert len(report.sent) == 150
    per_object = [(q.split(" FROM ")[1].split()[0], q.count("@example.com")) for q in sf.queries]
    assert per_object == [("Lead", 100), ("Lead", 50), ("Contact", 100), ("Contact", 50)]
    assert len(sf.collection_calls()) == 1


def test_a_drains_statements_grow_by_the_group_of_pushes_not_by_the_push(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble
) -> None:
    """Claiming and saving read a group's pushes, and the referrals, programs and members
    they need, with a few set-based queries and write them together at the commit: the
    statements grow by the group (`PUSHES_PER_TRANSACTION` pushes), not by the push. (A
    `session.get` per push, each flushing the push before it, made them 3–9 a push.)"""
    from sqlalchemy import event

    from bridge.writeback import results

    cfg = org_config()
    # every third link-back refused: failed and sent results in the same groups
    sf.fault = lambda sobject, fields: (
        {"statusCode": "STRING_TOO_LONG", "message": "too long", "fields": ["Company"]}
        if "Id" in fields and fields.get("Company") == "refused"
        else None
    )

    def statements(block: Any) -> int:
        count = [0]

        def one(*_args: Any) -> None:
            count[0] += 1

        event.listen(store.engine, "before_cursor_execute", one)
        try:
            block()
        finally:
            event.remove(store.engine, "before_cursor_execute", one)
        return count[0]

    def drain(first: int, count: int) -> tuple[int, int]:
        """Statements and pushes of sending `count` referral adds, then a link-back and an
        activity for each of their referrals."""
        referrals = [add_referral(store, seeded, n) for n in range(first, first + count)]
        adds = queue_referrals(store, seeded, cfg, referrals)
        total = statements(lambda: send(store, sf.writer(), cfg, adds, now=NOW))
        with store.session() as s:
            org = s.get(OrgConnection, seeded["org"])
            assert org is not None
            more = []
            for referral in s.scalars(select(Referral).where(Referral.id.in_(referrals))):
                assert referral.sf_lead_id
                company = "refused" if referral.id % 3 == 0 else "Globex"
                more.append(queue_field_update(
                    s, org, "Lead", {"Referral_ID__c": referral.public_id, "Company": company},
                    record_id=referral.sf_lead_id, referral_id=referral.id, change="link_back",
                ))  # fmt: skip
                more.append(queue_activity(s, org, cfg, {
                    "id": f"call-{referral.id}", "kind": "call", "referral_id": referral.id,
                    "occurred_at": "2026-11-20T10:00:00Z",
                }))  # fmt: skip
            ids = [p.id for p in more]
        total += statements(lambda: send(store, sf.writer(), cfg, ids, now=NOW))
        with store.session() as s:
            states = sorted(set(s.scalars(select(Push.state).where(Push.id.in_(ids)))))
        assert states == ["failed", "sent"]
        return total, len(adds) + len(ids)

    small, small_pushes = drain(0, 10)
    large, large_pushes = drain(10, 40)
    groups = (large_pushes - small_pushes) / results.PUSHES_PER_TRANSACTION
    # A group's claim: (SQLite's BEGIN IMMEDIATE), the attempts' UPDATE, its pushes, their
    # referrals; its save: (BEGIN IMMEDIATE), its pushes, their referrals, the attempts'
    # INSERT, an UPDATE of pushes per shape of result, one of referrals: 10.7 a group here on
    # SQLite, 8.7 on PostgreSQL. One statement more a push would make it 18.7 or more.
    per_group = (large - small) / groups
    assert per_group <= 16, f"{per_group:.1f} statements per group of pushes"


@pytest.mark.parametrize("answer", [None, [], {"ok": True}])
def test_a_collection_answer_without_one_result_per_record_is_transient(answer: Any) -> None:
    from bridge.errors import TransientError
    from bridge.writeback.client import OrgWriter

    class Client:
        def restful(self, path: str, method: str, data: str) -> Any:
            return answer

    writer = OrgWriter(Client())
    with pytest.raises(TransientError, match="for 1 records"):
        writer.collection("POST", "composite/sobjects", [{"attributes": {"type": "Lead"}}])
