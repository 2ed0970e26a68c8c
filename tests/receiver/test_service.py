"""Applying receiver decisions: referral updates, history, audit, idempotency, reviewer actions.

Runs on SQLite and PostgreSQL (the `store` fixture).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from bridge.config import OrgConfig
from bridge.errors import UsageError
from bridge.receiver.candidates import find_referrals
from bridge.receiver.matching import EntryInput, plan_lookups
from bridge.receiver.service import approve_entry, process_entry, reject_entry, retry_entry
from bridge.store import Store
from bridge.store.models import (
    AuditLog,
    Member,
    OrgConnection,
    Program,
    Referral,
    ReferralStatusChange,
    SalesEntry,
)
from tests import factories
from tests.factories import APPROVED_WHEN_WON, QUALIFIED_WHEN_LEAD_QUALIFIED

INTEGRATION = "005INTEGRATION0AAA"
SALES = "005SALESUSER00AAAA"
LEAD_ID = "00Q000000000001AAA"
OPP_ID = "006000000000001AAA"


def org_config(**receiver: Any) -> OrgConfig:
    """Qualify on Lead.Status, approve at Closed Won, and read the deal amount."""
    rules = {
        "status_rules": [QUALIFIED_WHEN_LEAD_QUALIFIED, APPROVED_WHEN_WON],
        "referral_fields": {"deal_amount": "Opportunity.Amount"},
    }
    return factories.org_config({**rules, **receiver})


ORG = org_config()


@pytest.fixture
def seeded(store: Store) -> Store:
    with store.session() as s:
        factories.connected_org(s, integration_user_id=INTEGRATION)
        program, other = factories.programs(s, "main", "other")
        s.add(
            Member(
                program_id=program.id,
                name="Max Member",
                email="Max@Members.example",
                referral_code="MAX25",
                external_id="crm-7",
            )
        )
        s.add_all(
            [
                Referral(
                    public_id="R1",
                    program_id=program.id,
                    first_name="Jane",
                    last_name="Doe",
                    email="jane.doe@example.com",
                    company="Acme Inc",
                ),
                Referral(
                    public_id="R2",
                    program_id=program.id,
                    first_name="Bob",
                    last_name="Stone",
                    email="bob@example.com",
                    status="denied",
                ),
                # Same person in another program: never a candidate for this receiver.
                Referral(
                    public_id="X1",
                    program_id=other.id,
                    first_name="Jane",
                    last_name="Doe",
                    email="jane.doe@example.com",
                ),
            ]
        )
    return store


def lead(**fields: Any) -> dict[str, Any]:
    return {
        "Id": LEAD_ID,
        "FirstName": "Jane",
        "LastName": "Doe",
        "Email": "jane.doe@example.com",
        "Company": "Acme",
        "Phone": None,
        "Status": "Open",
        "Referral_ID__c": None,
        "Referral_Code__c": None,
        "Referring_Member_Email__c": None,
        "Referring_Member_External_ID__c": None,
        "LastModifiedById": SALES,
        **fields,
    }


def opp(stage: str, amount: int = 1000) -> dict[str, Any]:
    return {"Id": OPP_ID, "StageName": stage, "Amount": amount, "LastModifiedById": SALES}


def add_entry(store: Store, sobject: str, records: dict[str, Any], change: str = "updated") -> int:
    with store.session() as s:
        conn = s.scalar(select(OrgConnection))
        rec = records.get(sobject) or {}
        entry = SalesEntry(
            org_connection_id=conn.id if conn else None,
            source="stream",
            sobject_type=sobject,
            record_id=rec.get("Id") or (LEAD_ID if sobject == "Lead" else OPP_ID),
            change_type=change,
            raw={"sobject": records.get(sobject)},
            records=records,
        )
        s.add(entry)
        s.flush()
        return entry.id


def process(store: Store, entry_id: int, org: OrgConfig = ORG) -> SalesEntry:
    with store.session() as s:
        entry = s.get(SalesEntry, entry_id)
        assert entry is not None
        return process_entry(s, entry, org)


def referral(store: Store, public_id: str) -> Referral:
    with store.session() as s:
        r = s.scalar(select(Referral).where(Referral.public_id == public_id))
        assert r is not None
        return r


def history(store: Store) -> list[tuple[str, str | None, str, int | None, str]]:
    with store.session() as s:
        rows = s.execute(
            select(
                Referral.public_id,
                ReferralStatusChange.from_status,
                ReferralStatusChange.to_status,
                ReferralStatusChange.entry_id,
                ReferralStatusChange.actor,
            )
            .join(Referral)
            .order_by(ReferralStatusChange.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def audit_actions(store: Store) -> list[str]:
    with store.session() as s:
        return list(s.scalars(select(AuditLog.action).order_by(AuditLog.id)))


def test_direct_match_updates_referral_history_entry_and_audit(seeded: Store) -> None:
    eid = add_entry(seeded, "Lead", {"Lead": lead(Status="Qualified", Referral_ID__c="R1")})
    entry = process(seeded, eid)
    assert (entry.outcome, entry.reasons) == ("processed", ["status_rule:0", "direct_match"])
    assert entry.decided_by == "rules" and entry.processed_at is not None
    assert entry.candidates[0]["public_id"] == "R1"
    assert entry.decision["to_status"] == "qualified"
    r = referral(seeded, "R1")
    assert (r.status, r.ever_qualified, r.sf_lead_id) == ("qualified", True, LEAD_ID)
    assert entry.referral_id == r.id
    assert history(seeded) == [("R1", "pending", "qualified", eid, "rules")]
    assert audit_actions(seeded) == ["referral.status_changed", "entry.processed"]


def test_processing_again_changes_nothing(seeded: Store) -> None:
    eid = add_entry(seeded, "Lead", {"Lead": lead(Status="Qualified", Referral_ID__c="R1")})
    first = process(seeded, eid)
    before = referral(seeded, "R1")
    again = process(seeded, eid)
    after = referral(seeded, "R1")
    assert (again.outcome, again.processed_at, again.attempts) == (
        first.outcome,
        first.processed_at,
        1,
    )
    assert (after.status, after.updated_at, after.fields) == (
        before.status,
        before.updated_at,
        before.fields,
    )
    assert len(history(seeded)) == 1
    assert audit_actions(seeded) == ["referral.status_changed", "entry.processed"]


def test_member_match_creates_a_referral_with_keys_once(seeded: Store) -> None:
    records = {
        "Lead": lead(
            FirstName="Ana", LastName="Núñez", Email="Ana.N@GMAIL.com", Referral_Code__c="max25"
        )
    }
    eid = add_entry(seeded, "Lead", records, change="created")
    entry = process(seeded, eid)
    assert entry.outcome == "processed"
    assert entry.reasons == ["member_match", "member_by:referral_code", "referral_created"]
    with seeded.session() as s:
        created = s.get(Referral, entry.referral_id)
        member = s.scalar(select(Member))
        assert created is not None and member is not None
        assert (created.member_id, created.status, created.sf_lead_id) == (
            member.id,
            "pending",
            LEAD_ID,
        )
        # The matching keys were filled, so the next entry for Ana finds her fuzzily.
        assert (created.email_key, created.name_key, created.name_block) == (
            "anan@gmail.com",
            "ana nunez",
            "N520:A500",
        )
        count = s.scalar(select(func.count()).select_from(Referral))
    assert history(seeded)[-1][1:] == (None, "pending", eid, "rules")
    process(seeded, eid)
    with seeded.session() as s:
        assert s.scalar(select(func.count()).select_from(Referral)) == count


def test_changed_to_uses_the_previous_entry_for_the_record(seeded: Store) -> None:
    contact = {
        "Id": "003000000000001AAA",
        "FirstName": "Jane",
        "LastName": "Doe",
        "Email": "jane.doe@example.com",
        "LastModifiedById": SALES,
    }
    first = add_entry(
        seeded, "Opportunity", {"Opportunity": opp("Prospecting"), "Contact": contact}
    )
    e1 = process(seeded, first)
    assert e1.decision["to_status"] is None and e1.previous == {}
    won = add_entry(seeded, "Opportunity", {"Opportunity": opp("Closed Won"), "Contact": contact})
    e2 = process(seeded, won)
    assert e2.previous["StageName"] == "Prospecting"
    assert (e2.outcome, e2.decision["to_status"]) == ("processed", "approved")
    assert referral(seeded, "R1").status == "approved"
    # Still Closed Won, amount edited: changed_to does not fire again, and the referral is
    # approved (terminal), so the entry is skipped.
    again = add_entry(
        seeded, "Opportunity", {"Opportunity": opp("Closed Won", 2000), "Contact": contact}
    )
    e3 = process(seeded, again)
    assert (e3.outcome, e3.reasons[-1]) == ("skipped", "terminal_referral")
    assert [h[2] for h in history(seeded)] == ["approved"]


def test_own_write_is_skipped_using_the_connection_integration_user(seeded: Store) -> None:
    eid = add_entry(
        seeded,
        "Lead",
        {"Lead": lead(Status="Qualified", Referral_ID__c="R1", LastModifiedById=INTEGRATION)},
    )
    entry = process(seeded, eid)
    assert (entry.outcome, entry.reasons) == ("skipped", ["own_write"])
    assert referral(seeded, "R1").status == "pending"


def test_retrying_an_own_write_still_skips_it(seeded: Store) -> None:
    # E.g. saved failed before the receiver ran (its org was missing from the config file):
    # once retried, the bridge's own write must not be applied back to the referral.
    eid = add_entry(
        seeded,
        "Lead",
        {"Lead": lead(Status="Qualified", Referral_ID__c="R1", LastModifiedById=INTEGRATION)},
    )
    with seeded.session() as s:
        e = s.get(SalesEntry, eid)
        assert e is not None
        e.outcome, e.reasons = "failed", ["org_not_configured"]
        retry_entry(s, e, ORG, actor="reviewer@example.com")
        assert (e.outcome, e.reasons) == ("skipped", ["own_write"])
    assert referral(seeded, "R1").status == "pending"


def test_review_then_approve(seeded: Store) -> None:
    org = org_config(process={"auto_process_fuzzy": False})
    eid = add_entry(seeded, "Lead", {"Lead": lead(Status="Qualified")})
    entry = process(seeded, eid, org)
    assert (entry.outcome, entry.reasons[-1]) == ("review", "review_fuzzy_match")
    assert referral(seeded, "R1").status == "pending"  # nothing applied yet
    assert [c["public_id"] for c in entry.candidates] == ["R1"]  # not X1: other program
    with seeded.session() as s:
        e = s.get(SalesEntry, eid)
        assert e is not None
        approve_entry(s, e, org, actor="reviewer@example.com")
    r = referral(seeded, "R1")
    assert r.status == "qualified"
    assert history(seeded) == [("R1", "pending", "qualified", eid, "reviewer@example.com")]
    with seeded.session() as s:
        e = s.get(SalesEntry, eid)
        assert e is not None
        assert (e.outcome, e.decided_by, e.decision["match"]) == (
            "processed",
            "reviewer@example.com",
            "reviewer",
        )
        with pytest.raises(UsageError, match="not in review"):
            approve_entry(s, e, org, actor="reviewer@example.com")
    assert "entry.approved" in audit_actions(seeded)


def test_reject(seeded: Store) -> None:
    org = org_config(process={"auto_process_fuzzy": False})
    eid = add_entry(seeded, "Lead", {"Lead": lead(Status="Qualified")})
    process(seeded, eid, org)
    with seeded.session() as s:
        e = s.get(SalesEntry, eid)
        assert e is not None
        reject_entry(s, e, actor="reviewer@example.com", note="not a referral")
    with seeded.session() as s:
        e = s.get(SalesEntry, eid)
        assert e is not None
        assert (e.outcome, e.reasons[-1], e.decided_by) == (
            "skipped",
            "rejected",
            "reviewer@example.com",
        )
        log = s.scalars(select(AuditLog).where(AuditLog.action == "entry.rejected")).one()
        assert log.detail == {"note": "not a referral"}
    assert referral(seeded, "R1").status == "pending"


def test_failed_entry_keeps_its_error_and_is_fixed_by_editing_fields(seeded: Store) -> None:
    # Closed Won with no single Contact and no Referral ID: nothing to match on.
    eid = add_entry(seeded, "Opportunity", {"Opportunity": opp("Closed Won"), "Contact": None})
    entry = process(seeded, eid)
    assert (entry.outcome, entry.reasons[-1]) == ("failed", "missing_data")
    assert "Contact.Email" in (entry.error or "")
    with seeded.session() as s:
        e = s.get(SalesEntry, eid)
        assert e is not None
        edits = {"Contact.Email": "Jane.Doe@example.com", "Contact.Id": None}
        retry_entry(s, e, ORG, actor="reviewer@example.com", fields=edits)
    with seeded.session() as s:
        e = s.get(SalesEntry, eid)
        assert e is not None
        assert (e.outcome, e.error, e.attempts) == ("processed", None, 2)
        assert e.records["Contact"] == {"Email": "Jane.Doe@example.com", "Id": None}
        assert e.raw == {"sobject": opp("Closed Won")}  # the original payload is kept
        assert e.decision["match"] == "fuzzy"
        with pytest.raises(UsageError, match="already processed"):
            retry_entry(s, e, ORG, actor="reviewer@example.com")
    r = referral(seeded, "R1")
    assert (r.status, r.fields) == ("approved", {"deal_amount": 1000})


def test_retry_with_a_chosen_referral(seeded: Store) -> None:
    org = org_config(process={"review_when_no_member": False})
    records = {
        "Lead": lead(
            Status="Qualified",
            FirstName="Zed",
            LastName="Unknown",
            Email="zed@nowhere.example",
            Referral_Code__c="NOPE",
        )
    }
    eid = add_entry(seeded, "Lead", records)
    entry = process(seeded, eid, org)
    assert (entry.outcome, entry.reasons[-1]) == ("failed", "unmatched")
    assert entry.error and "unmatched" in entry.error
    r1 = referral(seeded, "R1")
    with seeded.session() as s:
        e = s.get(SalesEntry, eid)
        assert e is not None
        with pytest.raises(UsageError, match="relationship path"):
            retry_entry(s, e, org, actor="rev@example.com", fields={"Lead.Owner.Name": "x"})
        retry_entry(s, e, org, actor="rev@example.com", referral_id=r1.id)
    with seeded.session() as s:
        e = s.get(SalesEntry, eid)
        assert e is not None
        assert (e.outcome, e.referral_id, e.decision["match"]) == ("processed", r1.id, "reviewer")
        detail = s.scalars(select(AuditLog).where(AuditLog.action == "entry.retried")).one().detail
        assert detail["chosen_referral_id"] == r1.id
    assert referral(seeded, "R1").status == "qualified"


def test_approve_needs_a_proposal(seeded: Store) -> None:
    records = {
        "Lead": lead(
            Status="Qualified", FirstName="Zed", LastName="Unknown", Email="zed@nowhere.example"
        )
    }
    eid = add_entry(seeded, "Lead", records)
    entry = process(seeded, eid)
    assert (entry.outcome, entry.reasons[-1]) == ("review", "no_member")
    with seeded.session() as s:
        e = s.get(SalesEntry, eid)
        assert e is not None
        with pytest.raises(UsageError, match="pick a referral"):
            approve_entry(s, e, ORG, actor="rev@example.com")


def test_candidate_lookup_is_by_keys_only(seeded: Store) -> None:
    # A typo'd name still reaches Jane through the Soundex block; Bob is never loaded.
    with seeded.session() as s:
        program = s.scalar(select(Program).where(Program.key == "main"))
        assert program is not None
        typo = lead(FirstName="Jayne", LastName="Doh", Email=None)
        entry = EntryInput("Lead", LEAD_ID, "updated", {"Lead": typo})
        found = find_referrals(s, program.id, plan_lookups(entry, ORG.receiver))
    assert [c.public_id for c in found] == ["R1"]


def test_approving_a_member_match_creates_the_referral(seeded: Store) -> None:
    org = org_config(process={"auto_process_direct": False})
    records = {
        "Lead": lead(
            FirstName="Ana", LastName="Lima", Email="ana@lima.example", Referral_Code__c="MAX25"
        )
    }
    eid = add_entry(seeded, "Lead", records, change="created")
    entry = process(seeded, eid, org)
    assert (entry.outcome, entry.reasons[-1], entry.referral_id) == (
        "review",
        "review_direct_match",
        None,
    )
    assert entry.notify_state is None  # notify_on_review is not configured
    with seeded.session() as s:
        e = s.get(SalesEntry, eid)
        assert e is not None
        approve_entry(s, e, org, actor="rev@example.com")
        created = s.get(Referral, e.referral_id)
        assert created is not None
        assert (created.first_name, created.email_key, created.status) == (
            "Ana",
            "ana@lima.example",
            "pending",
        )
    assert history(seeded)[-1][1:] == (None, "pending", eid, "rev@example.com")


def test_the_receiver_program_is_created_from_the_config_when_missing(store: Store) -> None:
    eid = add_entry(store, "Lead", {"Lead": lead(Status="Qualified", Referral_Code__c="X")})
    entry = process(store, eid)
    assert (entry.outcome, entry.reasons[-1]) == ("review", "no_member")
    with store.session() as s:
        program = s.scalars(select(Program)).one()
        assert (program.key, program.name, entry.program_id) == ("main", "Main", program.id)
