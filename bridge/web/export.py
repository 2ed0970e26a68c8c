"""CSV exports of referrals and entries, streamed row by row with the filters of the list they
come from (bridge.web.listing for referrals, the entry report's `result`). A cell that starts
with = + - @ (or a tab or carriage return) gets a leading quote, so a spreadsheet shows it as
text instead of running it as a formula (OWASP "CSV Injection")."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Blueprint, Response, request, stream_with_context
from sqlalchemy import select

from bridge.store.models import SalesEntry
from bridge.web import listing
from bridge.web.auth import login_required
from bridge.web.extensions import store
from bridge.web.triage import person, plain

bp = Blueprint("export", __name__, url_prefix="/export")

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
BATCH = 500  # rows read per round trip

REFERRAL_COLUMNS = [
    "id", "public_id", "status", "first_name", "last_name", "email", "company", "phone",
    "program", "member_id", "member_name", "member_code", "sf_lead_id", "sf_contact_id",
    "sf_account_id", "sf_opportunity_id", "created_at", "updated_at",
]  # fmt: skip
ENTRY_COLUMNS = [
    "id", "outcome", "object", "record_id", "name", "email", "company", "referral_id",
    "reasons", "error", "decided_by", "created_at", "processed_at",
]  # fmt: skip


def safe_cell(value: Any) -> str:
    """The value as CSV text a spreadsheet will not evaluate."""
    if value is None:
        return ""
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_lines(header: list[str], rows: Iterable[list[Any]]) -> Iterator[str]:
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(header)
    for row in rows:
        out.writerow([safe_cell(v) for v in row])
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    yield buf.getvalue()


def _download(name: str, lines: Iterator[str]) -> Response:
    return Response(
        stream_with_context(lines),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _referral_rows(f: dict[str, str]) -> Iterator[list[Any]]:
    with store().session() as s:
        result = s.execute(listing.referrals(f).execution_options(yield_per=BATCH))
        for r, m, program in result:
            yield [
                r.id, r.public_id, r.status, r.first_name, r.last_name, r.email, r.company,
                r.phone, program, m.id if m else None, m.name if m else None,
                m.referral_code if m else None, r.sf_lead_id, r.sf_contact_id,
                r.sf_account_id, r.sf_opportunity_id, r.created_at, r.updated_at,
            ]  # fmt: skip


@bp.get("/referrals.csv")
@login_required
def referrals_csv() -> Response:
    f = listing.referral_filters()
    return _download("referrals.csv", csv_lines(REFERRAL_COLUMNS, _referral_rows(f)))


def _entry_rows(result: str) -> Iterator[list[Any]]:
    query = select(SalesEntry).where(SalesEntry.outcome.in_(("processed", "failed")))
    if result == "success":
        query = query.where(SalesEntry.outcome == "processed")
    elif result == "error":
        query = query.where(SalesEntry.outcome == "failed")
    with store().session() as s:
        for e in s.scalars(query.order_by(SalesEntry.id.desc()).execution_options(yield_per=BATCH)):
            who = person(e)
            yield [
                e.id, e.outcome, e.sobject_type, e.record_id, who.name, who.email, who.company,
                e.referral_id, "; ".join(plain(r) for r in e.reasons or []), e.error,
                e.decided_by, e.created_at, e.processed_at,
            ]  # fmt: skip


@bp.get("/entries.csv")
@login_required
def entries_csv() -> Response:
    return _download(
        "entries.csv", csv_lines(ENTRY_COLUMNS, _entry_rows(request.args.get("result", "")))
    )
