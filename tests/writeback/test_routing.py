"""Lead routing, pure: criteria and delay with a controllable clock, the owner priority with
each option on and off, account ownership rules with "then by" and both fallbacks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.writeback.routing import (
    AccountRule,
    AccountRules,
    Condition,
    Criteria,
    OwnerChoice,
    Person,
    Touches,
    account_owner,
    lead_owner,
    record_owner,
    verdict,
)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)

# (criteria, person, outbound on, manual, expected state, due, reason says)
VERDICTS = [
    ("all: sent at once", Criteria(), Person(None, None), True, False, "send", None, "meets"),
    ("two stars, has three", Criteria(2), Person(3, NOW), True, False, "send", None, "meets"),
    ("two stars, has one", Criteria(2), Person(1, None), True, False, "below_criteria", None,
     "score 1 is below the minimum of 2"),
    ("a minimum and no score", Criteria(1), Person(None, None), True, False, "below_criteria",
     None, "no score"),
    ("qualified now, one hour delay", Criteria(1, HOUR), Person(2, NOW), True, False, "wait",
     NOW + HOUR, "after qualifying"),
    ("qualified 2 h ago, one hour delay", Criteria(1, HOUR), Person(2, NOW - 2 * HOUR), True,
     False, "send", None, "delay has passed"),
    ("delay from the conversation's close", Criteria(1, HOUR),
     Person(2, NOW - 2 * HOUR, conversation_closed_at=NOW - HOUR / 2), True, False, "wait",
     NOW + HOUR / 2, "after the conversation closed"),
    ("manual sync ignores criteria and delay", Criteria(3, HOUR), Person(0, None), True, True,
     "send", None, "by hand"),
    ("integration off holds even a manual sync", Criteria(), Person(3, NOW), False, True,
     "paused", None, "outbound direction is off"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("criteria", "person", "on", "manual", "state", "due", "reason"),
    [v[1:] for v in VERDICTS],
    ids=[v[0] for v in VERDICTS],
)
def test_whether_and_when(criteria, person, on, manual, state, due, reason) -> None:
    out = verdict(person, criteria, NOW, outbound_on=on, manual=manual)
    assert (out.state, out.due_at) == (state, due)
    assert reason in out.reason


def test_raising_the_score_later_starts_the_delay_then() -> None:
    criteria = Criteria(2, HOUR)
    assert verdict(Person(1, None), criteria, NOW).state == "below_criteria"
    raised = Person(2, qualified_at=NOW + HOUR)  # the store records when it first qualified
    assert verdict(raised, criteria, NOW + HOUR).due_at == NOW + 2 * HOUR
    assert verdict(raised, criteria, NOW + 2 * HOUR).state == "send"


USERS = {"ann": "005ANN", "bob": "005BOB", "gone": None}  # gone: inactive in Salesforce
TOUCHED = Touches(meeting="ann", routed="bob", closed="bob")

# (touches, enabled options, fallback, expected user, source, passed over)
OWNERS = [
    ("the meeting's calendar first", TOUCHED, ("meeting", "routed", "closed"), None,
     "005ANN", "meeting", 0),
    ("meeting switched off: last routed", TOUCHED, ("routed", "closed"), None,
     "005BOB", "routed", 1),
    ("only closed on", TOUCHED, ("closed",), None, "005BOB", "closed", 2),
    ("no meeting: routed", Touches(routed="bob"), ("meeting", "routed", "closed"), None,
     "005BOB", "routed", 1),
    ("meeting owner inactive: routed", Touches(meeting="gone", routed="bob"),
     ("meeting", "routed", "closed"), None, "005BOB", "routed", 1),
    ("unmapped rep everywhere: fallback", Touches(meeting="zed", closed="gone"),
     ("meeting", "routed", "closed"), "005FALL", "005FALL", "fallback", 3),
    ("everything off: fallback", TOUCHED, (), "005FALL", "005FALL", "fallback", 3),
    ("nothing applies and no fallback: unresolved", Touches(), ("meeting",), None,
     None, None, 3),
]  # fmt: skip


@pytest.mark.parametrize(
    ("touches", "enabled", "fallback", "user", "source", "passed"),
    [o[1:] for o in OWNERS],
    ids=[o[0] for o in OWNERS],
)
def test_lead_owner_priority(touches, enabled, fallback, user, source, passed) -> None:
    out = lead_owner(touches, USERS, enabled=enabled, fallback=fallback)
    assert (out.user_id, out.source, len(out.passed_over)) == (user, source, passed)


def test_an_unresolved_owner_says_why_in_words() -> None:
    out = lead_owner(Touches(meeting="gone"), USERS, enabled=("meeting", "closed"))
    assert out.user_id is None
    assert out.passed_over == (
        "meeting: gone maps to no active Salesforce user",
        "routed: switched off",
        "closed: nobody",
    )


ENTERPRISE = AccountRule(
    "Enterprise",
    (Condition("NumberOfEmployees", "gte", 1000), Condition("BillingCountry", "in", ["US", "CA"])),
    owner_field="Strategic_Rep__c",
    then_by="OwnerId",
    fallback="005ENTFALL",
)
HEALTH = AccountRule("Healthcare", (Condition("Industry", "equals", "Healthcare"),), "OwnerId")
RULES = AccountRules(
    (ENTERPRISE, HEALTH), no_segment_fallback="005OTHER", mapped_users=frozenset({"005A", "005B"})
)

# (account, expected user, source, reason says)
ACCOUNTS = [
    ("enterprise, first field", {"NumberOfEmployees": 5000, "BillingCountry": "US",
     "Strategic_Rep__c": "005A", "OwnerId": "005B"}, "005A", "account_rule", "Strategic_Rep__c"),
    ("enterprise, then by", {"NumberOfEmployees": "1000", "BillingCountry": "CA",
     "Strategic_Rep__c": None, "OwnerId": "005B"}, "005B", "account_rule", "OwnerId"),
    ("enterprise, owner not a mapped rep: the rule's fallback", {"NumberOfEmployees": 2000,
     "BillingCountry": "US", "Strategic_Rep__c": "005X", "OwnerId": ""}, "005ENTFALL",
     "fallback", "its fallback"),
    ("too small for enterprise, healthcare", {"NumberOfEmployees": 999, "BillingCountry": "US",
     "Industry": "Healthcare", "OwnerId": "005B"}, "005B", "account_rule", "Healthcare"),
    ("healthcare, owner unmapped, no rule fallback", {"Industry": "healthcare",
     "OwnerId": "005X"}, None, None, "no owner"),
    ("in no segment: the other-companies fallback", {"Industry": "Retail"}, "005OTHER",
     "fallback", "in no segment"),
    ("employees not a number: not enterprise", {"NumberOfEmployees": "many",
     "BillingCountry": "US"}, "005OTHER", "fallback", "in no segment"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("account", "user", "source", "reason"),
    [a[1:] for a in ACCOUNTS],
    ids=[a[0] for a in ACCOUNTS],
)
def test_account_ownership_rules(account, user, source, reason) -> None:
    out = account_owner(account, RULES)
    assert (out.user_id, out.source) == (user, source)
    assert reason in out.reason


def test_no_rules_and_no_fallback_leaves_the_owner_unresolved() -> None:
    assert account_owner({"Industry": "Retail"}, AccountRules()).user_id is None


# ---- the referral's owner: explicit owner > routing (new records only) > left as it is -------

OWNER_USERS = {"sally": "005SALLY", "ghost": None}
ROUTED = OwnerChoice("005ROUTED", "meeting", "the user whose calendar the meeting was booked on")

# (owner rep, new record, routing on, expected user, source, passed over)
RECORD_OWNERS = [
    ("explicit owner wins over routing on create", "sally", True, True, "005SALLY", "owner", ()),
    ("explicit owner flows on update", "sally", False, True, "005SALLY", "owner", ()),
    ("explicit owner without routing", "sally", True, False, "005SALLY", "owner", ()),
    ("no owner, new record: routing's choice", None, True, True, "005ROUTED", "meeting", ()),
    ("an owner mapping to no user: routing, saying why", "ghost", True, True, "005ROUTED",
     "meeting", ("owner: ghost maps to no active Salesforce user",)),
    ("no owner, update: OwnerId left alone", None, False, True, None, None, None),
    ("an unusable owner on update: left alone", "ghost", False, True, None, None, None),
    ("no owner, routing off: Salesforce assigns", None, True, False, None, None, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("owner", "new", "routes", "user", "source", "passed"),
    [pytest.param(*row[1:], id=row[0]) for row in RECORD_OWNERS],
)
def test_record_owner_precedence(owner, new, routes, user, source, passed) -> None:
    asked: list[tuple[str, ...]] = []

    def route(why: tuple[str, ...]) -> OwnerChoice:
        asked.append(why)
        return OwnerChoice(ROUTED.user_id, ROUTED.source, ROUTED.reason, why)

    choice = record_owner(owner, OWNER_USERS, new=new, route=route if routes else None)
    if user is None:
        assert choice is None
        return
    assert choice is not None
    assert (choice.user_id, choice.source, choice.passed_over) == (user, source, passed)
    assert bool(asked) == (source != "owner")  # routing is not even asked when the owner wins
