"""SOQL: a parser for the subset integrations send, and evaluation of WHERE against a record.

Parsing is schema-free: field paths stay as written (`account.name`); the REST layer resolves
them against describe and reports INVALID_FIELD / INVALID_TYPE with Salesforce's texts.
Follows the SOQL and SOSL Reference (SELECT, WHERE, comparison operators, date formats and date
literals, ORDER BY, LIMIT, OFFSET).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any


class SoqlError(Exception):
    """A query Salesforce would reject: .code is the REST errorCode, .message its text."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ---- tokens ---------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})(?![\w:])
  | (?P<number>[+-]?\d+(?:\.\d+)?)(?![\w])
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),:])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    """,
    re.VERBOSE,
)

_ESCAPES = {
    "n": "\n",
    "N": "\n",
    "r": "\r",
    "R": "\r",
    "t": "\t",
    "T": "\t",
    "b": "\b",
    "B": "\b",
    "f": "\f",
    "F": "\f",
    '"': '"',
    "'": "'",
    "\\": "\\",
}


@dataclass
class Token:
    kind: str
    text: str
    pos: int  # 0-based character offset
    value: Any = None


def _unescape(body: str, pos: int) -> tuple[str, bool]:
    """Unescape a string literal; returns (text, has LIKE escapes kept as \\% / \\_)."""
    out = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            if i + 1 >= len(body):
                raise SoqlError("MALFORMED_QUERY", "Invalid string literal")
            nxt = body[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
            elif nxt in "%_":
                out.append("\\" + nxt)  # kept for LIKE; '=' strips them below
            else:
                raise SoqlError(
                    "MALFORMED_QUERY",
                    f"Invalid string literal '{body}'. Illegal character sequence '\\{nxt}' "
                    "in string literal.",
                )
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out), False


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{text[pos:].split()[0]}'")
        kind = m.lastgroup or ""
        raw = m.group()
        if kind != "ws":
            tok = Token(kind, raw, pos)
            if kind == "string":
                tok.value = _unescape(raw[1:-1], pos)[0]
            elif kind == "number":
                tok.value = float(raw) if "." in raw else int(raw)
            elif kind == "date":
                try:
                    tok.value = date.fromisoformat(raw)
                except ValueError:
                    raise SoqlError("MALFORMED_QUERY", f"value of date: {raw}") from None
            elif kind == "datetime":
                tok.value = parse_datetime(raw)
            tokens.append(tok)
        pos = m.end()
    return tokens


def parse_datetime(text: str) -> datetime:
    value = text.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", value):
        value = value[:-2] + ":" + value[-2:]
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise SoqlError("MALFORMED_QUERY", f"line 1:0 no viable alternative at '{text}'") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


# ---- query model ----------------------------------------------------------------------------


@dataclass
class FieldRef:
    path: str  # as written, e.g. "Account.Name"
    pos: int
    # functions applied to the value, innermost first: convertTimezone, a date function,
    # toLabel, FORMAT (e.g. ("CONVERTTIMEZONE", "HOUR_IN_DAY"))
    functions: tuple[str, ...] = ()
    alias: str | None = None

    @property
    def text(self) -> str:
        """As written in a query, for messages: CALENDAR_YEAR(CreatedDate)."""
        out = self.path
        for fn in self.functions:
            out = f"{fn}({out})"
        return out

    @property
    def grouping_key(self) -> str:
        """What GROUP BY matches a SELECT column by (toLabel/FORMAT only change the output)."""
        inner = tuple(f for f in self.functions if f not in ("TOLABEL", "FORMAT"))
        return FieldRef(self.path.lower(), 0, inner).text


@dataclass
class DateLiteral:
    name: str  # upper case, e.g. "LAST_N_DAYS"
    n: int | None = None

    def range(self, now: datetime) -> tuple[datetime, datetime]:
        return date_literal_range(self.name, self.n, now)


@dataclass
class Comparison:
    field: Any  # FieldRef; an Aggregate in HAVING
    op: str  # = != < > <= >= LIKE IN NOT IN INCLUDES EXCLUDES
    value: Any  # literal, DateLiteral, or list of them for IN


@dataclass
class BoolOp:
    op: str  # AND | OR
    items: list[Any]


@dataclass
class Not:
    item: Any


@dataclass
class Aggregate:
    function: str  # COUNT COUNT_DISTINCT MIN MAX SUM AVG GROUPING
    field: FieldRef
    alias: str | None
    format: bool = False  # FORMAT(MIN(CloseDate))

    @property
    def key(self) -> str:
        """How HAVING and ORDER BY name the same aggregate: COUNT(id)."""
        return f"{self.function}({self.field.path.lower()})"


@dataclass
class TypeOf:
    """`TYPEOF What WHEN Account THEN Name, Phone ELSE Name END` on a polymorphic lookup."""

    relationship: str
    pos: int
    whens: list[tuple[str, list[FieldRef]]]
    otherwise: list[FieldRef] | None


@dataclass
class SemiJoin:
    """`Field IN (SELECT Id FROM …)`: the engine replaces it with the inner query's values."""

    query: Query


