"""Status rules, their ops and the referral state machine (SPEC §7.1), table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.config import StatusRule
from bridge.receiver.rules import check_transition, evaluate_status_rules
from bridge.values import same_value


def rule(status: str, ref: str, op: str, value: Any = None) -> StatusRule:
    obj, fld = ref.split(".")
    return StatusRule(status=status, object=obj, field=fld, op=op, value=value)  # type: ignore[arg-type]


OPP_WON = {"Opportunity": {"Id": "006A", "StageName": "Closed Won", "Amount": 5000}}


@pytest.mark.parametrize(
    ("op", "value", "actual", "matches"),
    [
        ("equals", "Closed Won", "Closed Won", True),
        ("equals", "closed won", "Closed Won ", True),  # SOQL-like: trimmed, case-insensitive
        ("equals", "Closed Won", "Closed Lost", False),
        ("equals", "Closed Won", None, False),
        ("equals", 5000, "5000.00", True),  # numbers by value
        ("equals", True, True, True),
        ("equals", True, "true", True),
        ("equals", True, False, False),
        ("not_equals", "Closed Lost", "Closed Won", True),
        ("not_equals", "Closed Won", "Closed Won", False),
        ("not_equals", "Closed Won", None, True),  # blank is not "Closed Won"
        ("in", ["Won", "Closed Won"], "Closed Won", True),
        ("in", ["Won", "Closed Won"], "Prospecting", False),
        ("in", ["Won", "Closed Won"], None, False),
        ("is_blank", None, None, True),
        ("is_blank", None, "  ", True),
        ("is_blank", None, "x", False),
        ("is_blank", True, "", True),
        ("is_blank", False, "x", True),  # value false: "is not blank"
        ("is_blank", False, None, False),
    ],
)
def test_each_op(op: str, value: Any, actual: Any, matches: bool) -> None:
    records = {"Opportunity": {"Id": "006A", "StageName": actual}}
    result = evaluate_status_rules(
        [rule("qualified", "Opportunity.StageName", op, value)], records, "Opportunity"
    )
    assert (result.status == "qualified") is matches
    assert (result.index == 0) is matches


@pytest.mark.parametrize(
    ("trigger", "previous", "current", "matches"),
    [
        ("Opportunity", {"StageName": "Prospecting"}, "Closed Won", True),
        ("Opportunity", {"StageName": "Closed Won"}, "Closed Won", False),  # no change
        ("Opportunity", {"StageName": "closed won"}, "Closed Won", False),  # same value
        ("Opportunity", {}, "Closed Won", True),  # first sighting counts as a change
        ("Opportunity", {"StageName": "Prospecting"}, "Prospecting", False),
        # changed_to is about the trigger record: an Account change cannot tell whether the
        # Opportunity's stage just changed, so the rule does not fire on it.
        ("Account", {"StageName": "Prospecting"}, "Closed Won", False),
    ],
)
def test_changed_to(trigger: str, previous: dict[str, Any], current: str, matches: bool) -> None:
    records = {
        "Opportunity": {"Id": "006A", "StageName": current},
        "Account": {"Id": "001A", "Name": "Acme"},
    }
    result = evaluate_status_rules(
        [rule("approved", "Opportunity.StageName", "changed_to", "Closed Won")],
        records,
        trigger,
        previous,
    )
    assert (result.status == "approved") is matches


def test_first_matching_rule_wins() -> None:
    rules = [
        rule("denied", "Opportunity.StageName", "equals", "Closed Lost"),
        rule("approved", "Opportunity.StageName", "equals", "Closed Won"),
        rule("qualified", "Opportunity.Amount", "not_equals", 0),
    ]
    result = evaluate_status_rules(rules, OPP_WON, "Opportunity")
    assert (result.index, result.status) == (1, "approved")
    lost = {"Opportunity": {"StageName": "Prospecting", "Amount": 10}}
    assert evaluate_status_rules(rules, lost, "Opportunity").index == 2
    none = {"Opportunity": {"StageName": "Prospecting", "Amount": 0}}
    assert evaluate_status_rules(rules, none, "Opportunity").status is None


def test_rule_on_an_absent_record_does_not_match() -> None:
    rules = [rule("approved", "Opportunity.StageName", "equals", "Closed Won")]
    result = evaluate_status_rules(
        rules, {"Contact": {"Id": "003A"}, "Opportunity": None}, "Contact"
    )
    assert result.status is None and result.missing == []


def test_absent_field_of_a_present_record_is_missing_data() -> None:
    rules = [
        rule("denied", "Opportunity.Reason__c", "equals", "Fraud"),
        rule("approved", "Opportunity.StageName", "equals", "Closed Won"),
    ]
    result = evaluate_status_rules(rules, OPP_WON, "Opportunity")
    # Rule 0 might have matched had the field been there: do not fall through to rule 1.
    assert result.status is None
    assert result.missing == ["Opportunity.Reason__c"]


@pytest.mark.parametrize(
    ("current", "target", "ever_qualified", "override", "allowed", "reason"),
    [
        ("pending", "qualified", False, False, True, "status_changed"),
        ("pending", "approved", False, False, True, "status_changed"),
        ("pending", "denied", False, False, True, "status_changed"),
        ("qualified", "approved", True, False, True, "status_changed"),
        ("qualified", "denied", True, False, True, "status_changed"),
        ("qualified", "pending", True, False, True, "status_changed"),
        ("pending", "pending", False, False, False, "status_unchanged"),
        # approved is terminal
        ("approved", "denied", True, True, False, "terminal_referral"),
        ("approved", "pending", True, True, False, "terminal_referral"),
        # denied changes only with override_denied
        ("denied", "pending", False, False, False, "denied_referral_locked"),
        ("denied", "qualified", False, False, False, "denied_referral_locked"),
        ("denied", "pending", True, True, True, "status_changed"),  # denied <-> pending
        ("pending", "denied", True, True, True, "status_changed"),
        ("denied", "qualified", False, True, True, "status_changed"),  # never qualified
        ("denied", "qualified", True, True, False, "denied_requalify_not_allowed"),
        ("denied", "approved", False, True, True, "status_changed"),
        ("denied", "approved", True, True, False, "denied_requalify_not_allowed"),
    ],
)
def test_state_machine(
    current: str, target: str, ever_qualified: bool, override: bool, allowed: bool, reason: str
) -> None:
    t = check_transition(current, target, ever_qualified=ever_qualified, override_denied=override)
    assert (t.allowed, t.reason) == (allowed, reason)
    assert t.upgrade_from_denied == (allowed and current == "denied" and target != "pending")


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("5", 5.0, True),
        ("5.5", 5, False),
        (None, "", True),
        ("x", None, False),
        ("ABC", "abc", True),
    ],
)
def test_same_value(a: Any, b: Any, same: bool) -> None:
    assert same_value(a, b) is same
