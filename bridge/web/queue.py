"""The queue's query: filters, search, sorting, counts per tab that respect the filters, and the
triage rows (bridge.web.triage) for a page of entries. The review views call it; it reads the
request's arguments but changes nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import flash, request
from sqlalchemy import Select, String, and_, case, cast, func, or_, select
from sqlalchemy.orm import Session

from bridge.config import Receiver
from bridge.errors import UsageError
from bridge.store.models import Member, OrgConnection, Program, Referral, SalesEntry, utcnow
from bridge.vocabulary import SKIPPED, STREAMED_OBJECTS
from bridge.web.extensions import org_config
from bridge.web.security import Page, page_of
from bridge.web.triage import Triage, group_by_record, triage

AnySelect = Select[*tuple[Any, ...]]  # a select of any columns

FILTER_KEYS = ("program", "object", "reason", "date_from", "date_to", "q", "record", "sort")

#: Sort keys offered by the queue's column headers: key -> (label, columns).
SORTS: dict[str, tuple[str, Any]] = {
    "newest": ("newest first", (SalesEntry.id.desc(),)),
    "oldest": ("oldest first", (SalesEntry.id.asc(),)),
    "object": ("object", (SalesEntry.sobject_type, SalesEntry.id.desc())),
    "referral": ("referral", (Referral.public_id, SalesEntry.id.desc())),
    "member": ("referring member", (Member.name, SalesEntry.id.desc())),
}


def filters() -> dict[str, str]:
    """The queue's filters from the query string (empty ones left out)."""
    out = {k: request.args.get(k, "").strip() for k in FILTER_KEYS}
    return {k: v[:200] for k, v in out.items() if v}


def _parse_day(value: str, field: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        flash(f"Ignored the {field} filter: '{value}' is not a date (YYYY-MM-DD).", "error")
        return None


def _joined(query: AnySelect) -> AnySelect:
    """The entry with its referral and the referring member (the referral's, or the member a
    member match found)."""
    return query.outerjoin(Referral, Referral.id == SalesEntry.referral_id).outerjoin(
        Member, Member.id == func.coalesce(Referral.member_id, SalesEntry.member_id)
    )


def _search(term: str) -> Any:
    like = f"%{term.lower()}%"
    return or_(
        func.lower(cast(SalesEntry.records, String)).like(like),
        Referral.public_id == term,
        func.lower(Referral.email).like(like),
        Referral.name_key.like(like),
        func.lower(Member.referral_code) == term.lower(),
        func.lower(Member.name).like(like),
    )


def apply_filters(query: AnySelect, f: dict[str, str]) -> AnySelect:
    query = _joined(query)
    if "program" in f:
        query = query.join(Program, Program.id == SalesEntry.program_id).where(
            Program.key == f["program"]
        )
    if f.get("object") in STREAMED_OBJECTS:
        query = query.where(SalesEntry.sobject_type == f["object"])
    if "record" in f:
        query = query.where(SalesEntry.record_id == f["record"])
    if "reason" in f:
        # reasons is a JSON list of codes; match a code or a code prefix like "status_rule"
        query = query.where(cast(SalesEntry.reasons, String).like(f'%"{f["reason"]}%'))
    if "q" in f:
        # every word must match somewhere: "bob buyer" finds Bob Buyer
        query = query.where(and_(*(_search(t) for t in f["q"].split()[:5])))
    if "date_from" in f and (d := _parse_day(f["date_from"], "from")):
        query = query.where(
            SalesEntry.created_at >= datetime.combine(d, datetime.min.time(), tzinfo=UTC)
        )
    if "date_to" in f and (d := _parse_day(f["date_to"], "to")):
        query = query.where(
            SalesEntry.created_at
            < datetime.combine(d + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        )
    return query


def tab_counts(s: Session, f: dict[str, str]) -> dict[str, int]:
    """Entries per outcome, with the same filters as the list."""
    query: AnySelect = select(SalesEntry.id, SalesEntry.outcome)
    sub = apply_filters(query, f).subquery()
    return dict(s.execute(select(sub.c.outcome, func.count()).group_by(sub.c.outcome)).all())


def queue_page(s: Session, outcome: str, f: dict[str, str], size: int) -> tuple[list[Triage], Page]:
    base = apply_filters(select(SalesEntry).where(SalesEntry.outcome == outcome), f)
    pg = page_of(s, base, size)
    order = SORTS.get(f.get("sort", ""), SORTS["newest"])[1]
    entries = list(s.scalars(pg.of(base.order_by(*order))))
    rows = rows_for(s, entries)
    return (group_by_record(rows) if f.get("sort", "newest") == "newest" else rows), pg


def next_entry(s: Session, current: int, outcome: str, f: dict[str, str]) -> int | None:
    """The entry after `current` in the queue `outcome` with filters `f` (newest first), or
    the newest one when `current` was the last."""
    base = apply_filters(
        select(SalesEntry.id).where(SalesEntry.outcome == outcome, SalesEntry.id != current), f
    )
    after = s.scalar(base.where(SalesEntry.id < current).order_by(SalesEntry.id.desc()).limit(1))
    return after or s.scalar(base.order_by(SalesEntry.id.desc()).limit(1))


def _receivers(s: Session, entries: list[SalesEntry]) -> dict[int | None, Receiver | None]:
    out: dict[int | None, Receiver | None] = {}
    for conn_id in {e.org_connection_id for e in entries}:
        conn = s.get(OrgConnection, conn_id) if conn_id is not None else None
        try:
            out[conn_id] = org_config(conn.name if conn else None).receiver
        except UsageError:  # no config file, or the org left it: the words come without it
            out[conn_id] = None
    return out


def rows_for(s: Session, entries: list[SalesEntry]) -> list[Triage]:
    """Triage rows for `entries`, with their referrals, members and same-record counts."""
    if not entries:
        return []
    ref_ids = {e.referral_id for e in entries if e.referral_id}
    referrals = (
        {r.id: r for r in s.scalars(select(Referral).where(Referral.id.in_(ref_ids)))}
        if ref_ids
        else {}
    )
    member_ids = {r.member_id for r in referrals.values() if r.member_id} | {
        e.member_id for e in entries if e.member_id
    }
    members = (
        {m.id: m for m in s.scalars(select(Member).where(Member.id.in_(member_ids)))}
        if member_ids
        else {}
    )
    record_ids = {e.record_id for e in entries if e.record_id}
    same: dict[tuple[str, str | None], tuple[int, int]] = {}
    if record_ids:
        # a newer skipped entry (e.g. the echo of the bridge's own write) supersedes nothing
        deciding = case((SalesEntry.outcome != SKIPPED, SalesEntry.id))
        for obj, rec, n, newest in s.execute(
            select(SalesEntry.sobject_type, SalesEntry.record_id, func.count(), func.max(deciding))
            .where(SalesEntry.record_id.in_(record_ids))
            .group_by(SalesEntry.sobject_type, SalesEntry.record_id)
        ):
            same[(obj, rec)] = (n, newest or 0)
    receivers = _receivers(s, entries)
    now = utcnow()
    rows = []
    for e in entries:
        referral = referrals.get(e.referral_id) if e.referral_id else None
        member_id = (referral.member_id if referral else None) or e.member_id
        member = members.get(member_id) if member_id else None
        row = triage(e, referral, member, receivers.get(e.org_connection_id), now)
        n, newest = same.get((e.sobject_type, e.record_id), (1, e.id))
        row.same_record = n
        row.superseded_by = newest if newest > e.id else None
        rows.append(row)
    return rows
