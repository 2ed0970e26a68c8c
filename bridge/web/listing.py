"""The referral and member lists' queries: search, filters and sorting from the request's
arguments. The list pages and the CSV export (bridge.web.export) run the same query, so an
export holds exactly what the filtered list shows. Reads only."""

from __future__ import annotations

from typing import Any

from flask import request
from sqlalchemy import Select, func, or_, select

from bridge.store.models import Member, Program, Referral
from bridge.vocabulary import REFERRAL_STATUSES

AnySelect = Select[*tuple[Any, ...]]

REFERRAL_FILTERS = ("q", "status", "program", "member", "sort")

#: key -> (label, order by)
REFERRAL_SORTS: dict[str, tuple[str, Any]] = {
    "newest": ("newest first", (Referral.id.desc(),)),
    "oldest": ("oldest first", (Referral.id.asc(),)),
    "name": ("name", (Referral.last_name, Referral.first_name, Referral.id)),
    "status": ("status", (Referral.status, Referral.id.desc())),
    "member": ("referring member", (Member.name, Referral.id.desc())),
    "updated": ("last changed", (Referral.updated_at.desc(), Referral.id.desc())),
}


def referral_filters() -> dict[str, str]:
    """The filters from the query string (empty ones left out, each cut to 200 characters)."""
    out = {k: request.args.get(k, "").strip()[:200] for k in REFERRAL_FILTERS}
    return {k: v for k, v in out.items() if v}


def _search(term: str) -> Any:
    """Name, email (parts of either), the public id or the member's code (exactly)."""
    like = f"%{term.lower()}%"
    full_name = func.coalesce(Referral.first_name, "") + " " + func.coalesce(Referral.last_name, "")
    return or_(
        func.lower(full_name).like(like),
        func.lower(Referral.email).like(like),
        Referral.public_id == term,
        func.lower(Member.referral_code) == term.lower(),
        func.lower(Member.name).like(like),
        func.lower(Member.email).like(like),
    )  # fmt: skip


def referrals(f: dict[str, str]) -> AnySelect:
    """Referrals with their referring member (or None) and program key, filtered and sorted."""
    query = (
        select(Referral, Member, Program.key)
        .join(Program, Program.id == Referral.program_id)
        .outerjoin(Member, Member.id == Referral.member_id)
    )
    if f.get("status") in REFERRAL_STATUSES:
        query = query.where(Referral.status == f["status"])
    if "program" in f:
        query = query.where(Program.key == f["program"])
    if f.get("member", "").isdigit():
        query = query.where(Referral.member_id == int(f["member"]))
    if "q" in f:
        query = query.where(_search(f["q"]))
    _label, order = REFERRAL_SORTS.get(f.get("sort", ""), REFERRAL_SORTS["newest"])
    return query.order_by(*order)


def members(term: str) -> AnySelect:
    """Members with their program key and referral count, by name; `term` searches name, email
    and referral code."""
    count = (
        select(func.count())
        .where(Referral.member_id == Member.id)
        .correlate(Member)
        .scalar_subquery()
    )
    query = select(Member, Program.key, count).join(Program, Program.id == Member.program_id)
    if term:
        like = f"%{term.lower()}%"
        query = query.where(
            or_(
                func.lower(Member.name).like(like),
                func.lower(Member.email).like(like),
                func.lower(Member.referral_code) == term.lower(),
            )
        )
    return query.order_by(Member.name, Member.id)
