"""The reviewer UI: dashboard, the queue by outcome, the entry page and its actions, the audit
view. Every state change is a POST with a CSRF token, audited in the same transaction."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
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
from markupsafe import Markup
from sqlalchemy import func, or_, select
from werkzeug.wrappers import Response

from bridge import defaults
from bridge.config import parse_field_ref
from bridge.salesforce import budget
from bridge.store.models import (
    AuditLog,
    Member,
    OrgConnection,
    Program,
    Push,
    Referral,
    SalesEntry,
    utcnow,
)
from bridge.vocabulary import ENTRY_OUTCOMES, OPEN_OUTCOMES, REVIEW, STREAMED_OBJECTS
from bridge.web import actions, integration
from bridge.web import queue as queue_query
from bridge.web.auth import login_required, role_required
from bridge.web.chart import entries_per_day_svg
from bridge.web.extensions import store, web
from bridge.web.security import local_next, page_of
from bridge.web.triage import differences, effects_summary, person, proposal
from bridge.web.words import DECISION_FIELDS, WAITING_OUTCOMES, audit_words

bp = Blueprint("review", __name__)

CHART_DAYS = 14
#: Record fields Salesforce sets itself: shown, never offered for editing.
READ_ONLY_FIELDS = frozenset({
    "Id", "Name", "SystemModstamp", "CreatedDate", "CreatedById", "LastModifiedDate",
    "LastModifiedById", "IsDeleted", "IsConverted", "ConvertedContactId", "ConvertedAccountId",
    "ConvertedOpportunityId", "ConvertedDate", "MasterRecordId",
})  # fmt: skip


def _actor() -> str:
    return str(g.user.email)


@login_required
def dashboard() -> str:
    with store().session() as s:
        outcomes = dict(
            s.execute(select(SalesEntry.outcome, func.count()).group_by(SalesEntry.outcome)).all()
        )
        pushes = dict(s.execute(select(Push.state, func.count()).group_by(Push.state)).all())
        today = utcnow().date()
        days = [today - timedelta(days=i) for i in range(CHART_DAYS - 1, -1, -1)]
        since = datetime.combine(days[0], datetime.min.time(), tzinfo=UTC)
        counts: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for created, outcome in s.execute(
            select(SalesEntry.created_at, SalesEntry.outcome).where(SalesEntry.created_at >= since)
        ):
            counts[created.date()][outcome] += 1
        referrals = s.scalar(select(func.count(Referral.id))) or 0
    chart = Markup(entries_per_day_svg(days, counts))  # noqa: S704 - built from numbers and dates
    return render_template(
        "dashboard.html",
        outcomes=outcomes,
        pushes=pushes,
        chart=chart,
        referrals=referrals,
        demo_changes=bool(current_app.config.get("DEMO_CHANGES")),
        api_usage=_api_usage(),
        health=integration.health(),
        refresh_ms=int(defaults.HEALTH_REFRESH_SECONDS * 1000),
    )


def _api_usage() -> list[dict[str, Any]]:
    """Each org's daily API usage against its allocation and budget (empty without Redis)."""
    conn = web().redis()
    try:
        readings = budget.read_all(conn) if conn is not None else {}
        cfg = web().config()
        orgs = cfg.orgs if cfg is not None else {}
    except Exception:  # noqa: BLE001 - Redis or the config unavailable: the card is left out
        return []
    return [
        {"org": name, "usage": readings[name], "budget": org.api_budget.share}
        for name, org in orgs.items()
        if name in readings
    ]


@bp.get("/queue/<outcome>")
@login_required
def queue(outcome: str) -> str:
    if outcome not in ENTRY_OUTCOMES:
        abort(404)
    f = queue_query.filters()
    with store().session() as s:
        rows, pg = queue_query.queue_page(s, outcome, f, current_app.config["PAGE_SIZE"])
        counts = queue_query.tab_counts(s, f)
        programs = list(s.scalars(select(Program.key).order_by(Program.key)))
        reasons = _known_reasons(s)
    return render_template(
        "queue.html",
        outcome=outcome,
        rows=rows,
        filters=f,
        page=pg.number,
        pages=pg.pages,
        total=pg.total,
        tabs=ENTRY_OUTCOMES,
        tab_counts=counts,
        programs=programs,
        sobjects=STREAMED_OBJECTS,
        reasons=reasons,
        sorts={k: label for k, (label, _) in queue_query.SORTS.items()},
    )


def _known_reasons(s: Any) -> list[str]:
    seen: set[str] = set()
    for reasons in s.scalars(select(SalesEntry.reasons).order_by(SalesEntry.id.desc()).limit(500)):
        seen.update(str(r).partition(":")[0] for r in (reasons or []))
    return sorted(seen)


