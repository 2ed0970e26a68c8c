"""The import files: their columns, how they are read, and what a row must hold.

A file is UTF-8, with or without a byte-order mark (what Excel's "CSV UTF-8" writes), comma
separated with the usual double quotes (RFC 4180); its first line names the columns. Header
names are compared without case and surrounding spaces; a column the import does not know, a
column given twice or a missing required one refuses the whole file before anything is done,
as does a file that is not UTF-8 (with the line of the first bad byte). Empty cells are absent
values; rows whose cells are all empty are left out.

A row's own problems (a malformed Salesforce id, email, date or number) fail that row only,
with the reason in words; the other rows go on.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

from bridge.errors import UsageError
from bridge.vocabulary import EMAIL_MAX_LENGTH, EMAIL_PATTERN, KEY_PREFIXES, RECORD_ID_PATTERN

Kind = Literal["leads", "sales"]

ID_COLUMNS: dict[str, str] = {
    "sf_lead_id": "Lead",
    "sf_contact_id": "Contact",
    "sf_account_id": "Account",
    "sf_opportunity_id": "Opportunity",
}
"""The Salesforce id columns and the object each names (the referral's columns of that name)."""

_PREFIX_OF: dict[str, str] = {obj: prefix for prefix, obj in KEY_PREFIXES.items()}


@dataclass(frozen=True)
class Layout:
    """The columns of one kind of file: `required` must be there; of `one_of`, at least one."""

    required: tuple[str, ...]
    optional: tuple[str, ...]
    one_of: tuple[str, ...]

    @property
    def known(self) -> tuple[str, ...]:
        return self.required + self.optional


PERSON = ("first_name", "last_name", "email", "phone", "company")

LAYOUTS: dict[Kind, Layout] = {
    "leads": Layout(
        required=(),
        optional=("sf_lead_id", "sf_contact_id", "referral_id", "external_id", *PERSON),
        one_of=("sf_lead_id", "sf_contact_id", "email"),
    ),
    "sales": Layout(
        required=("sale_id", "business_name", "closed_at"),
        optional=(
            "referral_id",
            "external_id",
            "email",
            "sf_account_id",
            "sf_contact_id",
            "sf_opportunity_id",
            "phone",
            "city",
            "state",
            "amount",
            "first_name",
            "last_name",
            "contact_phone",
            "product_code",
            "product_name",
            "quantity",
            "unit_price",
        ),  # fmt: skip
        one_of=("referral_id", "external_id", "email"),
    ),
}

DECIMALS = ("amount", "quantity", "unit_price")
MAX_CELL = 255


@dataclass
class Row:
    """One record of the file: its line (of the file, the header is line 1) and its cells."""

    line: int
    values: dict[str, str]
    problem: str | None = None  # set when the row cannot be imported, in words

    def get(self, name: str) -> str | None:
        return self.values.get(name) or None


@dataclass
class ImportFile:
    path: Path
    kind: Kind
    columns: list[str]  # as found in the header, normalized
    rows: list[Row] = field(default_factory=list)


def _error(path: Path, message: str, line: int | None = None) -> UsageError:
    where = f"{path}:{line}" if line else str(path)
    return UsageError(f"{where}: {message}", code="bad_import_file")


def decode(path: Path, raw: bytes) -> str:
    """The file's text: UTF-8, a leading byte-order mark dropped."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _error(
            path,
            f"is not UTF-8 (byte 0x{raw[exc.start]:02x} cannot be read); save it as "
            "'CSV UTF-8' and try again",
            line,
        ) from None


def read(path: Path, kind: Kind) -> ImportFile:
    """Read and check `path` as a `kind` import file (raises UsageError for the whole file)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _error(path, "no such file") from None
    except IsADirectoryError:
        raise _error(path, "is a folder, not a CSV file") from None
    except OSError as exc:
        raise _error(path, f"cannot be read: {exc.strerror or exc}") from None
    text = decode(path, raw)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise _error(path, "is empty; the first line must name the columns")
        columns = check_header(path, kind, header)
        out = ImportFile(path, kind, columns)
        line = reader.line_num + 1
        for cells in reader:
            start, line = line, reader.line_num + 1
            if not any(c.strip() for c in cells):
                continue
            out.rows.append(_row(kind, columns, cells, start))
    except csv.Error as exc:
        raise _error(path, f"is not valid CSV: {exc}", reader.line_num) from None
    return out


def check_header(path: Path, kind: Kind, header: Sequence[str]) -> list[str]:
    layout = LAYOUTS[kind]
    columns = [h.strip().lower() for h in header]
    unknown = [c for c in columns if c not in layout.known]
    if unknown:
        shown = ", ".join(repr(c) for c in unknown)
        raise _error(
            path,
            f"unknown column(s) {shown}; a {kind} file has the columns "
            f"{', '.join(layout.known)} (docs/import.md)",
            1,
        )
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise _error(path, f"column(s) {', '.join(twice)} given more than once", 1)
    missing = [c for c in layout.required if c not in columns]
    if missing:
        raise _error(path, f"missing required column(s) {', '.join(missing)}", 1)
    if not any(c in columns for c in layout.one_of):
        raise _error(path, f"needs at least one of the columns {', '.join(layout.one_of)}", 1)
    return columns


def _row(kind: Kind, columns: list[str], cells: list[str], line: int) -> Row:
    values = {c: v.strip() for c, v in zip(columns, cells, strict=False) if v.strip()}
    row = Row(line, values)
    if len(cells) > len(columns) and any(c.strip() for c in cells[len(columns) :]):
        row.problem = f"{len(cells)} cells but {len(columns)} columns in the header"
    else:
        row.problem = check_row(kind, values)
    return row


def check_row(kind: Kind, values: Mapping[str, str]) -> str | None:
    """Why the row cannot be imported, or None."""
    layout = LAYOUTS[kind]
    for name, value in values.items():
        if len(value) > MAX_CELL:
            return f"{name} is longer than {MAX_CELL} characters"
    missing = [c for c in layout.required if not values.get(c)]
    if missing:
        return f"{', '.join(missing)} is empty"
    if not any(values.get(c) for c in layout.one_of):
        return f"give one of {', '.join(layout.one_of)}"
    if kind == "leads" and values.get("sf_lead_id") and values.get("sf_contact_id"):
        return "give sf_lead_id or sf_contact_id, not both (a row is one person's record)"
    for column, obj in ID_COLUMNS.items():
        if values.get(column):
            problem = id_problem(values[column], obj)
            if problem:
                return f"{column}: {problem}"
    email = values.get("email")
    if email and (len(email) > EMAIL_MAX_LENGTH or not re.match(EMAIL_PATTERN, email)):
        return f"email '{email}' is not an email address"
    for name in DECIMALS:
        if values.get(name) and decimal(values[name]) is None:
            return f"{name} '{values[name]}' is not a number (write 1234.50)"
    if kind == "sales":
        if closed_at(values["closed_at"]) is None:
            return (
                f"closed_at '{values['closed_at']}' is not a date (2026-04-03 or 2026-04-03T10:00Z)"
            )
        item = [values.get(c) for c in ("product_code", "product_name", "quantity", "unit_price")]
        if any(item) and not ((item[0] or item[1]) and item[2] and item[3]):
            return "an item needs product_code or product_name, quantity and unit_price"
    return None


def id_problem(value: str, sobject: str) -> str | None:
    """Why `value` cannot be the id of a `sobject` record, or None."""
    if not re.match(RECORD_ID_PATTERN, value):
        return f"'{value}' is not a Salesforce id (15 or 18 letters and digits)"
    if len(value) == 18 and value[15:].upper() != id_checksum(value[:15]):
        return (
            f"'{value}' is not a Salesforce id: its last three characters are not the checksum "
            "of the first 15 (was its case changed?)"
        )
    prefix = _PREFIX_OF[sobject]
    if value[:3] != prefix:
        other = KEY_PREFIXES.get(value[:3])
        what = f"a {other} id" if other else f"not a {sobject} id"
        return f"'{value}' is {what} ({sobject} ids start with {prefix})"
    return None


def id_checksum(id15: str) -> str:
    """The three characters an 18-character id adds: per 5-character chunk, a bit for each
    uppercase letter, as one of A-Z0-5. Salesforce refuses a whole query over an id whose
    checksum is wrong ("invalid ID field"), so such a row must fail before the query."""
    suffix = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
    bits = [
        sum(1 << i for i, ch in enumerate(id15[c * 5 : c * 5 + 5]) if "A" <= ch <= "Z")
        for c in range(3)
    ]
    return "".join(suffix[b] for b in bits)


def decimal(value: str) -> Decimal | None:
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def closed_at(value: str) -> datetime | None:
    """An ISO date (midnight UTC) or date-time (UTC when it names no offset)."""
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
