"""The receiver's pure decision (SPEC §7): matching, state machine and process rules."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bridge import matchkeys as mk
from bridge.config import Receiver
from bridge.receiver.decision import REASONS, decide
from bridge.receiver.matching import EntryInput, MemberCandidate, ReferralCandidate, plan_lookups

INTEGRATION = "005INTEGRATION0AAA"
SALES = "005SALESUSER00AAAA"

WON_RULES = [
    {
        "status": "approved",
        "object": "Opportunity",
        "field": "StageName",
        "op": "equals",
        "value": "Closed Won",
    },
    {
        "status": "denied",
        "object": "Opportunity",
        "field": "StageName",
        "op": "equals",
        "value": "Closed Lost",
    },
    {
        "status": "qualified",
        "object": "Lead",
        "field": "Status",
        "op": "equals",
        "value": "Qualified",
    },
    {
        "status": "qualified",
        "object": "Contact",
        "field": "Status__c",
        "op": "equals",
        "value": "Qualified",
    },
]


def receiver(**kw: Any) -> Receiver:
    kw.setdefault("status_rules", WON_RULES)
    return Receiver.model_validate({"program": "main", **kw})


def lead(**fields: Any) -> dict[str, Any]:
    base = {
        "Id": "00Q000000000001AAA",
        "FirstName": "Jane",
        "LastName": "Doe",
        "Email": "jane.doe@example.com",
        "Company": "Acme Inc",
        "Phone": "+1 415 555 0100",
        "Status": "Open",
        "Referral_ID__c": None,
        "Referral_Code__c": None,
        "Referring_Member_Email__c": None,
        "Referring_Member_External_ID__c": None,
        "LastModifiedById": SALES,
    }
    return {**base, **fields}


def contact(**fields: Any) -> dict[str, Any]:
    base = {
        "Id": "003000000000001AAA",
        "FirstName": "Jane",
        "LastName": "Doe",
        "Email": "jane.doe@example.com",
        "Phone": None,
        "AccountId": "001000000000001AAA",
        "Status__c": None,
        "Referral_ID__c": None,
        "Referral_Code__c": None,
        "Referring_Member_Email__c": None,
        "Referring_Member_External_ID__c": None,
        "LastModifiedById": SALES,
    }
    return {**base, **fields}


ACCOUNT = {"Id": "001000000000001AAA", "Name": "Acme Inc", "LastModifiedById": SALES}


def opp(stage: str, **fields: Any) -> dict[str, Any]:
    return {
        "Id": "006000000000001AAA",
        "StageName": stage,
        "Amount": 1200,
        "AccountId": ACCOUNT["Id"],
        "LastModifiedById": SALES,
        **fields,
    }


def lead_entry(change: str = "updated", previous: dict[str, Any] | None = None, **f: Any):  # type: ignore[no-untyped-def]
    rec = lead(**f)
    return EntryInput("Lead", rec["Id"], change, {"Lead": rec}, previous or {})


def opp_entry(stage: str, contact_rec: dict[str, Any] | None = None, **extra: Any) -> EntryInput:
    records: dict[str, Any] = {
        "Opportunity": opp(stage),
        "Account": ACCOUNT,
        "Contact": contact_rec,
        "Lead": None,
        **extra,
    }
    return EntryInput("Opportunity", "006000000000001AAA", "updated", records)


def ref(id: int = 1, **values: Any) -> ReferralCandidate:
    values.setdefault("first_name", "Jane")
    values.setdefault("last_name", "Doe")
    values.setdefault("email", "jane.doe@example.com")
    return ReferralCandidate.build(id, values.pop("public_id", f"R{id:04d}"), **values)


MEMBER = MemberCandidate(
    id=7,
    name="Max Member",
    email="max@members.example",
    email_key="max@members.example",
    referral_code="MAX25",
    external_id="crm-7",
)


# ---- skipped / failed before matching ---------------------------------------------------------


def test_own_write_is_skipped() -> None:
    entry = lead_entry(LastModifiedById=INTEGRATION, Status="Qualified")
    d = decide(entry, receiver(), candidates=[ref()], integration_user_id=INTEGRATION)
    assert (d.outcome, d.reasons) == ("skipped", ["own_write"])
    # An id in its 15-character form is the same user (as the inbound jobs compare).
    entry = lead_entry(LastModifiedById=INTEGRATION[:15], Status="Qualified")
    d = decide(entry, receiver(), candidates=[ref()], integration_user_id=INTEGRATION)
    assert (d.outcome, d.reasons) == ("skipped", ["own_write"])
    # The same change by a salesperson is processed.
    entry = lead_entry(Status="Qualified")
    d = decide(entry, receiver(), candidates=[ref()], integration_user_id=INTEGRATION)
    assert d.outcome == "processed"


def test_deleted_record_is_skipped() -> None:
    entry = EntryInput("Lead", "00Q000000000001AAA", "deleted", {"Lead": None})
    assert decide(entry, receiver(), candidates=[ref()]).reasons == ["record_deleted"]


def test_missing_trigger_record_fails_and_says_what_is_missing() -> None:
    entry = EntryInput("Lead", "00Q000000000001AAA", "updated", {"Lead": None})
    d = decide(entry, receiver())
    assert (d.outcome, d.missing) == ("failed", ["Lead"])
    assert "Lead record" in (d.error or "")


def test_field_missing_from_the_data_fails_with_its_name() -> None:
    rec = lead()
    del rec["Status"]
    entry = EntryInput("Lead", rec["Id"], "updated", {"Lead": rec})
    d = decide(entry, receiver(status_rules=WON_RULES[2:]), candidates=[ref()])
    assert (d.outcome, d.reasons, d.missing) == ("failed", ["missing_data"], ["Lead.Status"])
    assert "Lead.Status" in (d.error or "") and "retry" in (d.error or "")


def test_nothing_to_match_on_fails_with_what_is_missing() -> None:
    # An Opportunity won with no single Contact (several contact roles) and no Referral ID.
    d = decide(opp_entry("Closed Won", None), receiver(), candidates=[ref()])
    assert (d.outcome, d.reasons[-1]) == ("failed", "missing_data")
    assert d.missing == ["Referral ID, email or name"]


# ---- direct match ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "candidate", "source"),
    [
        ({"Referral_ID__c": "R0001"}, {"public_id": "R0001"}, "Lead.Referral_ID__c"),
        ({"Referral_ID__c": "ext-9"}, {"external_id": "ext-9"}, "Lead.Referral_ID__c"),
        ({}, {"sf_lead_id": "00Q000000000001AAA"}, "Lead.Id"),
    ],
)
def test_direct_match(fields: dict[str, Any], candidate: dict[str, Any], source: str) -> None:
    # A different name and email: only the direct key can match.
    entry = lead_entry(Status="Qualified", FirstName="Other", Email="other@example.com", **fields)
    c = ref(1, first_name="Someone", last_name="Else", email="else@example.com", **candidate)
    d = decide(entry, receiver(), candidates=[c])
    assert (d.outcome, d.match, d.match_source) == ("processed", "direct", source)
    assert (d.referral_id, d.from_status, d.to_status) == (1, "pending", "qualified")
    assert d.reasons == ["status_rule:2", "direct_match"]
    assert d.candidates[0]["via"] == "direct" and d.candidates[0]["score"] == 1.0


def test_direct_fields_take_priority_over_salesforce_ids() -> None:
    entry = lead_entry(Status="Qualified", Referral_ID__c="R0002")
    by_id = ref(1, sf_lead_id="00Q000000000001AAA")
    by_field = ref(2)
    d = decide(entry, receiver(), candidates=[by_id, by_field])
    assert d.referral_id == 2
    assert {c["referral_id"] for c in d.candidates} == {1, 2}


def test_two_referrals_on_one_account_is_ambiguous() -> None:
    entry = EntryInput(
        "Account", ACCOUNT["Id"], "updated", {"Account": {**ACCOUNT, "Type": "Customer"}}
    )
    rules = [
        {
            "status": "approved",
            "object": "Account",
            "field": "Type",
            "op": "equals",
            "value": "Customer",
        }
    ]
    a = ref(1, sf_account_id=ACCOUNT["Id"])
    b = ref(2, sf_account_id=ACCOUNT["Id"], first_name="John")
    d = decide(entry, receiver(status_rules=rules), candidates=[a, b])
    assert (d.outcome, d.referral_id) == ("review", None)
    assert "ambiguous_match" in d.reasons
    assert [c["referral_id"] for c in d.candidates] == [1, 2]
    # With one referral on the account, it is the target.
    d = decide(entry, receiver(status_rules=rules), candidates=[a])
    assert (d.outcome, d.referral_id, d.to_status) == ("processed", 1, "approved")


# ---- fuzzy match -----------------------------------------------------------------------------


def test_fuzzy_by_normalized_email() -> None:
    entry = lead_entry(Status="Qualified", Email="J.A.N.E+ref@GMAIL.com", FirstName="J.")
    c = ref(3, email="jane@gmail.com")
    other = ref(4, email="jane.doe@example.com", first_name="Janet", last_name="Dough")
    d = decide(entry, receiver(), candidates=[other, c])
    assert (d.outcome, d.match, d.referral_id) == ("processed", "fuzzy", 3)
    assert "fuzzy_match" in d.reasons
    assert d.candidates[0]["via"] == "email" and d.candidates[0]["score"] == 1.0


@pytest.mark.parametrize(
    ("first", "last", "threshold", "matched"),
    [
        ("Jane", "Doe", 0.85, True),  # same name, different email
        ("DOE", "jane", 0.85, True),  # swapped, upper case
        ("Janie", "Doe", 0.85, True),  # close: ratio("doe janie", "doe jane") ≈ 0.94
        ("Janie", "Doe", 0.95, False),  # ...but not at 0.95
        ("John", "Dough", 0.85, False),  # too different
    ],
)
def test_fuzzy_by_name_with_threshold(
    first: str, last: str, threshold: float, matched: bool
) -> None:
    entry = lead_entry(Status="Qualified", FirstName=first, LastName=last, Email="x@other.org")
    c = ref(5)
    recv = receiver(target_match={"fuzzy_threshold": threshold})
    d = decide(entry, recv, candidates=[c])
    assert (d.referral_id == 5) is matched
    assert d.outcome == ("processed" if matched else "review")
    assert d.candidates and d.candidates[0]["via"] == "name"  # listed with its score either way
    assert 0 < d.candidates[0]["score"] <= 1


def test_fuzzy_off_matches_only_directly() -> None:
    entry = lead_entry(Status="Qualified")
    d = decide(entry, receiver(target_match={"fuzzy": False}), candidates=[ref()])
    assert (d.outcome, d.referral_id, d.candidates) == ("review", None, [])
    assert plan_lookups(entry, receiver(target_match={"fuzzy": False})).people == ()


@pytest.mark.parametrize(
    ("a", "b", "winner"),
    [
        ({"company": "Acme, Inc."}, {"company": "Globex"}, 1),  # company breaks the tie
        ({"company": "Globex"}, {"company": "ACME LLC"}, 2),
        ({"phone": "(415) 555-0100"}, {"phone": "212 555 0199"}, 1),  # phone breaks the tie
        ({"phone": "212 555 0199"}, {"phone": "4155550100"}, 2),
        ({}, {}, None),  # nothing tells them apart: ambiguous, to review
        ({"company": "Acme"}, {"company": "Acme"}, None),
    ],
)
def test_name_ties_broken_by_company_then_phone(
    a: dict[str, Any], b: dict[str, Any], winner: int | None
) -> None:
    entry = lead_entry(Status="Qualified", Email="jane@elsewhere.org")
    c1, c2 = ref(1, email="a@x.org", **a), ref(2, email="b@y.org", **b)
    d = decide(entry, receiver(), candidates=[c1, c2])
    assert d.referral_id == winner
    if winner is None:
        assert d.outcome == "review" and "ambiguous_match" in d.reasons
        assert len(d.candidates) == 2


def test_duplicate_emails_are_told_apart_by_name() -> None:
    entry = lead_entry(Status="Qualified")
    same_email_other_name = ref(1, first_name="Bob", last_name="Stone")
    d = decide(entry, receiver(), candidates=[same_email_other_name, ref(2)])
    assert (d.referral_id, d.match) == (2, "fuzzy")


def test_results_do_not_depend_on_extra_candidates() -> None:
    # The database side may hand over more than it must (blocking); the answer is the same.
    entry = lead_entry(Status="Qualified", Email="nobody@x.org")
    noise = [
        ref(10 + i, first_name=n, last_name="Zed", email=f"{i}@z.org")
        for i, n in enumerate(["Ann", "Bo", "Cy"])
    ]
    assert decide(entry, receiver(), candidates=[*noise, ref(1)]).referral_id == 1


# ---- contact matching behaviour --------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "matched"), [("trigger_record", False), ("trigger_and_account_contacts", True)]
)
def test_account_contacts_are_tried_only_when_configured(mode: str, matched: bool) -> None:
    # Won opportunity; the account has two contacts (so no single Contact) — one is Jane.
    others = [
        contact(Id="003000000000002AAA", FirstName="Bob", LastName="Stone", Email="bob@acme.com"),
        contact(Id="003000000000003AAA", Email="jane.doe@acme.com"),
    ]
    entry = opp_entry("Closed Won", None, AccountContacts=others)
    d = decide(entry, receiver(contact_matching=mode), candidates=[ref(1)])
    if matched:
        assert (d.outcome, d.referral_id, d.to_status) == ("processed", 1, "approved")
        assert d.match_source == "AccountContacts[1] (name)"
        # The contact that matched is remembered on the referral for direct matching later.
        assert d.links["sf_contact_id"] == "003000000000003AAA"
    else:
        assert (d.outcome, d.referral_id) == ("failed", None)
        assert d.reasons[-1] == "missing_data"


def test_account_contact_referral_id_is_a_direct_match() -> None:
    others = [contact(Id="003000000000009AAA", FirstName="X", Referral_ID__c="R0042")]
    entry = opp_entry("Closed Won", None, AccountContacts=others)
    recv = receiver(contact_matching="trigger_and_account_contacts")
    d = decide(entry, recv, candidates=[ref(42, first_name="Q", email="q@q.org")])
    assert (d.match, d.referral_id) == ("direct", 42)
    assert d.match_source == "AccountContacts[0].Referral_ID__c"


def test_opportunity_uses_its_single_contact() -> None:
    entry = opp_entry("Closed Won", contact())
    d = decide(entry, receiver(), candidates=[ref(1)])
    assert (d.outcome, d.referral_id, d.to_status) == ("processed", 1, "approved")
    assert d.links == {
        "sf_contact_id": "003000000000001AAA",
        "sf_opportunity_id": "006000000000001AAA",
        "sf_account_id": "001000000000001AAA",
    }


# ---- member match ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"Referral_Code__c": " max25 "}, "referral_code"),
        ({"Referring_Member_Email__c": "MAX@members.example"}, "member_email"),
        ({"Referring_Member_External_ID__c": "crm-7"}, "member_external_id"),
    ],
)
def test_member_match_creates_a_referral(fields: dict[str, Any], kind: str) -> None:
    entry = lead_entry("created", Email="new.person@example.com", **fields)
    d = decide(entry, receiver(), candidates=[], members=[MEMBER])
    assert (d.outcome, d.match, d.member_id, d.to_status) == ("processed", "member", 7, "pending")
    assert d.reasons == ["member_match", f"member_by:{kind}", "referral_created"]
    assert d.create_referral == {
        "first_name": "Jane",
        "last_name": "Doe",
        "email": "new.person@example.com",
        "company": "Acme Inc",
        "phone": "+1 415 555 0100",
    }
    assert d.links == {"sf_lead_id": "00Q000000000001AAA"}


def test_member_match_takes_the_rule_status() -> None:
    entry = lead_entry("created", Status="Qualified", Referral_Code__c="MAX25")
    d = decide(entry, receiver(), members=[MEMBER])
    assert (d.to_status, d.reasons[0]) == ("qualified", "status_rule:2")


def test_referral_code_wins_over_member_email() -> None:
    other = MemberCandidate(id=8, email="o@m.example", email_key="o@m.example")
    entry = lead_entry(Referral_Code__c="MAX25", Referring_Member_Email__c="o@m.example")
    d = decide(entry, receiver(), members=[other, MEMBER])
    assert d.member_id == 7


def test_a_matched_referral_wins_over_a_member() -> None:
    entry = lead_entry(Status="Qualified", Referral_Code__c="MAX25")
    d = decide(entry, receiver(), candidates=[ref(1)], members=[MEMBER])
    assert (d.referral_id, d.member_id, d.create_referral) == (1, None, None)


# ---- process rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("process", "entry_fields", "outcome", "reason"),
    [
        ({"auto_process_direct": True}, {"Referral_ID__c": "R0001"}, "processed", "direct_match"),
        (
            {"auto_process_direct": False},
            {"Referral_ID__c": "R0001"},
            "review",
            "review_direct_match",
        ),
        ({"auto_process_fuzzy": True}, {}, "processed", "fuzzy_match"),
        ({"auto_process_fuzzy": False}, {}, "review", "review_fuzzy_match"),
        # auto_process_fuzzy does not hold up direct matches, nor the reverse
        ({"auto_process_fuzzy": False}, {"Referral_ID__c": "R0001"}, "processed", "direct_match"),
        ({"auto_process_direct": False}, {}, "processed", "fuzzy_match"),
    ],
)
def test_auto_process_rules(
    process: dict[str, Any], entry_fields: dict[str, Any], outcome: str, reason: str
) -> None:
    entry = lead_entry(Status="Qualified", **entry_fields)
    d = decide(entry, receiver(process=process), candidates=[ref(1)])
    assert (d.outcome, d.reasons[-1]) == (outcome, reason)
    # In review the proposal is kept, for approval.
    assert (d.referral_id, d.to_status) == (1, "qualified")


def test_auto_process_direct_off_holds_member_matches_too() -> None:
    entry = lead_entry(Referral_Code__c="MAX25")
    d = decide(entry, receiver(process={"auto_process_direct": False}), members=[MEMBER])
    assert (d.outcome, d.member_id, d.create_referral is not None) == ("review", 7, True)


@pytest.mark.parametrize(
    ("review_when_no_member", "outcome", "last_reason"),
    [(True, "review", "no_member"), (False, "failed", "unmatched")],
)
def test_review_when_no_member(review_when_no_member: bool, outcome: str, last_reason: str) -> None:
    entry = lead_entry(Status="Qualified", Referral_Code__c="NOPE")
    recv = receiver(process={"review_when_no_member": review_when_no_member})
    d = decide(entry, recv, candidates=[], members=[MEMBER])
    assert (d.outcome, d.reasons[-1]) == (outcome, last_reason)
    assert {"no_match", "member_not_found"} <= set(d.reasons)
    assert (d.error is not None) is (outcome == "failed")


def test_unmatched_entry_that_claims_nothing_is_skipped() -> None:
    # An ordinary Lead edit: no rule fired, no Referral ID, no member key, nobody matched.
    d = decide(lead_entry(), receiver(), candidates=[], members=[MEMBER])
    assert (d.outcome, d.reasons) == ("skipped", ["no_match"])


@pytest.mark.parametrize(
    ("override", "ever_qualified", "review_upgrade", "outcome", "reason"),
    [
        # the defaults: a person decides an upgrade of a denied referral (SPEC §7.5)
        (False, False, True, "review", "denied_upgrade_needs_review"),
        (False, False, False, "skipped", "denied_referral_locked"),
        (False, True, True, "skipped", "denied_requalify_not_allowed"),
        (True, False, True, "review", "denied_upgrade_needs_review"),
        (True, False, False, "processed", "direct_match"),
        (True, True, False, "skipped", "denied_requalify_not_allowed"),
        (True, True, True, "skipped", "denied_requalify_not_allowed"),
    ],
)
def test_denied_referral_upgrade(
    override: bool, ever_qualified: bool, review_upgrade: bool, outcome: str, reason: str
) -> None:
    entry = lead_entry(Status="Qualified", Referral_ID__c="R0001")
    recv = receiver(override_denied=override, process={"review_denied_upgrade": review_upgrade})
    c = ref(1, status="denied", ever_qualified=ever_qualified)
    d = decide(entry, recv, candidates=[c])
    assert (d.outcome, d.reasons[-1]) == (outcome, reason)
    assert d.to_status == ("qualified" if outcome != "skipped" else None)


def test_the_reviewer_approves_a_denied_upgrade_with_the_defaults() -> None:
    entry = lead_entry(Status="Qualified", Referral_ID__c="R0001")
    recv = receiver()
    assert not recv.override_denied and recv.process.review_denied_upgrade
    c = ref(1, status="denied")
    d = decide(entry, recv, candidates=[c], forced_referral_id=1, reviewed=True)
    assert (d.outcome, d.from_status, d.to_status) == ("processed", "denied", "qualified")
    # …and a change that is no upgrade stays locked
    rules = [
        {"status": "pending", "object": "Lead", "field": "Status", "op": "equals", "value": "Open"}
    ]
    d = decide(
        lead_entry(Status="Open", Referral_ID__c="R0001"),
        receiver(status_rules=rules),
        candidates=[c],
    )
    assert (d.outcome, d.reasons[-1]) == ("skipped", "denied_referral_locked")


def test_a_referral_id_that_matches_nothing_has_its_own_reason() -> None:
    d = decide(lead_entry(Status="Qualified", Referral_ID__c="R-TYPO"), receiver(), candidates=[])
    assert d.outcome == "review"
    assert "referral_id_not_found" in d.reasons and "no_match" not in d.reasons


def test_denied_to_pending_with_override_needs_no_review() -> None:
    rules = [
        {"status": "pending", "object": "Lead", "field": "Status", "op": "equals", "value": "Open"}
    ]
    entry = lead_entry(Referral_ID__c="R0001")
    recv = receiver(status_rules=rules, override_denied=True)
    d = decide(entry, recv, candidates=[ref(1, status="denied", ever_qualified=True)])
    assert (d.outcome, d.from_status, d.to_status) == ("processed", "denied", "pending")


def test_terminal_referral_is_skipped() -> None:
    entry = lead_entry(Status="Qualified", Referral_ID__c="R0001")
    d = decide(entry, receiver(), candidates=[ref(1, status="approved")])
    assert (d.outcome, d.reasons[-1], d.referral_id) == ("skipped", "terminal_referral", 1)


def test_reviewed_decision_skips_the_review_rules() -> None:
    entry = lead_entry(Status="Qualified", Referral_ID__c="R0001")
    recv = receiver(override_denied=True, process={"auto_process_direct": False})
    c = ref(1, status="denied")
    assert decide(entry, recv, candidates=[c]).outcome == "review"
    d = decide(entry, recv, candidates=[c], forced_referral_id=1, reviewed=True)
    assert (d.outcome, d.match, d.to_status) == ("processed", "reviewer", "qualified")


def test_forced_referral_that_does_not_exist_fails() -> None:
    d = decide(lead_entry(Status="Qualified"), receiver(), forced_referral_id=99, reviewed=True)
    assert (d.outcome, d.reasons[-1]) == ("failed", "referral_not_found")


# ---- referral fields, no-ops, the explanation -------------------------------------------------


def test_referral_fields_are_applied_alone_when_no_rule_matches() -> None:
    recv = receiver(
        referral_fields={"deal_amount": "Opportunity.Amount", "stage": "Opportunity.StageName"}
    )
    entry = opp_entry("Negotiation", contact())
    d = decide(entry, recv, candidates=[ref(1, fields={"stage": "Negotiation"})])
    assert (d.outcome, d.to_status) == ("processed", None)
    assert d.field_updates == {"deal_amount": 1200}  # the stage is already there
    assert d.reasons == ["fuzzy_match", "no_status_rule", "fields_updated"]


def test_nothing_changes_is_skipped() -> None:
    entry = lead_entry(Status="Qualified", Referral_ID__c="R0001")
    c = ref(1, status="qualified", ever_qualified=True, sf_lead_id="00Q000000000001AAA")
    d = decide(entry, receiver(), candidates=[c])
    assert (d.outcome, d.reasons[-2:]) == ("skipped", ["status_unchanged", "no_change"])


def test_decision_is_json() -> None:
    entry = lead_entry(Status="Qualified")
    d = decide(entry, receiver(), candidates=[ref(1), ref(2, first_name="Janet")])
    body = json.loads(json.dumps(d.to_dict()))
    assert body["outcome"] == "processed"
    assert [c["referral_id"] for c in body["candidates"]] == [1, 2]


def test_every_reason_code_has_words() -> None:
    from pathlib import Path

    from bridge.receiver.decision import REASONS, explain

    source = "".join(
        (Path(__file__).parents[2] / "bridge" / "receiver" / f"{m}.py").read_text()
        for m in ("decision", "rules", "service")
    )
    import re

    emitted = set(re.findall(r'(?:append|reasons \+=)\(?\[?"([a-z_]+)', source))
    emitted |= set(re.findall(r'Transition\((?:True|False), "([a-z_]+)"', source))
    emitted |= set(re.findall(r'Decision\(\w+, \["([a-z_]+)"\]', source))
    emitted -= {"status_changed"}  # an allowed transition, never a reason on an entry
    assert emitted and emitted <= set(REASONS)
    assert (
        explain("status_rule:2")
        == "status rule number 2 (counting from 0) matched and sets the status"
    )
    assert explain("member_by:referral_code").endswith("(referral_code)")


@pytest.mark.parametrize(
    ("first", "referred_as", "matched"),
    [
        ("Bob", "Robert", True),  # the entry goes by the nickname
        ("Robert", "Bobby", True),  # the referral was entered with it
        ("Bill", "William", True),
        ("Bob", "William", False),  # a nickname of another name
    ],
)
def test_fuzzy_by_name_knows_nicknames(first: str, referred_as: str, matched: bool) -> None:
    """A nickname is the same first name: its blocks reach the referral and it scores as the
    full name would."""
    entry = lead_entry(Status="Qualified", FirstName=first, LastName="Kowalski", Email="x@o.org")
    c = ref(5, first_name=referred_as, last_name="Kowalski", email="k@example.com")
    plan = plan_lookups(entry, receiver())
    blocks = set(mk.name_blocks(referred_as, "Kowalski"))
    assert bool(blocks & set(plan.name_blocks)) is matched  # the pool would bring it
    d = decide(entry, receiver(), candidates=[c], plan=plan)
    assert (d.referral_id == 5) is matched


def reasons_table() -> str:
    rows = ["| code | meaning |", "|---|---|"]
    rows += [f"| `{code}` | {text} |" for code, text in REASONS.items()]
    return "\n".join(rows)


def test_every_reason_code_is_documented_in_words_in_one_place() -> None:
    """The codes the bridge writes are all in REASONS, and docs/inbound.md shows REASONS."""
    root = Path(__file__).resolve().parents[2]
    written: set[str] = set()
    patterns = (
        r'reasons(?:\.append\(|\s*\+=\s*\[|\s*=\s*\[)\s*(?:f?"([a-z_]+))',
        r'Decision\(\s*\w+,\s*\["([a-z_]+)"',
        r'_save_failed\(\s*session,\s*ev,\s*"([a-z_]+)"',
        r'unexpected="([a-z_]+)"',
        r'"([a-z_]+)" if plan\.direct_referral_ids else "([a-z_]+)"',
    )
    for path in ("bridge/receiver/decision.py", "bridge/receiver/service.py", "bridge/intake.py"):
        source = (root / path).read_text()
        for pattern in patterns:
            for match in re.finditer(pattern, source):
                written.update(g for g in match.groups() if g)
    assert {"no_match", "referral_id_not_found", "value_too_long", "own_write"} <= written
    assert written - set(REASONS) == set(), "reason codes without words in REASONS"
    docs = (root / "docs/inbound.md").read_text()
    block = docs.split("<!-- reasons:start -->\n", 1)[1].split("\n<!-- reasons:end -->", 1)[0]
    assert block == reasons_table(), "docs/inbound.md's reason table differs from REASONS:\n" + (
        reasons_table()
    )