@bp.get("/entries/<int:entry_id>")
@login_required
def entry(entry_id: int) -> str:
    find = request.args.get("find", "").strip()[:200]
    f = queue_query.filters()
    tab = request.args.get("tab", "")
    with store().session() as s:
        e = actions.get_entry_or_404(s, entry_id)
        [row] = queue_query.rows_for(s, [e])
        found: list[Referral] = []
        if find:
            like = f"%{find.lower()}%"
            found = list(
                s.scalars(
                    select(Referral)
                    .where(
                        or_(
                            func.lower(Referral.email).like(like),
                            Referral.name_key.like(like),
                            func.lower(Referral.company).like(like),
                            Referral.public_id == find,
                        )
                    )
                    .order_by(Referral.id.desc())
                    .limit(20)
                )
            )
        history = list(
            s.scalars(
                select(AuditLog)
                .where(AuditLog.object_type == "sales_entry", AuditLog.object_id == str(e.id))
                .order_by(AuditLog.id.desc())
            )
        )
        conn = s.get(OrgConnection, e.org_connection_id) if e.org_connection_id else None
        queue_tab = tab if tab in OPEN_OUTCOMES else REVIEW
        next_id = queue_query.next_entry(s, e.id, queue_tab, f)
        known = actions.known_fields(s, e)
        program_members = (
            list(
                s.scalars(
                    select(Member)
                    .where(Member.program_id == e.program_id)
                    .order_by(Member.name)
                    .limit(500)
                )
            )
            if e.program_id and e.referral_id is None
            else []
        )
    return render_template(
        "entry.html",
        e=e,
        row=row,
        referral=row.referral,
        find=find,
        found=found,
        history=history,
        decision_fields=DECISION_FIELDS,
        read_only_fields=READ_ONLY_FIELDS,
        waiting=WAITING_OUTCOMES.get(e.outcome, ""),
        org_name=conn.name if conn else None,
        sf_url=f"{conn.instance_url.rstrip('/')}/{e.record_id}"
        if conn and conn.instance_url and e.record_id
        else None,
        queue_args={**f, "tab": queue_tab},
        next_id=next_id,
        differs=lambda r: differences(row.person, r),
        known_fields=known,
        audit_words=audit_words,
        program_members=program_members,
    )


def _form_id(raw: str) -> int | None:
    """A row id sent by a form, or None when it is not one (not digits, or past 64 bits)."""
    value = int(raw) if raw.isdecimal() else 0
    return value if 0 < value < 2**63 else None


def _run(entry_id: int, what: str, fn: Any) -> Response:
    try:
        with store().session() as s:
            e = actions.get_entry_or_404(s, entry_id)
            fn(s, e)
            outcome = e.outcome
            referral = s.get(Referral, e.referral_id) if e.referral_id else None
            status = f"; referral {referral.public_id} is {referral.status}" if referral else ""
            pushes = list((e.decision or {}).get("pushes") or [])
        actions.enqueue_pushes(pushes)  # the link-back or field sync the decision queued
        flash(f"Entry {entry_id} {what}: it is now {outcome}{status}.", "success")
    except actions.ActionError as exc:
        flash(f"Entry {entry_id} was not {what}: {exc.message}", "error")
    return redirect(local_next(url_for("review.entry", entry_id=entry_id)))


@bp.post("/entries/<int:entry_id>/approve")
@login_required
def approve(entry_id: int) -> Response:
    return _run(entry_id, "applied", lambda s, e: actions.approve_entry(s, e, actor=_actor()))


@bp.post("/entries/<int:entry_id>/reject")
@login_required
def reject(entry_id: int) -> Response:
    note = request.form.get("note", "").strip() or None
    return _run(
        entry_id, "rejected", lambda s, e: actions.reject_entry(s, e, actor=_actor(), note=note)
    )


def _edited_fields(e: SalesEntry) -> dict[str, dict[str, Any]]:
    """The fields a form changed (`field:<object>:<name>`) or added (`add_field`/`add_value`,
    several allowed); unchanged values are left out."""
    fields: dict[str, dict[str, Any]] = {}
    for key, value in request.form.items():
        if not key.startswith("field:"):
            continue
        _, obj, name = (key.split(":", 2) + ["", ""])[:3]
        if not obj or not name:
            raise actions.ActionError(f"the form sent '{key}', not field:<object>:<field>")
        old = ((e.records or {}).get(obj) or {}).get(name)
        if ("" if old is None else str(old)) != value:
            fields.setdefault(obj, {})[name] = value if value != "" else None
    values = request.form.getlist("add_value")
    for i, added in enumerate(request.form.getlist("add_field")):
        if not (added := added.strip()):
            continue
        try:
            obj, name = parse_field_ref(added)
        except ValueError as exc:
            raise actions.ActionError(f"cannot add '{added}': {exc}") from None
        fields.setdefault(obj, {})[name] = (values[i] if i < len(values) else "") or None
    return fields