@dataclass
class OrderItem:
    field: Any  # FieldRef, or an Aggregate in an aggregate query
    descending: bool = False
    nulls_last: bool = False


@dataclass
class Query:
    sobject: str
    sobject_pos: int
    fields: list[FieldRef] = field(default_factory=list)
    count: bool = False  # SELECT COUNT()
    where: Any = None
    order_by: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None
    text: str = ""
    subqueries: list[Query] = field(default_factory=list)  # child relationship queries
    aggregates: list[Aggregate] = field(default_factory=list)  # COUNT(field) [alias]
    field_sets: list[str] = field(default_factory=list)  # FIELDS(ALL|STANDARD|CUSTOM)
    columns: list[Any] = field(default_factory=list)  # FieldRef | Aggregate | TypeOf, in order
    typeofs: list[TypeOf] = field(default_factory=list)
    group_by: list[FieldRef] = field(default_factory=list)
    group_kind: str | None = None  # "ROLLUP" | "CUBE"
    having: Any = None
    scope: str | None = None  # USING SCOPE, lower case
    scope_pos: int = 0

    @property
    def is_aggregate(self) -> bool:
        """Rows are AggregateResult: an aggregate function, a GROUP BY or a date function."""
        return bool(
            self.aggregates
            or self.group_by
            or any(f.functions and set(f.functions) & DATE_FUNCTIONS for f in self.fields)
        )

    @property
    def field_paths(self) -> list[str]:
        return [f.path for f in self.fields]


