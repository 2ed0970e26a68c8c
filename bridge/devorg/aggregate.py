"""Aggregate SOQL on the rows a WHERE clause kept: GROUP BY [ROLLUP | CUBE], COUNT,
COUNT_DISTINCT, MIN, MAX, SUM, AVG, GROUPING, HAVING, ORDER BY / LIMIT / OFFSET on groups,
FORMAT() of the results, and the rules Salesforce refuses a query by.

Pure: the query engine hands over resolved field definitions and a value function. Follows the
SOQL and SOSL Reference: Aggregate Functions, GROUP BY (and its considerations: no queryMore,
a LIMIT needs a GROUP BY), GROUP BY ROLLUP / CUBE, GROUPING(), HAVING, Using Aliases with
GROUP BY (the expr0… names), Date Functions, FORMAT().
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from bridge.devorg import soql
from bridge.devorg.schema import FieldDef
from bridge.devorg.soql import Aggregate, FieldRef, Query, SoqlError

Value = Callable[[dict[str, Any], str], Any]

NUMERIC = ("int", "double", "currency", "percent")
# Types describe reports as not groupable (see schema.field_describe): group by a date function.
NOT_GROUPABLE = ("textarea", "double", "currency", "percent", "datetime", "multipicklist")
TOO_MANY_ROWS = (
    "Aggregate query does not support queryMore(), use LIMIT to restrict the results to a "
    "single batch"
)


def _at(q: Query, pos: int, message: str) -> str:
    return f"\n{q.text}\n{' ' * pos}^\nERROR at Row:1:Column:{pos + 1}\n{message}"


def _name(ref: FieldRef) -> str:
    """The output key of a grouped field: its API name (Account.Name groups as "Name")."""
    return ref.path.split(".")[-1]


# ---- the rules -------------------------------------------------------------------------------


def check(q: Query, fields: dict[str, FieldDef]) -> None:
    """Refuse what Salesforce refuses in an aggregate query (fields: canonical path, lower case,
    -> its definition)."""
    if q.subqueries or q.typeofs or q.field_sets:
        raise SoqlError(
            "MALFORMED_QUERY",
            "Aggregate queries cannot include child relationship queries, TYPEOF or FIELDS()",
        )
    grouped = {ref.grouping_key for ref in q.group_by}
    for ref in q.group_by:
        fd = fields[ref.path.lower()]
        if not ref.functions and fd.type in NOT_GROUPABLE or fd.type == "textarea":
            raise SoqlError(
                "INVALID_FIELD",
                _at(q, ref.pos, f"field '{fd.name}' can not be grouped in a query call"),
            )
    for column in q.columns:
        if isinstance(column, FieldRef) and column.grouping_key not in grouped:
            raise SoqlError(
                "MALFORMED_QUERY",
                _at(q, column.pos, f"Field must be grouped or aggregated: {column.text}"),
            )
    for agg in q.aggregates + _having_aggregates(q):
        _check_aggregate(q, agg, fields[agg.field.path.lower()], grouped)
    for cmp in soql.iter_comparisons(q.having):
        if isinstance(cmp.field, FieldRef) and cmp.field.grouping_key not in grouped:
            raise SoqlError(
                "MALFORMED_QUERY",
                _at(q, cmp.field.pos, f"Field must be grouped or aggregated: {cmp.field.text}"),
            )
    for item in q.order_by:
        if isinstance(item.field, FieldRef) and item.field.grouping_key not in grouped:
            raise SoqlError(
                "MALFORMED_QUERY",
                _at(
                    q,
                    item.field.pos,
                    f"Ordered field must be grouped or aggregated: {item.field.text}",
                ),
            )
    if q.having is not None and not q.group_by:
        raise SoqlError("MALFORMED_QUERY", "HAVING can only be used with a GROUP BY clause")
    if q.limit is not None and not q.group_by and not q.count:
        # "You must use a GROUP BY clause if your query uses a LIMIT clause and an aggregated
        # function" (Considerations When Using GROUP BY).
        raise SoqlError(
            "MALFORMED_QUERY",
            "A query with an aggregate function and a LIMIT clause must have a GROUP BY clause",
        )
    aliases = [c.alias.lower() for c in q.columns if getattr(c, "alias", None)]
    if len(aliases) != len(set(aliases)):
        raise SoqlError("MALFORMED_QUERY", "duplicate alias: each alias must be unique")


def _having_aggregates(q: Query) -> list[Aggregate]:
    return [c.field for c in soql.iter_comparisons(q.having) if isinstance(c.field, Aggregate)]


def _check_aggregate(q: Query, agg: Aggregate, fd: FieldDef, grouped: set[str]) -> None:
    fn = agg.function
    allowed = {
        "SUM": fd.type in NUMERIC,
        "AVG": fd.type in NUMERIC,
        "MIN": fd.type not in ("textarea", "boolean", "multipicklist"),
        "MAX": fd.type not in ("textarea", "boolean", "multipicklist"),
        "COUNT": fd.type != "textarea",
        "COUNT_DISTINCT": fd.type != "textarea",
    }
    if fn == "GROUPING":
        if agg.field.grouping_key not in grouped:
            raise SoqlError(
                "MALFORMED_QUERY",
                _at(q, agg.field.pos, f"GROUPING({fd.name}): the field must be grouped"),
            )
        return
    if not allowed[fn]:
        raise SoqlError(
            "INVALID_FIELD",
            _at(q, agg.field.pos, f"field {fd.name} does not support aggregate operator {fn}"),
        )


# ---- running ---------------------------------------------------------------------------------


@dataclass
class Group:
    refs: list[FieldRef]  # the GROUP BY fields
    key: tuple[Any, ...]  # the group's values (None where rolled up)
    rolled: frozenset[int]  # positions of GROUP BY fields this subtotal row aggregates over
    members: list[dict[str, Any]]

    def position(self, ref: FieldRef) -> int:
        return next(i for i, r in enumerate(self.refs) if r.grouping_key == ref.grouping_key)

    def value(self, ref: FieldRef, value: Value) -> Any:
        """A grouped field's value: every member shares it; null in a subtotal over it."""
        if self.position(ref) in self.rolled or not self.members:
            return None
        return _group_value(ref, self.members[0], value)


