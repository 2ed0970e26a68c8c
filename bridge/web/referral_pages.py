"""The console's referrals and members: the referral list (search, filters, sorting, paging),
the referral page (status with its dates and history, referring member, entries and pushes,
its Salesforce records, field history), its edit forms — fields are a local edit pushed to
Salesforce by the fields' sync rules (bridge.web.edits), like `PATCH /api/v1/referrals/{id}`;
the status moves by the state machine's rules — the member list and pages, and "add as
referral" for an entry that matched nobody; why a referral is not in Salesforce yet
and its manual sync button (`POST /api/v1/referrals/{id}/sync`)."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select
from werkzeug.wrappers import Response

from bridge.store.models import (
    Member,
    OrgConnection,
    Program,
    Push,
    Referral,
    ReferralStatusChange,
    SalesEntry,
)
from bridge.vocabulary import REFERRAL_STATUSES
from bridge.web import actions, edits, listing
from bridge.web.auth import login_required
from bridge.web.extensions import store
from bridge.web.security import page_of
from bridge.web.triage import person
from bridge.writeback import history

bp = Blueprint("referrals", __name__)

EDITABLE = edits.REFERRAL_EDITABLE

SF_LINKS = (
    ("Lead", "sf_lead_id"),
    ("Contact", "sf_contact_id"),
    ("Account", "sf_account_id"),
    ("Opportunity", "sf_opportunity_id"),
)


@bp.get("/referrals")
@login_required
def referrals() -> str:
    f = listing.referral_filters()
    with store().session() as s:
        query = listing.referrals(f)
        pg = page_of(s, query, current_app.config["PAGE_SIZE"])
        rows = s.execute(pg.of(query)).all()
        programs = list(s.scalars(select(Program.key).order_by(Program.key)))
        return render_template(
            "referrals.html",
            rows=rows,
            f=f,
            total=pg.total,
            statuses=REFERRAL_STATUSES,
            programs=programs,
            sorts=listing.REFERRAL_SORTS,
            page=pg.number,
            pages=pg.pages,
        )


def _status_dates(history: list[ReferralStatusChange]) -> dict[str, Any]:
    """When the referral last reached each status."""
    return {h.to_status: h.created_at for h in history}


@bp.get("/referrals/<int:referral_id>")
@login_required
def referral(referral_id: int) -> str:
    with store().session() as s:
        r = s.get(Referral, referral_id)
        if r is None:
            abort(404)
        member = s.get(Member, r.member_id) if r.member_id else None
        program = s.get(Program, r.program_id)
        statuses = list(
            s.scalars(
                select(ReferralStatusChange)
                .where(ReferralStatusChange.referral_id == r.id)
                .order_by(ReferralStatusChange.id)
            )
        )
        entries = list(
            s.scalars(
                select(SalesEntry).where(SalesEntry.referral_id == r.id).order_by(SalesEntry.id)
            )
        )
        pushes = list(s.scalars(select(Push).where(Push.referral_id == r.id).order_by(Push.id)))
        conn = (
            s.get(OrgConnection, program.org_connection_id)
            if program and program.org_connection_id
            else None
        )
        base = conn.instance_url.rstrip("/") if conn and conn.instance_url else None
        return render_template(
            "referral.html",
            r=r,
            member=member,
            program=program,
            statuses=statuses,
            dates=_status_dates(statuses),
            entries=entries,
            people={e.id: person(e) for e in entries},
            pushes=pushes,
            sf_links=[(label, getattr(r, col)) for label, col in SF_LINKS],
            sf_base=base,
            history=history.of(s, r),
            editable=EDITABLE,
            not_sent=edits.why_not_sent(s, r),
            all_statuses=REFERRAL_STATUSES,
        )


@bp.post("/referrals/<int:referral_id>/sync")
@login_required
def sync(referral_id: int) -> Response:
    """Manual sync: send the referral now, whatever the routing criteria and delay (audited)."""
    back = redirect(url_for("referrals.referral", referral_id=referral_id))
    with store().session() as s:
        r = s.get(Referral, referral_id)
        if r is None:
            abort(404)
        try:
            push = edits.sync_referral(s, r, actor=g.user.email)
        except actions.ActionError as exc:
            flash(exc.message, "error")
            return back
        s.flush()
        push_id, state = push.id, push.state
    if state != "pending":
        flash(f"Referral {referral_id} is already sent (push {push_id}, {state}).", "success")
        return back
    flash(f"Referral {referral_id}: push {push_id} {actions.enqueue_pushes([push_id])}.", "success")
    return back


@bp.post("/referrals/<int:referral_id>/edit")
@login_required
def edit(referral_id: int) -> Response:
    """Only the fields the form changed are edited; an empty value clears (a last name stays)."""
    back = redirect(url_for("referrals.referral", referral_id=referral_id))
    with store().session() as s:
        r = s.get(Referral, referral_id)
        if r is None:
            abort(404)
        data: dict[str, Any] = {}
        for name in EDITABLE:
            if name not in request.form:
                continue
            value = request.form[name].strip() or None
            if value != getattr(r, name):
                data[name] = value
        extra = {}
        for key, value in request.form.items():
            if (
                key.startswith("field:")
                and key[6:]
                and (value.strip() or None) != (r.fields or {}).get(key[6:])
            ):
                extra[key[6:]] = value.strip() or None
        added = request.form.get("add_key", "").strip()
        if added:
            extra[added] = request.form.get("add_value", "").strip() or None
        if extra:
            data["fields"] = extra
        if not data:
            flash("Nothing changed.", "success")
            return back
        if "last_name" in data and data["last_name"] is None:
            flash("A referral keeps its last name.", "error")
            return back
        pushes = edits.edit_referral(s, r, data, actor=g.user.email)
        s.flush()
        ids = [p.id for p in pushes]
    note = actions.enqueue_pushes(ids)
    sent = (
        f" {len(ids)} write(s) to Salesforce {note}." if ids else " Nothing to send to Salesforce."
    )
    flash(f"Referral {referral_id} saved.{sent}", "success")
    return back


@bp.post("/referrals/<int:referral_id>/status")
@login_required
def change_status(referral_id: int) -> Response:
    target = request.form.get("status", "").strip()
    try:
        with store().session() as s:
            r = edits.get_referral(s, referral_id)
            old = r.status
            edits.change_status(
                s,
                r,
                target,
                override_denied=request.form.get("override_denied") == "yes",
                actor=g.user.email,
            )
        flash(f"Referral {referral_id}: {old} → {target}.", "success")
    except actions.ActionError as exc:
        flash(f"Status not changed: {exc.message}", "error")
    return redirect(url_for("referrals.referral", referral_id=referral_id))


@bp.post("/entries/<int:entry_id>/add-referral")
@login_required
def add_from_entry(entry_id: int) -> Response:
    """A referral made from the entry's person, under the member the form names, in the entry's
    program; then the entry is decided again with that referral."""
    member_id = request.form.get("member_id", "").strip()
    back = url_for("review.entry", entry_id=entry_id)
    try:
        with store().session() as s:
            e = actions.get_entry_or_404(s, entry_id)
            program = s.get(Program, e.program_id) if e.program_id else None
            if program is None:
                raise actions.Unprocessable("the entry has no program to add the referral to")
            if not member_id.isdecimal() or len(member_id) > 18:
                raise actions.ActionError("pick the referring member", fields=["member_id"])
            who = person(e)
            first, _, last = who.name.rpartition(" ")
            referral, push = actions.create_referral(
                s,
                {
                    "program": program.key,
                    "member": {"id": int(member_id)},
                    "first_name": first or None,
                    "last_name": last or who.email or "unknown",
                    "email": who.email or None,
                    "company": who.company or None,
                },
                actor=g.user.email,
            )
            s.flush()
            actions.retry_entry(s, e, actor=g.user.email, referral_id=referral.id)
            public_id, outcome = referral.public_id, e.outcome
            pushes = [push.id] if push else []
            pushes += list((e.decision or {}).get("pushes") or [])
        actions.enqueue_pushes(pushes)
        flash(f"Added referral {public_id}; entry {entry_id} is now {outcome}.", "success")
    except actions.ActionError as exc:
        flash(f"No referral added: {exc.message}", "error")
    return redirect(back)


@bp.get("/members")
@login_required
def members() -> str:
    q = request.args.get("q", "").strip()[:200]
    with store().session() as s:
        query = listing.members(q)
        pg = page_of(s, query, current_app.config["PAGE_SIZE"])
        rows = s.execute(pg.of(query)).all()
        return render_template("members.html", rows=rows, q=q, page=pg.number, pages=pg.pages)


@bp.get("/members/<int:member_id>")
@login_required
def member(member_id: int) -> str:
    with store().session() as s:
        m = s.get(Member, member_id)
        if m is None:
            abort(404)
        program = s.get(Program, m.program_id)
        rows = list(
            s.scalars(
                select(Referral).where(Referral.member_id == m.id).order_by(Referral.id.desc())
            )
        )
        counts: dict[str, int] = {}
        for r in rows:
            counts[r.status] = counts.get(r.status, 0) + 1
        return render_template(
            "member.html",
            m=m,
            program=program,
            rows=rows,
            counts=counts,
            statuses=REFERRAL_STATUSES,
        )