@bp.post("/entries/<int:entry_id>/retry")
@login_required
def retry(entry_id: int) -> Response:
    """Edit fields and/or pick a referral, then decide again. Only changed fields are sent."""
    referral_id = _form_id(request.form.get("referral_id", "").strip())

    def run(s: Any, e: SalesEntry) -> None:
        fields = _edited_fields(e)
        actions.retry_entry(s, e, actor=_actor(), fields=fields or None, referral_id=referral_id)
        picked = s.get(Referral, referral_id) if referral_id else None
        for what in differences(person(e), picked):
            flash(f"Check the referral you picked: its {what}.", "warning")

    return _run(entry_id, "retried", run)


#: The bulk bar's actions, in the words of their buttons.
BULK_ACTIONS = {"apply": "Apply the proposed changes", "reject": "Reject entries"}


@bp.post("/entries/bulk")
@login_required
def bulk() -> Response | str:
    """Apply or reject the ticked entries. Without `confirm=yes` this only shows what would
    happen (a confirmation page, so it works without JavaScript); with it, each entry whose
    proposed change is no longer the one confirmed (`expect:<id>`) is left alone."""
    action = request.form.get("action", "")
    action = "apply" if action == "approve" else action
    ids = [i for i in map(_form_id, request.form.getlist("entry_id")) if i is not None]
    back = local_next(url_for("review.queue", outcome="review"))
    if action not in BULK_ACTIONS or not ids:
        flash("Tick at least one entry and choose what to do with them.", "error")
        return redirect(back)
    if request.form.get("confirm") != "yes":
        with store().session() as s:
            entries = list(s.scalars(select(SalesEntry).where(SalesEntry.id.in_(ids))))
            rows = queue_query.rows_for(s, entries)
        effects = [r.effect for r in rows] if action == "apply" else []
        return render_template(
            "bulk_confirm.html",
            rows=rows,
            action=action,
            label=BULK_ACTIONS[action],
            summary=effects_summary(effects, rejected=0 if effects else len(rows)),
            back=back,
        )
    effects, refused = [], []
    for entry_id in ids:
        try:
            with store().session() as s:
                e = actions.get_entry_or_404(s, entry_id)
                if action == "apply":
                    effect = proposal(e)[1]
                    expected = request.form.get(f"expect:{entry_id}")
                    if expected and expected != effect:
                        raise actions.Conflict(
                            f"its proposed change is now '{effect}', not '{expected}' as confirmed"
                        )
                    actions.approve_entry(s, e, actor=_actor())
                    effects.append(effect)
                else:
                    actions.reject_entry(s, e, actor=_actor(), note="bulk")
                pushes = list((e.decision or {}).get("pushes") or [])
            actions.enqueue_pushes(pushes)
        except actions.ActionError as exc:
            refused.append(f"{entry_id} ({exc.message})")
    done = len(ids) - len(refused)
    rejected = done if action == "reject" else 0
    flash(f"Done: {effects_summary(effects, rejected=rejected)}.", "success")
    if refused:
        flash("Not changed: " + "; ".join(refused), "error")
    return redirect(back)


@bp.get("/audit")
@login_required
def audit_log() -> str:
    f = {
        k: request.args.get(k, "").strip() for k in ("actor", "action", "object_type", "object_id")
    }
    with store().session() as s:
        query = select(AuditLog)
        for key, value in f.items():
            if value and key == "object_id":
                query = query.where(AuditLog.object_id == value)
            elif value:  # a part of the name is enough: "approv" finds entry.approved
                column = func.lower(getattr(AuditLog, key))
                query = query.where(column.contains(value.lower()[:200], autoescape=True))
        pg = page_of(s, query, current_app.config["PAGE_SIZE"] * 2)
        rows = list(s.scalars(pg.of(query.order_by(AuditLog.id.desc()))))
    return render_template(
        "audit.html",
        rows=rows,
        filters=f,
        page=pg.number,
        pages=pg.pages,
        total=pg.total,
        audit_words=audit_words,
    )


@bp.get("/favicon.ico")
def favicon() -> Response:
    """Browsers ask for /favicon.ico whatever the page links; it is the same static icon."""
    icon = Path(current_app.static_folder or "", "favicon.svg").read_bytes()
    return Response(icon, mimetype="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


@bp.post("/demo/changes")
@role_required("reviewer")
def demo_changes() -> Response:
    """Demo only: edit records in the local org as the ordinary sales user."""
    make = current_app.config.get("DEMO_CHANGES")
    if not make:
        abort(404)
    try:
        summary = make()
        flash(
            f"Made changes in the org as the sales user: {summary}. Entries arrive in a few "
            "seconds.",
            "success",
        )
    except Exception as exc:
        flash(f"Could not change the org: {exc}", "error")
    return redirect(url_for("index"))
