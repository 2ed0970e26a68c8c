"""The binary arrays of a delivery's columns reach PostgreSQL as psycopg's own lists would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from bridge.store import Store, pgarrays

NOW = datetime(2026, 12, 4, 1, 2, 3, 456789, tzinfo=UTC)

CASES: list[tuple[str, Any, list[Any]]] = [
    ("text", pgarrays.text_array, ["/topic/SFB_Lead", "", "Zoë – 名前 😀", "x" * 70_000]),
    ("text", pgarrays.text_array, ["00Q000000000001AAA", None, "003000000000002AAA"]),
    ("text", pgarrays.text_array, [None]),
    ("text", pgarrays.text_array, []),
    ("bigint", pgarrays.bigint_array, [1, -5, 0, 2**63 - 1, -(2**63)]),
    ("bigint", pgarrays.bigint_array, [None, 7]),
    (
        "timestamptz",
        pgarrays.timestamptz_array,
        [
            NOW,
            datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=5))),
            datetime(1, 1, 1, tzinfo=UTC),
            datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        ],
    ),
    ("timestamptz", pgarrays.timestamptz_array, [NOW, datetime(2026, 1, 5, 10, 0)]),  # naive: UTC
    ("timestamptz", pgarrays.timestamptz_array, [None, NOW]),
    ("varchar", pgarrays.varchar_array, ["a@example.com", None, ""]),
    ("integer", pgarrays.integer_array, [1, -(2**31), 2**31 - 1, 0]),
    ("integer", pgarrays.integer_array, [None, 3]),
    ("boolean", pgarrays.boolean_array, [True, False, None]),
    ("boolean", pgarrays.boolean_array, []),
    ("float", pgarrays.double_array, [0.5, -1e300, 3.0, 1 / 3]),
    ("float", pgarrays.double_array, [None, 2.25]),
    ("json", pgarrays.json_array, ['{"a": "é", "b": [1, 2.5, null]}', None, "[]"]),
]


@pytest.mark.parametrize(("kind", "array", "values"), CASES)
def test_a_column_arrives_as_psycopgs_own_list_would(
    postgres_store: Store, kind: str, array: Any, values: list[Any]
) -> None:
    as_list = [
        v.replace(tzinfo=UTC) if isinstance(v, datetime) and not v.tzinfo else v for v in values
    ]
    statement = f"SELECT %(ours)b::{kind}[]::text, %(psycopgs)s::{kind}[]::text, %(ours)b::{kind}[]"
    with postgres_store.engine.connect() as conn:
        ours, psycopgs, back = conn.exec_driver_sql(
            statement, {"ours": array(values), "psycopgs": as_list}
        ).one()
    assert ours == psycopgs
    assert len(array(values)) == len(values)
    if kind != "json":
        assert back == as_list