_DATE_LITERALS = {
    "YESTERDAY",
    "TODAY",
    "TOMORROW",
    "LAST_WEEK",
    "THIS_WEEK",
    "NEXT_WEEK",
    "LAST_MONTH",
    "THIS_MONTH",
    "NEXT_MONTH",
    "LAST_90_DAYS",
    "NEXT_90_DAYS",
    "THIS_QUARTER",
    "LAST_QUARTER",
    "NEXT_QUARTER",
    "THIS_YEAR",
    "LAST_YEAR",
    "NEXT_YEAR",
}
_DATE_LITERALS_N = {
    "LAST_N_DAYS",
    "NEXT_N_DAYS",
    "N_DAYS_AGO",
    "LAST_N_WEEKS",
    "NEXT_N_WEEKS",
    "N_WEEKS_AGO",
    "LAST_N_MONTHS",
    "NEXT_N_MONTHS",
    "N_MONTHS_AGO",
    "LAST_N_YEARS",
    "NEXT_N_YEARS",
    "N_YEARS_AGO",
}
AGGREGATE_FUNCTIONS = {"COUNT", "COUNT_DISTINCT", "MIN", "MAX", "SUM", "AVG", "GROUPING"}
DATE_FUNCTIONS = {
    "CALENDAR_MONTH", "CALENDAR_QUARTER", "CALENDAR_YEAR", "DAY_IN_MONTH", "DAY_IN_WEEK",
    "DAY_IN_YEAR", "DAY_ONLY", "FISCAL_MONTH", "FISCAL_QUARTER", "FISCAL_YEAR", "HOUR_IN_DAY",
    "WEEK_IN_MONTH", "WEEK_IN_YEAR",
}  # fmt: skip
_VALUE_FUNCTIONS = DATE_FUNCTIONS | {"TOLABEL", "FORMAT", "CONVERTTIMEZONE"}
_KEYWORDS = {
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "LIKE",
    "ORDER",
    "BY",
    "LIMIT",
    "OFFSET",
    "ASC",
    "DESC",
    "NULLS",
    "FIRST",
    "LAST",
    "NULL",
    "TRUE",
    "FALSE",
    "INCLUDES",
    "EXCLUDES",
    "WITH",
    "FOR",
    "GROUP",
    "HAVING",
    "USING",
    "TYPEOF",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    # helpers
    def peek(self, offset: int = 0) -> Token | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def next(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise SoqlError("MALFORMED_QUERY", "unexpected end of query")
        self.i += 1
        return tok

    def is_kw(self, word: str, offset: int = 0) -> bool:
        tok = self.peek(offset)
        return tok is not None and tok.kind == "ident" and tok.text.upper() == word

    def expect_kw(self, word: str) -> Token:
        tok = self.peek()
        if tok is None:
            raise SoqlError("MALFORMED_QUERY", f"unexpected end of query, expecting {word}")
        if not self.is_kw(word):
            self.unexpected(tok)
        return self.next()

    def expect_punct(self, ch: str) -> Token:
        tok = self.peek()
        if tok is None or tok.text != ch:
            if tok is None:
                raise SoqlError("MALFORMED_QUERY", f"unexpected end of query, expecting '{ch}'")
            self.unexpected(tok)
        return self.next()

    def unexpected(self, tok: Token) -> None:
        line, col = 1, tok.pos + 1
        raise SoqlError(
            "MALFORMED_QUERY",
            f"\n{self.text}\n{' ' * tok.pos}^\nERROR at Row:{line}:Column:{col}\n"
            f"unexpected token: '{tok.text}'",
        )

    # grammar
    def parse(self) -> Query:
        q = self.select_statement(nested=False)
        rest = self.peek()
        if rest is not None:
            self.unexpected(rest)
        return q

    def _is_punct(self, ch: str, offset: int = 0) -> bool:
        tok = self.peek(offset)
        return tok is not None and tok.text == ch and tok.kind == "punct"

    def select_statement(self, *, nested: bool) -> Query:
        self.expect_kw("SELECT")
        q = Query(sobject="", sobject_pos=0, text=self.text)
        while True:
            if self._is_punct("(") and self.is_kw("SELECT", 1):
                if nested:
                    self.unexpected(self.next())
                self.next()
                q.subqueries.append(self.select_statement(nested=True))
                self.expect_punct(")")
            elif self.is_kw("TYPEOF"):
                typeof = self.typeof()
                q.typeofs.append(typeof)
                q.columns.append(typeof)
            elif self.is_kw("COUNT") and self._is_punct("(", 1) and self._is_punct(")", 2):
                self.i += 3
                q.count = True
            elif self.is_kw("FIELDS") and self._is_punct("(", 1):
                self.i += 2
                which = self.next()
                if which.text.upper() not in ("ALL", "STANDARD", "CUSTOM"):
                    self.unexpected(which)
                self.expect_punct(")")
                q.field_sets.append(which.text.upper())
            else:
                tok = self.peek()
                if tok is None or tok.kind != "ident" or tok.text.upper() in _KEYWORDS:
                    self.unexpected(self.next())
                column = self.operand(aggregates=True)
                column.alias = self.alias()
                (q.aggregates if isinstance(column, Aggregate) else q.fields).append(column)
                q.columns.append(column)
            if self._is_punct(","):
                self.next()
                continue
            break
        if q.count and (q.fields or q.subqueries or q.aggregates or q.field_sets or q.typeofs):
            raise SoqlError("MALFORMED_QUERY", "COUNT() must be the only element in SELECT")
        self.expect_kw("FROM")
        obj = self.next()
        if obj.kind != "ident" or obj.text.upper() in _KEYWORDS:
            self.unexpected(obj)
        q.sobject, q.sobject_pos = obj.text, obj.pos
        if self.is_kw("USING"):
            self.next()
            self.expect_kw("SCOPE")
            scope = self.next()
            if scope.kind != "ident" or scope.text.upper() in _KEYWORDS:
                self.unexpected(scope)
            q.scope, q.scope_pos = scope.text.lower(), scope.pos
        if self.is_kw("WHERE"):
            self.next()
            q.where = self.condition(having=False)
        if self.is_kw("WITH"):
            # WITH SECURITY_ENFORCED / USER_MODE: accepted and ignored (one user sees all).
            self.next()
            self.next()
        if self.is_kw("GROUP"):
            self.next()
            self.expect_kw("BY")
            self.group_by(q)
        if self.is_kw("HAVING"):
            self.next()
            q.having = self.condition(having=True)
        if self.is_kw("ORDER"):
            self.next()
            self.expect_kw("BY")
            q.order_by = self.order_list()
        if self.is_kw("LIMIT"):
            self.next()
            q.limit = self.integer("LIMIT")
        if self.is_kw("OFFSET"):
            self.next()
            q.offset = self.integer("OFFSET")
            if q.offset > 2000:
                raise SoqlError("NUMBER_OUTSIDE_VALID_RANGE", "Maximum SOQL offset allowed is 2000")
        if self.is_kw("FOR"):
            self.next()
            self.next()  # VIEW | REFERENCE | UPDATE
        return q

    def operand(self, *, aggregates: bool) -> Any:
        """A field, a function of one (CALENDAR_YEAR(CreatedDate), toLabel(Status), …) or, where
        allowed, an aggregate (MAX(SystemModstamp), FORMAT(MIN(CloseDate)))."""
        tok = self.next()
        if tok.kind != "ident" or tok.text.upper() in _KEYWORDS:
            self.unexpected(tok)
        name = tok.text.upper()
        if not self._is_punct("("):
            return FieldRef(tok.text, tok.pos)
        if name in AGGREGATE_FUNCTIONS:
            if not aggregates:
                raise SoqlError(
                    "MALFORMED_QUERY",
                    f"\n{self.text}\n{' ' * tok.pos}^\nERROR at Row:1:Column:{tok.pos + 1}\n"
                    "Aggregate functions are not allowed in the WHERE clause; use HAVING",
                )
            self.next()
            arg = self.operand(aggregates=False)
            self.expect_punct(")")
            if not isinstance(arg, FieldRef) or arg.functions:
                self.unexpected(tok)
            return Aggregate(name, arg, None)
        if name not in _VALUE_FUNCTIONS:
            self.unexpected(tok)
        self.next()
        inner = self.operand(aggregates=aggregates and name == "FORMAT")
        self.expect_punct(")")
        if isinstance(inner, Aggregate):
            inner.format = True
            return inner
        if name == "CONVERTTIMEZONE" and inner.functions:
            self.unexpected(tok)  # convertTimezone() wraps a field, inside a date function
        if "FORMAT" in inner.functions or "TOLABEL" in inner.functions:
            self.unexpected(tok)
        inner.functions = (*inner.functions, name)
        return inner

    def alias(self) -> str | None:
        nxt = self.peek()
        if nxt is not None and nxt.kind == "ident" and nxt.text.upper() not in _KEYWORDS:
            return self.next().text
        return None

    def typeof(self) -> TypeOf:
        start = self.next()  # TYPEOF
        rel = self.next()
        if rel.kind != "ident" or rel.text.upper() in _KEYWORDS or "." in rel.text:
            self.unexpected(rel)
        whens: list[tuple[str, list[FieldRef]]] = []
        otherwise: list[FieldRef] | None = None
        while self.is_kw("WHEN"):
            self.next()
            sobject = self.next()
            if sobject.kind != "ident" or sobject.text.upper() in _KEYWORDS:
                self.unexpected(sobject)
            self.expect_kw("THEN")
            whens.append((sobject.text, self.typeof_fields()))
        if not whens:
            self.unexpected(self.peek() or start)
        if self.is_kw("ELSE"):
            self.next()
            otherwise = self.typeof_fields()
        self.expect_kw("END")
        return TypeOf(rel.text, rel.pos, whens, otherwise)

    def typeof_fields(self) -> list[FieldRef]:
        fields = []
        while True:
            tok = self.next()
            if tok.kind != "ident" or tok.text.upper() in _KEYWORDS:
                self.unexpected(tok)
            fields.append(FieldRef(tok.text, tok.pos))
            if not self._is_punct(","):
                return fields
            self.next()

    def group_by(self, q: Query) -> None:
        if (self.is_kw("ROLLUP") or self.is_kw("CUBE")) and self._is_punct("(", 1):
            q.group_kind = self.next().text.upper()
            self.next()
            q.group_by = self.group_list()
            self.expect_punct(")")
        else:
            q.group_by = self.group_list()

    def group_list(self) -> list[FieldRef]:
        items = []
        while True:
            item = self.operand(aggregates=False)
            items.append(item)
            if not self._is_punct(","):
                return items
            self.next()

    def integer(self, what: str) -> int:
        tok = self.next()
        if tok.kind != "number" or not isinstance(tok.value, int) or tok.value < 0:
            self.unexpected(tok)
        return int(tok.value)

    def order_list(self) -> list[OrderItem]:
        items = []
        while True:
            item = OrderItem(self.operand(aggregates=True))
            if self.is_kw("ASC"):
                self.next()
            elif self.is_kw("DESC"):
                self.next()
                item.descending = True
            # Salesforce's default: nulls first ascending, last descending.
            item.nulls_last = item.descending
            if self.is_kw("NULLS"):
                self.next()
                which = self.next()
                if which.text.upper() == "FIRST":
                    item.nulls_last = False
                elif which.text.upper() == "LAST":
                    item.nulls_last = True
                else:
                    self.unexpected(which)
            items.append(item)
            if self._is_punct(","):
                self.next()
                continue
            return items

    def condition(self, *, having: bool) -> Any:
        first = self.unary(having)
        op: str | None = None
        items = [first]
        while self.is_kw("AND") or self.is_kw("OR"):
            tok = self.next()
            word = tok.text.upper()
            if op is not None and word != op:
                # SOQL refuses to mix AND and OR without parentheses.
                self.unexpected(tok)
            op = word
            items.append(self.unary(having))
        return BoolOp(op, items) if op else first

    def unary(self, having: bool) -> Any:
        if self.is_kw("NOT"):
            self.next()
            return Not(self.unary(having))
        tok = self.peek()
        if tok is not None and tok.text == "(":
            self.next()
            inner = self.condition(having=having)
            self.expect_punct(")")
            return inner
        return self.comparison(having)

    def comparison(self, having: bool) -> Comparison:
        start = self.peek()
        ref = self.operand(aggregates=having)
        if isinstance(ref, FieldRef) and "FORMAT" in ref.functions:
            assert start is not None
            self.unexpected(start)  # FORMAT() only formats SELECT output
        nxt = self.next()
        if nxt.kind == "op":
            op = "!=" if nxt.text == "<>" else nxt.text
            return Comparison(ref, op, self.value())
        word = nxt.text.upper() if nxt.kind == "ident" else ""
        if word == "LIKE":
            val = self.value()
            if not isinstance(val, str):
                raise SoqlError("MALFORMED_QUERY", "LIKE requires a string value")
            return Comparison(ref, "LIKE", val)
        if word == "NOT" and self.is_kw("IN"):
            self.next()
            return Comparison(ref, "NOT IN", self.value_list())
        if word in ("IN", "INCLUDES", "EXCLUDES"):
            return Comparison(ref, word, self.value_list())
        self.unexpected(nxt)
        raise AssertionError("unreachable")

    def value_list(self) -> list[Any]:
        if self._is_punct("(") and self.is_kw("SELECT", 1):
            self.next()
            inner = self.select_statement(nested=True)
            self.expect_punct(")")
            return [SemiJoin(inner)]
        self.expect_punct("(")
        values = [self.value()]
        while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
            self.next()
            values.append(self.value())
        self.expect_punct(")")
        return values

    def value(self) -> Any:
        tok = self.next()
        if tok.kind in ("string", "number", "date", "datetime"):
            return tok.value
        if tok.kind == "ident":
            word = tok.text.upper()
            if word == "NULL":
                return None
            if word == "TRUE":
                return True
            if word == "FALSE":
                return False
            if word in _DATE_LITERALS:
                return DateLiteral(word)
            if word in _DATE_LITERALS_N:
                self.expect_punct(":")
                n = self.next()
                if n.kind != "number" or not isinstance(n.value, int):
                    self.unexpected(n)
                return DateLiteral(word, int(n.value))
        self.unexpected(tok)
        raise AssertionError("unreachable")


def parse_query(text: str) -> Query:
    """Parse a SOQL SELECT; raises SoqlError("MALFORMED_QUERY", ...) on bad syntax."""
    if not text or not text.strip():
        raise SoqlError("MALFORMED_QUERY", "unexpected end of query")
    return _Parser(text.strip()).parse()


# ---- date literals --------------------------------------------------------------------------


def _day_start(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _add_months(d: date, months: int) -> date:
    m = d.month - 1 + months
    y = d.year + m // 12
    m = m % 12 + 1
    return date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


def date_literal_range(name: str, n: int | None, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of a date literal in the org's time zone (UTC in the local org)."""
    today = now.astimezone(UTC).date()
    day = timedelta(days=1)
    week_start = today - timedelta(days=(today.weekday() + 1) % 7)  # weeks start on Sunday
    month_start = today.replace(day=1)
    quarter_start = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    year_start = date(today.year, 1, 1)
    n = n or 0
    spans: dict[str, tuple[date, date]] = {
        "YESTERDAY": (today - day, today),
        "TODAY": (today, today + day),
        "TOMORROW": (today + day, today + 2 * day),
        "LAST_WEEK": (week_start - 7 * day, week_start),
        "THIS_WEEK": (week_start, week_start + 7 * day),
        "NEXT_WEEK": (week_start + 7 * day, week_start + 14 * day),
        "LAST_MONTH": (_add_months(month_start, -1), month_start),
        "THIS_MONTH": (month_start, _add_months(month_start, 1)),
        "NEXT_MONTH": (_add_months(month_start, 1), _add_months(month_start, 2)),
        # LAST_90_DAYS / LAST_N_DAYS:n run from n days ago through the end of today.
        "LAST_90_DAYS": (today - 90 * day, today + day),
        "NEXT_90_DAYS": (today + day, today + 91 * day),
        "LAST_QUARTER": (_add_months(quarter_start, -3), quarter_start),
        "THIS_QUARTER": (quarter_start, _add_months(quarter_start, 3)),
        "NEXT_QUARTER": (_add_months(quarter_start, 3), _add_months(quarter_start, 6)),
        "LAST_YEAR": (date(today.year - 1, 1, 1), year_start),
        "THIS_YEAR": (year_start, date(today.year + 1, 1, 1)),
        "NEXT_YEAR": (date(today.year + 1, 1, 1), date(today.year + 2, 1, 1)),
        "LAST_N_DAYS": (today - n * day, today + day),
        "NEXT_N_DAYS": (today + day, today + (n + 1) * day),
        "N_DAYS_AGO": (today - n * day, today - (n - 1) * day),
        "LAST_N_WEEKS": (week_start - 7 * n * day, week_start),
        "NEXT_N_WEEKS": (week_start + 7 * day, week_start + 7 * (n + 1) * day),
        "N_WEEKS_AGO": (week_start - 7 * n * day, week_start - 7 * (n - 1) * day),
        "LAST_N_MONTHS": (_add_months(month_start, -n), month_start),
        "NEXT_N_MONTHS": (_add_months(month_start, 1), _add_months(month_start, n + 1)),
        "N_MONTHS_AGO": (_add_months(month_start, -n), _add_months(month_start, -n + 1)),
        "LAST_N_YEARS": (date(today.year - n, 1, 1), year_start),
        "NEXT_N_YEARS": (date(today.year + 1, 1, 1), date(today.year + n + 1, 1, 1)),
        "N_YEARS_AGO": (date(today.year - n, 1, 1), date(today.year - n + 1, 1, 1)),
    }
    start, end = spans[name]
    return _day_start(start), _day_start(end)


# ---- evaluation -----------------------------------------------------------------------------

Resolver = Callable[[dict[str, Any], str], Any]


def default_resolve(record: dict[str, Any], path: str) -> Any:
    """Field value by path; parent paths (Account.Name) walk nested dicts (query results)."""
    if "." not in path:
        return record.get(path)
    cur: Any = record
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return _day_start(value)
    if isinstance(value, str):
        try:
            if len(value) == 10:
                return _day_start(date.fromisoformat(value))
            return parse_datetime(value)
        except (ValueError, SoqlError):
            return None
    return None


def date_function(name: str, value: Any) -> Any:
    """A SOQL date function of a date or dateTime value, in the org's time zone (UTC here; the
    fiscal year starts in January, so FISCAL_* equal CALENDAR_*)."""
    when = _as_datetime(value)
    if when is None:
        return None
    d = when.date()
    day_in_year = d.timetuple().tm_yday
    parts = {
        "CALENDAR_MONTH": d.month,
        "CALENDAR_QUARTER": (d.month - 1) // 3 + 1,
        "CALENDAR_YEAR": d.year,
        "DAY_IN_MONTH": d.day,
        "DAY_IN_WEEK": d.isoweekday() % 7 + 1,  # 1 = Sunday
        "DAY_IN_YEAR": day_in_year,
        "DAY_ONLY": d.isoformat(),
        "FISCAL_MONTH": d.month,
        "FISCAL_QUARTER": (d.month - 1) // 3 + 1,
        "FISCAL_YEAR": d.year,
        "HOUR_IN_DAY": when.hour,
        "WEEK_IN_MONTH": (d.day - 1) // 7 + 1,
        "WEEK_IN_YEAR": (day_in_year - 1) // 7 + 1,
    }
    return parts[name]


def apply_functions(functions: tuple[str, ...], value: Any) -> Any:
    """A value through convertTimezone / a date function / toLabel (FORMAT needs the field's
    type: the query engine applies it). Picklist labels equal their values in the local org."""
    for fn in functions:
        if fn in DATE_FUNCTIONS:
            value = date_function(fn, value)
    return value


def _compare(left: Any, op: str, right: Any, now: datetime) -> bool:
    if isinstance(right, DateLiteral):
        lv = _as_datetime(left)
        if lv is None:
            return op == "!="
        start, end = right.range(now)
        if op == "=":
            return start <= lv < end
        if op == "!=":
            return not start <= lv < end
        if op == "<":
            return lv < start
        if op == "<=":
            return lv < end
        if op == ">":
            return lv >= end
        if op == ">=":
            return lv >= start
        return False
    if right is None or left is None:
        if op == "=":
            return left is None and right is None
        if op == "!=":
            return (left is None) != (right is None)
        return False  # comparisons with null match nothing
    if isinstance(right, datetime | date):
        lv = _as_datetime(left)
        rv = _as_datetime(right)
        if lv is None or rv is None:
            return False
        if isinstance(right, date) and not isinstance(right, datetime) and op in ("=", "!="):
            same = lv.date() == right
            return same if op == "=" else not same
        a: Any = lv
        b: Any = rv
    elif isinstance(right, bool) or isinstance(left, bool):
        if op == "=":
            return bool(left) == bool(right) and isinstance(left, bool)
        if op == "!=":
            return not (isinstance(left, bool) and bool(left) == bool(right))
        return False
    elif isinstance(right, int | float):
        try:
            a, b = float(left), float(right)
        except (TypeError, ValueError):
            return False
    else:
        # Text comparisons in SOQL are case-insensitive.
        a, b = str(left).lower(), str(right).lower()
    if op == "=":
        return a == b
    if op == "!=":
        return a != b
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    if op == ">=":
        return a >= b
    return False


_like_cache: dict[str, re.Pattern[str]] = {}


def like_pattern(pattern: str) -> re.Pattern[str]:
    rx = _like_cache.get(pattern)
    if rx is None:
        parts = []
        i = 0
        while i < len(pattern):
            ch = pattern[i]
            if ch == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_":
                parts.append(re.escape(pattern[i + 1]))
                i += 2
                continue
            if ch == "%":
                parts.append(".*")
            elif ch == "_":
                parts.append(".")
            else:
                parts.append(re.escape(ch))
            i += 1
        rx = re.compile("^" + "".join(parts) + "$", re.IGNORECASE | re.DOTALL)
        _like_cache[pattern] = rx
    return rx


def _strip_like_escapes(value: Any) -> Any:
    if isinstance(value, str) and "\\" in value:
        return value.replace("\\%", "%").replace("\\_", "_")
    return value


def evaluate_where(
    where: Any, record: dict[str, Any], *, now: datetime, resolve: Resolver | None = None
) -> bool:
    """Does the record satisfy the WHERE expression (None: every record does)?"""
    if where is None:
        return True
    res = resolve or default_resolve
    if isinstance(where, BoolOp):
        if where.op == "AND":
            return all(evaluate_where(w, record, now=now, resolve=res) for w in where.items)
        return any(evaluate_where(w, record, now=now, resolve=res) for w in where.items)
    if isinstance(where, Not):
        return not evaluate_where(where.item, record, now=now, resolve=res)
    assert isinstance(where, Comparison)
    if isinstance(where.field, Aggregate):  # HAVING: the resolver knows the group's aggregates
        left = res(record, where.field.key)
    else:
        left = apply_functions(where.field.functions, res(record, where.field.path))
    op = where.op
    if op == "LIKE":
        if left is None:
            return False
        return bool(like_pattern(where.value).match(str(left)))
    if op in ("IN", "NOT IN"):
        hit = any(_compare(left, "=", _strip_like_escapes(v), now) for v in where.value)
        return hit if op == "IN" else not hit
    if op in ("INCLUDES", "EXCLUDES"):
        chosen = {v.lower() for v in str(left or "").split(";") if v}
        wanted = [{p.lower() for p in str(v).split(";")} for v in where.value]
        hit = any(w <= chosen for w in wanted)
        return hit if op == "INCLUDES" else not hit
    return _compare(left, op, _strip_like_escapes(where.value), now)


def iter_comparisons(where: Any) -> list[Comparison]:
    """Every comparison in a WHERE tree (to resolve and type-check their fields)."""
    if where is None:
        return []
    if isinstance(where, BoolOp):
        out: list[Comparison] = []
        for w in where.items:
            out.extend(iter_comparisons(w))
        return out
    if isinstance(where, Not):
        return iter_comparisons(where.item)
    return [where]
