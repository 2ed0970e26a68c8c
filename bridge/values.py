"""Comparing Salesforce values with the values a config writes: one meaning for "blank" and
"the same value", used by the status rules, the config's own contradiction check and
`sfbridge config check`. Pure; imports nothing of the bridge but the vocabulary.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from bridge.vocabulary import RuleOp


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _canonical(value: Any) -> str:
    """One comparable form for a Salesforce or YAML value.

    Strings compare trimmed and case-insensitively (as SOQL's ``=`` does), numbers by value
    (``5``, ``5.0`` and ``"5.00"`` are equal), booleans as ``true``/``false``.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        return _number(value)
    text = str(value).strip()
    try:
        return _number(Decimal(text))
    except InvalidOperation:
        return text.casefold()


def _number(value: int | float | Decimal) -> str:
    d = Decimal(str(value))
    if not d.is_finite():
        return str(d).casefold()
    d = d.normalize()
    return format(d, "f")


def same_value(actual: Any, expected: Any) -> bool:
    if is_blank(actual):
        return is_blank(expected)
    if is_blank(expected):
        return False
    return _canonical(actual) == _canonical(expected)


def contains(values: list[Any], value: Any) -> bool:
    """Whether `value` is the same value as one of `values`."""
    return any(same_value(v, value) for v in values)


# ---- one condition covering another ----------------------------------------------------------


class Condition(Protocol):
    """What a status rule tests (bridge.config.StatusRule has these fields)."""

    @property
    def object(self) -> str: ...
    @property
    def field(self) -> str: ...
    @property
    def op(self) -> RuleOp: ...
    @property
    def value(self) -> Any: ...


def covers(earlier: Condition, later: Condition) -> bool:
    """Whether `earlier` matches whenever `later` does (so, first match winning, `later` can
    never decide)."""
    if (earlier.object, earlier.field) != (later.object, later.field):
        return False
    e_op, l_op = earlier.op, later.op
    # What `later` accepts, as (kind, values): "set" of values or "not" (anything but).
    if l_op in ("equals", "changed_to"):
        accepted: tuple[str, list[Any]] = ("set", [later.value])
    elif l_op == "in":
        accepted = ("set", list(later.value))
    elif l_op == "not_equals":
        accepted = ("not", [later.value])
    elif later.value is False:  # is_blank false: any non-blank value
        accepted = ("not", [None])
    else:
        accepted = ("set", [None])
    kind, values = accepted
    if e_op == "changed_to":
        return l_op == "changed_to" and same_value(earlier.value, later.value)
    if e_op in ("equals", "in"):
        allowed = [earlier.value] if e_op == "equals" else list(earlier.value)
        return kind == "set" and all(contains(allowed, v) for v in values)
    if e_op == "not_equals":
        if kind == "set":
            return not contains(values, earlier.value)
        return contains(values, earlier.value)  # "not X" inside "not X"
    if earlier.value is False:  # earlier: not blank
        return (kind == "set" and not any(is_blank(v) for v in values)) or (
            kind == "not" and any(is_blank(v) for v in values)
        )
    return kind == "set" and all(is_blank(v) for v in values)  # earlier: is blank