def _group_value(ref: FieldRef, rec: dict[str, Any], value: Value) -> Any:
    return soql.apply_functions(ref.functions, value(rec, ref.path))


def _fold(v: Any) -> Any:
    # Text groups as SOQL compares it: case-insensitively.
    return v.lower() if isinstance(v, str) else v


def groups(q: Query, rows: list[dict[str, Any]], value: Value) -> list[Group]:
    """The query's groups in Salesforce's order: by value, each ROLLUP/CUBE subtotal after the
    groups it adds up, the grand total last. No GROUP BY: one group, even of no rows."""
    if not q.group_by:
        return [Group([], (), frozenset(), rows)]
    base: dict[tuple[Any, ...], Group] = {}
    for rec in rows:
        key = tuple(_group_value(ref, rec, value) for ref in q.group_by)
        folded = tuple(_fold(v) for v in key)
        base.setdefault(folded, Group(q.group_by, key, frozenset(), [])).members.append(rec)
    out = list(base.values())
    n = len(q.group_by)
    if q.group_kind == "ROLLUP":
        levels = [frozenset(range(k, n)) for k in range(n - 1, -1, -1)]
    elif q.group_kind == "CUBE":
        subsets = itertools.chain.from_iterable(
            itertools.combinations(range(n), r) for r in range(1, n + 1)
        )
        levels = [frozenset(s) for s in subsets]
    else:
        levels = []
    for rolled in levels:
        totals: dict[tuple[Any, ...], Group] = {}
        for g in base.values():
            key = tuple(None if i in rolled else v for i, v in enumerate(g.key))
            folded = tuple(_fold(v) for v in key)
            totals.setdefault(folded, Group(q.group_by, key, rolled, [])).members.extend(g.members)
        out.extend(totals.values())

    def order(g: Group) -> tuple[Any, ...]:
        return tuple(
            (1,) if i in g.rolled else (0, *_sort_key(g.key[i])) for i in range(len(g.key))
        )

    return sorted(out, key=order)


def compute(agg: Aggregate, g: Group, value: Value) -> Any:
    """One aggregate over a group (nulls ignored, except by COUNT(Id))."""
    if agg.function == "GROUPING":
        return 1 if g.position(agg.field) in g.rolled else 0
    values = [v for v in (value(r, agg.field.path) for r in g.members) if v is not None]
    fn = agg.function
    if fn == "COUNT":
        return len(values)
    if fn == "COUNT_DISTINCT":
        return len({_fold(v) for v in values})
    if not values:
        return None
    if fn == "SUM":
        return sum(values)
    if fn == "AVG":
        return sum(values) / len(values)
    pick = min if fn == "MIN" else max
    return pick(values, key=_sort_key)


