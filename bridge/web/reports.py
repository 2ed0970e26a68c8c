"""Integration reports: every push to Salesforce and every entry, with success or error, and
the repush / retry buttons."""

from __future__ import annotations

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
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from bridge.store.models import Push, Referral, SalesEntry
from bridge.vocabulary import PUSH_KINDS, PUSH_STATES, REPUSHABLE
from bridge.web import actions, edits, fitcheck, pushlist
from bridge.web.auth import login_required, role_required
from bridge.web.extensions import store
from bridge.web.security import local_next, page_of
from bridge.web.triage import person, plain
from bridge.writeback.pushes import attempts_of

bp = Blueprint("reports", __name__, url_prefix="/reports")


@bp.get("/pushes")
@login_required
def pushes() -> str:
    f = pushlist.filters_from(request.args)
    with store().session() as s:
        query = pushlist.query(f)
        pg = page_of(s, query, current_app.config["PAGE_SIZE"])
        rows = list(s.scalars(pg.of(query.order_by(Push.id.desc()))))
        # The tab counts follow the other filters.
        others = pushlist.query({k: v for k, v in f.items() if k != "state"}).subquery()
        by_state = select(others.c.state, func.count()).group_by(others.c.state)
        counts: dict[str, int] = {state: n for state, n in s.execute(by_state).all()}
        names = _referral_names(s, {p.referral_id for p in rows if p.referral_id})
        bulk = f.get("state", "failed") in REPUSHABLE
        matching = pushlist.select_matching(s, f) if bulk else None
        options = pushlist.options(s)
    return render_template(
        "pushes.html",
        names=names,
        rows=rows,
        f=f,
        state=f.get("state", ""),
        page=pg.number,
        pages=pg.pages,
        counts=counts,
        states=PUSH_STATES,
        kinds=PUSH_KINDS,
        options=options,
        matching=matching,
        words=pushlist.in_words,
    )


@bp.post("/pushes/repush")
@role_required("admin")
def repush_matching() -> Response | str:
    """Repush every failed or skipped push the filters select: first a confirmation saying how
    many and with which error codes; nothing changes until it is confirmed."""
    f = pushlist.filters_from(request.form)
    back = url_for("reports.pushes", **f)  # type: ignore[arg-type]
    try:
        with store().session() as s:
            pushlist.check(s, f, repush=True)
            if request.form.get("confirm") != "yes":
                planned = pushlist.select_matching(s, f)
                rows = list(s.scalars(pushlist.repushable(f).where(Push.id.in_(planned.pushes))))
                names = _referral_names(s, {p.referral_id for p in rows if p.referral_id})
                return render_template(
                    "pushes_repush_confirm.html",
                    f=f,
                    planned=planned,
                    rows=rows,
                    names=names,
                    back=back,
                    words=pushlist.in_words,
                )
            confirmed = [int(i) for i in request.form.getlist("push_id") if i.isdigit()]
            done = pushlist.repush_matching(s, f, actor=g.user.email, confirmed=confirmed)
    except actions.ActionError as exc:
        flash(f"Nothing was repushed: {exc.message}", "error")
        return redirect(back)
    note = actions.enqueue_pushes(done.pushes)
    if done.pushes:
        flash(
            f"Repushed {len(done.pushes)} push{'es' if len(done.pushes) != 1 else ''} "
            f"({pushlist.in_words(done.error_codes)}); {note}.",
            "success",
        )
    else:
        flash("Nothing was repushed: no push matches any more.", "error")
    if done.gone:
        flash(
            f"Left alone (no longer failed or skipped, or no longer matching): "
            f"{', '.join(map(str, done.gone))}.",
            "error",
        )
    return redirect(back)


@bp.get("/pushes/<int:push_id>")
@login_required
def push(push_id: int) -> str:
    """One push: what it carries, Salesforce's error beside each field it named, the attempts,
    and (for admins) the fields to write differently before repushing."""
    with store().session() as s:
        row = s.get(Push, push_id)
        if row is None:
            abort(404)
        attempts = attempts_of(s, push_id)
        names = _referral_names(s, {row.referral_id} if row.referral_id else set())
        overrides = dict((row.payload or {}).get("overrides") or {})
        # The fields to offer: those Salesforce named, then those already overridden.
        fix = list(dict.fromkeys([*(row.error_fields or []), *overrides]))
        try:
            sources = edits.referral_sources(s, row) if row.state in REPUSHABLE else {}
        except actions.ActionError:  # a broken config file: the fix still works, alone
            sources = {}
        return render_template(
            "push.html", p=row, attempts=attempts, names=names, overrides=overrides, fix=fix,
            sources=sources,
        )  # fmt: skip


@bp.post("/pushes/<int:push_id>/repush")
@role_required("admin")
def repush(push_id: int) -> Response:
    """Send a failed or skipped push again, with the Salesforce fields the form changes (each
    checked against the org's fields first); the attempts so far stay. A field ticked "also
    save on the referral" is saved there too (`edits.save_on_referral`)."""
    fields = {
        key.removeprefix("field."): value
        for key, value in request.form.items()
        if key.startswith("field.") and value != ""
    }
    also = {f: v for f, v in fields.items() if request.form.get(f"save.{f}") == "yes"}
    if fields:
        fitcheck.read_rules(push_id=push_id)  # before the transaction, as the API does
    try:
        with store().session() as s:
            push = actions.get_push(s, push_id)
            actions.repush(s, push, actor=g.user.email, fields=fields)
            saved, more = edits.save_on_referral(s, push, also, actor=g.user.email)
            s.flush()
            ids = [push_id, *(p.id for p in more)]
        note = actions.enqueue_pushes(ids)
        changed = f" with {', '.join(sorted(fields))} changed" if fields else ""
        on = f"; saved on the referral: {', '.join(saved)}" if saved else ""
        flash(f"Push {push_id} will be sent again{changed} ({note}){on}.", "success")
    except actions.ActionError as exc:
        flash(f"Push {push_id} was not repushed: {exc.message}", "error")
    return redirect(local_next(url_for("reports.push", push_id=push_id)))


@bp.get("/entries")
@login_required
def entries() -> str:
    result = request.args.get("result", "")
    with store().session() as s:
        query = select(SalesEntry).where(SalesEntry.outcome.in_(("processed", "failed")))
        if result == "success":
            query = query.where(SalesEntry.outcome == "processed")
        elif result == "error":
            query = query.where(SalesEntry.outcome == "failed")
        pg = page_of(s, query, current_app.config["PAGE_SIZE"])
        rows = list(s.scalars(pg.of(query.order_by(SalesEntry.id.desc()))))
    return render_template(
        "report_entries.html",
        rows=rows,
        people={e.id: person(e) for e in rows},
        reason_words=plain,
        result=result,
        page=pg.number,
        pages=pg.pages,
    )


def _referral_names(s: Session, ids: set[int]) -> dict[int, str]:
    """Referral id -> "Ada Lovelace (ref_…)", for showing names instead of bare ids."""
    if not ids:
        return {}
    rows = s.execute(
        select(Referral.id, Referral.first_name, Referral.last_name, Referral.public_id).where(
            Referral.id.in_(ids)
        )
    )
    return {
        rid: f"{' '.join(filter(None, (first, last))) or 'unnamed'} ({public})"
        for rid, first, last, public in rows
    }
