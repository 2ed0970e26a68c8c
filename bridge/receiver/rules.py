"""Status rules and the referral status state machine (SPEC §7.1). Pure: values in, values out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.config import StatusRule
from bridge.values import is_blank, same_value
from bridge.vocabulary import APPROVED, DENIED, QUALIFYING

# ---- evaluating the rules --------------------------------------------------------------------


@dataclass(frozen=True)
class RuleResult:
    """Which rule decided the status (index into status_rules), or what data was missing."""

    index: int | None = None
    status: str | None = None
    missing: list[str] = field(default_factory=list)


class _Missing(Exception):
    def __init__(self, ref: str):
        self.ref = ref


def _field_value(records: Mapping[str, Any], obj: str, name: str) -> tuple[bool, Any]:
    """(record present, value). A present record without the field is missing data."""
    record = records.get(obj)
    if not isinstance(record, Mapping):
        return False, None
    if name not in record:
        raise _Missing(f"{obj}.{name}")
    return True, record[name]


def rule_matches(
    rule: StatusRule,
    records: Mapping[str, Any],
    trigger_object: str,
    previous: Mapping[str, Any] | None,
) -> bool:
    """Whether one rule holds. Raises _Missing when its field is absent from a present record.

    A rule on an object with no record (null by the relational rules) does not match.
    ``changed_to`` needs the trigger record's previous values, so it only matches rules on the
    trigger object: a change on a related record arrives as its own entry. With no previous
    value known (the first entry seen for the record) the value counts as changed.
    """
    present, value = _field_value(records, rule.object, rule.field)
    if not present:
        return False
    if rule.op == "equals":
        return same_value(value, rule.value)
    if rule.op == "not_equals":
        return not same_value(value, rule.value)
    if rule.op == "in":
        return any(same_value(value, v) for v in rule.value)
    if rule.op == "is_blank":
        want_blank = rule.value is not False  # `value: false` means "is not blank"
        return is_blank(value) == want_blank
    if rule.op == "changed_to":
        if rule.object != trigger_object or not same_value(value, rule.value):
            return False
        before = (previous or {}).get(rule.field)
        return not same_value(before, rule.value)
    raise ValueError(f"unknown op {rule.op!r}")  # the config model makes this unreachable


def evaluate_status_rules(
    rules: Sequence[StatusRule],
    records: Mapping[str, Any],
    trigger_object: str,
    previous: Mapping[str, Any] | None = None,
) -> RuleResult:
    """The first rule that matches decides; a rule whose field is missing stops evaluation.

    Stopping matters: had the missing field been there, that rule might have matched first, so
    a later rule's answer could be wrong.
    """
    for i, rule in enumerate(rules):
        try:
            if rule_matches(rule, records, trigger_object, previous):
                return RuleResult(index=i, status=rule.status)
        except _Missing as exc:
            return RuleResult(missing=[exc.ref])
    return RuleResult()


# ---- the state machine -----------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """The verdict on moving a referral from one status to another."""

    allowed: bool
    reason: str  # a reason code
    upgrade_from_denied: bool = False


def check_transition(
    current: str, target: str, *, ever_qualified: bool, override_denied: bool
) -> Transition:
    """Apply SPEC §7's rules.

    - ``approved`` is terminal.
    - A ``denied`` referral changes only when ``override_denied`` is on; then ``denied`` ↔
      ``pending`` freely, and ``denied`` → ``qualified``/``approved`` only if the referral was
      never qualified (approved counts as an upgrade too: it implies qualification, and
      allowing it would sidestep the rule).
    - Everything else is allowed, including ``qualified`` → ``pending`` when a deal reopens.
    """
    if current == target:
        return Transition(False, "status_unchanged")
    if current == APPROVED:
        return Transition(False, "terminal_referral")
    if current == DENIED:
        if not override_denied:
            return Transition(False, "denied_referral_locked")
        if target in QUALIFYING:
            if ever_qualified:
                return Transition(False, "denied_requalify_not_allowed")
            return Transition(True, "status_changed", upgrade_from_denied=True)
    return Transition(True, "status_changed")