def run(
    q: Query,
    rows: list[dict[str, Any]],
    fields: dict[str, FieldDef],
    value: Value,
    *,
    batch_size: int,
    now: datetime,
) -> dict[str, Any]:
    """The query result of an aggregate query over the rows its WHERE clause kept."""
    found = [g for g in groups(q, rows, value) if _having(q, g, value, now)]
    found = _arrange(q, found, value)
    if q.count:
        return {"totalSize": len(found), "done": True, "records": []}
    if len(found) > batch_size:
        raise SoqlError("MALFORMED_QUERY", TOO_MANY_ROWS)
    records = [_row(q, g, fields, value) for g in found]
    return {"totalSize": len(records), "done": True, "records": records}


def _having(q: Query, g: Group, value: Value, now: datetime) -> bool:
    if q.having is None:
        return True
    by_key = {a.key: a for a in _having_aggregates(q)}

    def resolve(_: dict[str, Any], path: str) -> Any:
        if path in by_key:
            return compute(by_key[path], g, value)
        # A grouped field: every member has the same value (evaluate_where applies functions).
        ref = next(r for r in q.group_by if r.path == path)
        if g.position(ref) in g.rolled or not g.members:
            return None
        return value(g.members[0], path)

    return soql.evaluate_where(q.having, {}, now=now, resolve=resolve)


def _arrange(q: Query, found: list[Group], value: Value) -> list[Group]:
    for item in reversed(q.order_by):

        def key_of(g: Group, item: Any = item) -> Any:
            if isinstance(item.field, Aggregate):
                return compute(item.field, g, value)
            return g.value(item.field, value)

        keyed = [(key_of(g), g) for g in found]
        present = [kg for kg in keyed if kg[0] is not None]
        nulls = [g for k, g in keyed if k is None]
        present.sort(key=lambda kg: _sort_key(kg[0]), reverse=item.descending)
        ordered = [g for _, g in present]
        found = ordered + nulls if item.nulls_last else nulls + ordered
    if q.offset:
        found = found[q.offset :]
    if q.limit is not None:
        found = found[: q.limit]
    return found


def _row(q: Query, g: Group, fields: dict[str, FieldDef], value: Value) -> dict[str, Any]:
    row: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
    unnamed = 0
    for column in q.columns:
        if isinstance(column, Aggregate):
            result = compute(column, g, value)
            if column.format:
                fd = fields[column.field.path.lower()]
                result = format_value(fd if column.function in ("MIN", "MAX", "SUM", "AVG")
                                      else None, result)  # fmt: skip
        else:
            result = g.value(column, value)
            if "FORMAT" in column.functions:
                result = format_value(_formatted_type(column, fields), result)
        named = column.alias
        if named is None and (
            isinstance(column, Aggregate) or set(column.functions) & soql.DATE_FUNCTIONS
        ):
            named = f"expr{unnamed}"
            unnamed += 1
        row[named or _name(column)] = result
    return row


def _formatted_type(ref: FieldRef, fields: dict[str, FieldDef]) -> FieldDef | None:
    if set(ref.functions) & soql.DATE_FUNCTIONS:
        return None  # a date function's number formats as a number
    return fields[ref.path.lower()]


# ---- FORMAT() --------------------------------------------------------------------------------


def format_value(fd: FieldDef | None, value: Any) -> Any:
    """FORMAT(): a value as the org's locale (en_US, GMT, USD) shows it."""
    if value is None:
        return None
    kind = fd.type if fd is not None else ("int" if isinstance(value, int) else "double")
    if kind == "date" and isinstance(value, str):
        d = date.fromisoformat(value[:10])
        return f"{d.month}/{d.day}/{d.year}"
    if kind == "datetime" and isinstance(value, str):
        when = soql.parse_datetime(value)
        hour = when.hour % 12 or 12
        half = "AM" if when.hour < 12 else "PM"
        return f"{when.month}/{when.day}/{when.year}, {hour}:{when.minute:02d} {half}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    scale = fd.scale if fd is not None else (0 if isinstance(value, int) else 2)
    if kind == "currency":
        text = f"{abs(value):,.{scale or 2}f}"
        return f"-${text}" if value < 0 else f"${text}"
    text = f"{value:,.{scale}f}"
    return text + "%" if kind == "percent" else text


def _sort_key(value: Any) -> tuple[Any, ...]:
    if isinstance(value, str):
        return (1, value.lower())
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, int | float):
        return (0, value)
    if value is None:
        return (-1,)
    return (2, str(value))


def referenced_fields(q: Query) -> Iterable[FieldRef]:
    """Every field an aggregate query names, for the engine to resolve."""
    yield from q.group_by
    for column in q.columns:
        yield column.field if isinstance(column, Aggregate) else column
    for cmp in soql.iter_comparisons(q.having):
        yield cmp.field.field if isinstance(cmp.field, Aggregate) else cmp.field
    for item in q.order_by:
        yield item.field.field if isinstance(item.field, Aggregate) else item.field
