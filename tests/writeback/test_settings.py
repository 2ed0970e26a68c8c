"""What the config sets for writes: static values per object, per-kind activity switches,
custom member fields, referral-add settings per program, on_existing_email overwrite_leads.

The sender against the HTTP double of Salesforce's REST API, on SQLite."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bridge.config import BridgeConfig, OrgConfig
from bridge.store import Store
from bridge.store.models import Member, OrgConnection, Program
from bridge.writeback import queue_activity
from bridge.writeback.sender import send
from tests.writeback.sfdouble import SalesforceDouble
from tests.writeback.test_pushes import (
    NOW,
    add_referral,
    get_push,
    queue_referrals,
    seed,
    sf,
)

__all__ = ["sf"]
pytestmark = pytest.mark.parametrize("store", ["sqlite"], indirect=True)


def config(writeback: dict[str, Any], programs: list[dict[str, Any]] | None = None) -> OrgConfig:
    return BridgeConfig.model_validate(
        {
            "orgs": {
                "acme": {
                    "programs": programs or [{"key": "partners", "name": "Partner Program"}],
                    "receiver": {"program": "partners"},
                    "writeback": writeback,
                }
            }
        }
    ).orgs["acme"]


def test_static_values_go_on_every_write_of_their_object_under_what_the_write_carries(
    store: Store, sf: SalesforceDouble
) -> None:
    seeded = seed(store)
    cfg = config(
        {"static": {"Lead": {"LeadSource": "Partner", "LastName": "never"},
                    "Task": {"Priority": "High"}}}
    )  # fmt: skip
    [pid] = queue_referrals(store, seeded, cfg, [add_referral(store, seeded, 1)])
    with store.session() as s:
        org = s.get(OrgConnection, seeded["org"])
        assert org is not None
        aid = queue_activity(
            s, org, cfg, {"id": "t1", "kind": "call", "occurred_at": "2026-11-20T10:00:00Z"}
        ).id
    send(store, sf.writer(), cfg, [pid, aid], now=NOW)
    [lead] = sf.records["Lead"]
    assert (lead["LeadSource"], lead["LastName"]) == ("Partner", "Last1")
    assert sf.records["Task"][0]["Priority"] == "High"
    assert get_push(store, pid).payload["fields"]["LeadSource"] == "Partner"  # kept as sent


def test_a_switched_off_activity_kind_is_skipped_and_others_are_written(
    store: Store, sf: SalesforceDouble
) -> None:
    seeded = seed(store)
    cfg = config({"activities": {"kinds": {"linkedin_message": {"enabled": False}}}})
    with store.session() as s:
        org = s.get(OrgConnection, seeded["org"])
        assert org is not None
        off, on = (
            queue_activity(
                s, org, cfg, {"id": k, "kind": k, "occurred_at": "2026-11-20T10:00:00Z"}
            ).id
            for k in ("linkedin_message", "email")
        )
    report = send(store, sf.writer(), cfg, [off, on], now=NOW)
    assert (report.skipped, report.sent) == ([off], [on])
    assert get_push(store, off).error_code == "kind_disabled"
    assert [t["SFBridge_Activity_Id__c"] for t in sf.records["Task"]] == ["email"]


def test_custom_member_and_referral_fields_are_mapped_to_salesforce_fields(
    store: Store, sf: SalesforceDouble
) -> None:
    seeded = seed(store)
    with store.session() as s:
        member = s.get(Member, seeded["member"])
        assert member is not None
        member.fields = {"tier": "gold"}
    cfg = config(
        {"referral_add": {"member_fields": {"tier": "Referring_Member_Tier__c"},
                          "field_mappings": {"plan": "Plan__c"}}}
    )  # fmt: skip
    rid = add_referral(store, seeded, 1, fields={"plan": "pro"})
    [pid] = queue_referrals(store, seeded, cfg, [rid])
    send(store, sf.writer(), cfg, [pid], now=NOW)
    [lead] = sf.records["Lead"]
    assert (lead["Referring_Member_Tier__c"], lead["Plan__c"]) == ("gold", "pro")


def test_a_program_has_its_own_referral_add_settings_over_the_orgs(
    store: Store, sf: SalesforceDouble
) -> None:
    seeded = seed(store)
    with store.session() as s:
        s.add(Program(key="resellers", name="Resellers"))
    cfg = config(
        {"referral_add": {"create_as": "Lead", "on_existing_email": "skip"}},
        programs=[
            {"key": "partners", "name": "Partner Program"},
            {"key": "resellers", "name": "Resellers", "referral_add": {"create_as": "Contact"}},
        ],
    )
    with store.session() as s:
        resellers = s.scalar(select(Program).where(Program.key == "resellers"))
        assert resellers is not None
        program_id = resellers.id
    partner = add_referral(store, seeded, 1)
    reseller = add_referral(store, {**seeded, "program": program_id}, 2)
    pids = queue_referrals(store, seeded, cfg, [partner, reseller])
    send(store, sf.writer(), cfg, pids, now=NOW)
    assert [r["Email"] for r in sf.records["Lead"]] == ["person1@example.com"]
    assert [r["Email"] for r in sf.records["Contact"]] == ["person2@example.com"]
    assert [get_push(store, p).sobject_type for p in pids] == ["Lead", "Contact"]
    # the org's on_existing_email still holds for the program that did not change it
    sf.add("Contact", Email="person3@example.com", LastName="Known")
    third = queue_referrals(
        store, {**seeded, "program": program_id}, cfg, [add_referral(store, seeded, 3)]
    )
    send(store, sf.writer(), cfg, third, now=NOW)
    assert get_push(store, third[0]).state == "skipped"


def test_overwrite_leads_updates_an_existing_lead_entirely_and_never_a_contact(
    store: Store, sf: SalesforceDouble
) -> None:
    seeded = seed(store)
    cfg = config({"referral_add": {"on_existing_email": "overwrite_leads"}})
    lead = sf.add("Lead", Email="person1@example.com", LastName="Old", FirstName="Was",
                  Company="OldCo", CreatedDate="2020-01-01T00:00:00.000+0000")  # fmt: skip
    contact = sf.add("Contact", Email="person2@example.com", LastName="Kept")
    pids = queue_referrals(
        store, seeded, cfg, [add_referral(store, seeded, 1), add_referral(store, seeded, 2)]
    )
    report = send(store, sf.writer(), cfg, pids, now=NOW)
    assert (report.sent, report.skipped) == ([pids[0]], [pids[1]])
    assert (lead["LastName"], lead["FirstName"], lead["Referral_ID__c"]) == (
        "Last1",
        "First1",
        "R-1",
    )
    assert not [w for w in sf.writes if w[2].get("Id") == contact["Id"]]  # never written
    assert contact["LastName"] == "Kept"
    assert "overwrite_leads writes Leads only" in (get_push(store, pids[1]).error_message or "")
    assert len(sf.records["Lead"]) == 1  # no Lead made for the Contact's email
