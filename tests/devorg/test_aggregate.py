"""FORMAT() and group ordering of aggregate SOQL (pure; the queries run end to end in
test_soql_integrations.py)."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.devorg.aggregate import format_value, groups
from bridge.devorg.schema import FieldDef
from bridge.devorg.soql import parse_query


@pytest.mark.parametrize(
    ("fd", "value", "shown"),
    [
        (FieldDef("CloseDate", "date"), "2026-03-08", "3/8/2026"),
        (FieldDef("CreatedDate", "datetime"), "2026-03-18T00:05:00Z", "3/18/2026, 12:05 AM"),
        (FieldDef("CreatedDate", "datetime"), "2026-03-18T13:30:00Z", "3/18/2026, 1:30 PM"),
        (FieldDef("Amount", "currency", scale=2), 1234567.5, "$1,234,567.50"),
        (FieldDef("Amount", "currency", scale=2), -5.0, "-$5.00"),
        (FieldDef("AnnualRevenue", "currency", scale=0), 2500000.0, "$2,500,000.00"),
        (FieldDef("Probability", "percent"), 75.0, "75%"),
        (FieldDef("NumberOfEmployees", "int"), 12000, "12,000"),
        (None, 3, "3"),  # a COUNT
        (FieldDef("CloseDate", "date"), None, None),
    ],
)  # fmt: skip
def test_format(fd: FieldDef | None, value: Any, shown: Any) -> None:
    assert format_value(fd, value) == shown


def test_rollup_order_puts_subtotals_after_their_groups() -> None:
    q = parse_query("SELECT A, B, COUNT(Id) FROM Lead GROUP BY ROLLUP(A, B)")
    rows = [{"A": a, "B": b} for a, b in [("y", "2"), ("x", "1"), ("X", "2"), ("y", None)]]
    found = groups(q, rows, lambda rec, path: rec.get(path))
    shown = [(g.key, sorted(g.rolled), len(g.members)) for g in found]
    assert shown == [
        (("x", "1"), [], 1),
        (("X", "2"), [], 1),  # text groups case-insensitively: "x" and "X" are one A
        (("x", None), [1], 2),
        (("y", None), [], 1),  # a real null B sorts first ...
        (("y", "2"), [], 1),
        (("y", None), [1], 2),  # ... and its subtotal comes after the group
        ((None, None), [0, 1], 4),
    ]
