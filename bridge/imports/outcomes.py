"""What an import works on (`Target`) and what came of each row (`Result`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from simple_salesforce import format_soql
from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.config import OrgConfig
from bridge.imports.csvfile import Row
from bridge.store.models import OrgConnection, Program, Referral
from bridge.writeback.client import Writer

State = Literal["connected", "unchanged", "skipped", "failed"]

ID_CHUNK = 200
"""Ids per `Id IN (...)` query (about 4,400 characters of URL)."""


@dataclass
class Target:
    """The org and program an import connects to, and how."""

    writer: Writer
    conn: OrgConnection
    org_config: OrgConfig
    program: Program
    push: bool = False  # sales: send the recorded sales to Salesforce too


@dataclass
class Result:
    """What came of one row: `connected` (ids saved on a referral), `unchanged` (it already had
    them: a re-run), `skipped` (nothing to connect), `failed` (the reason says why)."""

    row: Row
    state: State
    reason: str = ""
    created: bool = False  # a local record (referral or sale) was created
    referral_id: int | None = None
    push_id: int | None = None  # sales with --push: the push to send


@dataclass
class Pending:
    """A row being worked on: its Salesforce records so far, or its result once decided."""

    row: Row
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # object -> record
    referral: Referral | None = None
    result: Result | None = None

    def fail(self, reason: str, state: State = "failed") -> None:
        self.result = Result(self.row, state, reason)


def same_id(a: str | None, b: str | None) -> bool:
    """Salesforce ids compared as the 15-character, case-sensitive form."""
    return bool(a) and bool(b) and str(a)[:15] == str(b)[:15]


def records_by_id(
    writer: Writer, sobject: str, fields: Sequence[str], ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The `sobject` records with these ids (15- or 18-character), keyed by the 15-character
    id; ID_CHUNK ids per query, the queries sent together (`Writer.queries`)."""
    wanted = sorted(set(ids))
    soqls = [
        format_soql(
            "SELECT {fields:literal} FROM {obj:literal} WHERE Id IN {ids}",
            fields=", ".join(fields),
            obj=sobject,
            ids=wanted[i : i + ID_CHUNK],
        )
        for i in range(0, len(wanted), ID_CHUNK)
    ]
    out: dict[str, dict[str, Any]] = {}
    for records in writer.queries(soqls):
        for record in records:
            record.pop("attributes", None)
            out[str(record["Id"])[:15]] = record
    return out


def given_records(
    writer: Writer, pending: Sequence[Pending], sobject: str, column: str, fields: Sequence[str]
) -> list[tuple[Pending, dict[str, Any]]]:
    """The `sobject` records the rows still open name in `column`, read back from the org in
    batches: each row with its record; a row whose id the org does not have fails."""
    ids = [str(p.row.get(column)) for p in pending if p.result is None and p.row.get(column)]
    if not ids:
        return []
    found = records_by_id(writer, sobject, fields, ids)
    out: list[tuple[Pending, dict[str, Any]]] = []
    for p in pending:
        wanted = p.row.get(column)
        if p.result is None and wanted:
            record = found.get(str(wanted)[:15])
            if record is None:
                p.fail(f"{column} {wanted}: no {sobject} with this id in the org")
            else:
                out.append((p, record))
    return out


def referrals_by(
    session: Session, program_id: int, column: str, values: Sequence[str]
) -> dict[str, list[Referral]]:
    """The program's referrals whose `column` is one of `values`, by value."""
    out: dict[str, list[Referral]] = {}
    wanted = sorted(set(values))
    for i in range(0, len(wanted), 500):
        attr = getattr(Referral, column)
        query = select(Referral).where(
            Referral.program_id == program_id, attr.in_(wanted[i : i + 500])
        )
        for referral in session.scalars(query.order_by(Referral.id)):
            out.setdefault(str(getattr(referral, column)), []).append(referral)
    return out


def connect_ids(referral: Referral, ids: dict[str, str | None]) -> str | None:
    """Save the Salesforce ids (referral column -> id) on `referral`; why not, when it carries
    another record's id already (None: saved, or it had them)."""
    for column, value in ids.items():
        current = getattr(referral, column)
        if value and current and not same_id(current, value):
            return (
                f"referral {referral.public_id} is connected to {column} {current} already, "
                f"not {value}; clear it first to connect another record"
            )
    for column, value in ids.items():
        if value and not getattr(referral, column):
            setattr(referral, column, value)
    return None
