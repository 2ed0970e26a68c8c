"""The reviewer UI: dashboard, the queue by outcome, the entry page and its actions, the audit
view. Every state change is a POST with a CSRF token, audited in the same transaction."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
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
from sqlalchemy import Select, String, cast, func, or_, select
from werkzeug.wrappers import Response

from bridge.config import parse_field_ref
from bridge.salesforce import budget
from bridge.store.models import (
    AuditLog,
    Program,
    Push,
    Referral,
    SalesEntry,
    utcnow,
)
from bridge.vocabulary import ENTRY_OUTCOMES, STREAMED_OBJECTS
from bridge.web import actions
from bridge.web.auth import login_required, role_required
from bridge.web.chart import entries_per_day_svg
from bridge.web.extensions import store, web
from bridge.web.security import local_next, page_number
from bridge.web.words import DECISION_FIELDS, WAITING_OUTCOMES, reason_text

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


def _filters() -> dict[str, str]:
    keys = ("program", "object", "reason", "date_from", "date_to")
    return {k: request.args.get(k, "").strip() for k in keys if request.args.get(k, "").strip()}


def _parse_day(value: str, field: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        flash(f"Ignored the {field} filter: '{value}' is not a date (YYYY-MM-DD).", "error")
        return None


def _apply_filters(query: Select[Any], f: dict[str, str]) -> Select[Any]:
    if "program" in f:
        query = query.join(Program, Program.id == SalesEntry.program_id).where(
            Program.key == f["program"]
        )
    if f.get("object") in STREAMED_OBJECTS:
        query = query.where(SalesEntry.sobject_type == f["object"])
    if "reason" in f:
        # reasons is a JSON list of codes; match a code or a code prefix like "status_rule"
        query = query.where(cast(SalesEntry.reasons, String).like(f'%"{f["reason"]}%'))
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


@bp.get("/queue/<outcome>")
@login_required
def queue(outcome: str) -> str:
    if outcome not in ENTRY_OUTCOMES:
        abort(404)
    f = _filters()
    page = page_number()
    size = current_app.config["PAGE_SIZE"]
    with store().session() as s:
        base = _apply_filters(select(SalesEntry).where(SalesEntry.outcome == outcome), f)
        total = s.scalar(select(func.count()).select_from(base.subquery())) or 0
        entries = list(
            s.scalars(base.order_by(SalesEntry.id.desc()).offset((page - 1) * size).limit(size))
        )
        tab_counts = dict(
            s.execute(select(SalesEntry.outcome, func.count()).group_by(SalesEntry.outcome)).all()
        )
        programs = list(s.scalars(select(Program.key).order_by(Program.key)))
        reasons = _known_reasons(s)
    pages = max(1, -(-total // size))
    return render_template(
        "queue.html",
        outcome=outcome,
        entries=entries,
        filters=f,
        page=page,
        pages=pages,
        total=total,
        tabs=ENTRY_OUTCOMES,
        tab_counts=tab_counts,
        programs=programs,
        sobjects=STREAMED_OBJECTS,
        reasons=reasons,
        summary=_summary,
    )


def _known_reasons(s: Any) -> list[str]:
    seen: set[str] = set()
    for reasons in s.scalars(select(SalesEntry.reasons).order_by(SalesEntry.id.desc()).limit(500)):
        seen.update(str(r) for r in (reasons or []))
    return sorted(seen)


def _summary(entry: SalesEntry) -> str:
    record = (entry.records or {}).get(entry.sobject_type) or {}
    name = record.get("Name") or " ".join(
        str(record[k]) for k in ("FirstName", "LastName") if record.get(k)
    )
    email = record.get("Email")
    bits = [b for b in (name, email, record.get("Company") or record.get("StageName")) if b]
    return " · ".join(str(b) for b in bits) or (entry.record_id or "")


@bp.get("/entries/<int:entry_id>")
@login_required
def entry(entry_id: int) -> str:
    q = request.args.get("q", "").strip()
    with store().session() as s:
        e = actions.get_entry_or_404(s, entry_id)
        referral = s.get(Referral, e.referral_id) if e.referral_id else None
        found: list[Referral] = []
        if q:
            like = f"%{q.lower()}%"
            found = list(
                s.scalars(
                    select(Referral)
                    .where(
                        or_(
                            func.lower(Referral.email).like(like),
                            Referral.name_key.like(like),
                            func.lower(Referral.company).like(like),
                            Referral.public_id == q,
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
        org_name = actions.entry_org_name(s, e)
    return render_template(
        "entry.html",
        e=e,
        referral=referral,
        q=q,
        found=found,
        history=history,
        reason_text=reason_text,
        decision_fields=DECISION_FIELDS,
        read_only_fields=READ_ONLY_FIELDS,
        waiting=WAITING_OUTCOMES.get(e.outcome, ""),
        org_name=org_name,
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
            pushes = list((e.decision or {}).get("pushes") or [])
        actions.enqueue_pushes(pushes)  # the link-back or field sync the decision queued
        flash(f"Entry {entry_id} {what}: it is now {outcome}.", "success")
    except actions.ActionError as exc:
        flash(f"Entry {entry_id} was not {what}: {exc.message}", "error")
    return redirect(local_next(url_for("review.entry", entry_id=entry_id)))


@bp.post("/entries/<int:entry_id>/approve")
@login_required
def approve(entry_id: int) -> Response:
    return _run(entry_id, "approved", lambda s, e: actions.approve_entry(s, e, actor=_actor()))


@bp.post("/entries/<int:entry_id>/reject")
@login_required
def reject(entry_id: int) -> Response:
    note = request.form.get("note", "").strip() or None
    return _run(
        entry_id, "rejected", lambda s, e: actions.reject_entry(s, e, actor=_actor(), note=note)
    )


@bp.post("/entries/<int:entry_id>/retry")
@login_required
def retry(entry_id: int) -> Response:
    """Edit fields and/or pick a referral, then decide again. Only changed fields are sent."""
    referral_raw = request.form.get("referral_id", "").strip()
    referral_id = _form_id(referral_raw)

    def run(s: Any, e: SalesEntry) -> None:
        fields: dict[str, dict[str, Any]] = {}
        for key, value in request.form.items():
            if not key.startswith("field:"):
                continue
            _, obj, name = (key.split(":", 2) + ["", ""])[:3]
            if not obj or not name:
                raise actions.ActionError(f"the form sent '{key}', not field:<object>:<field>")
            old = ((e.records or {}).get(obj) or {}).get(name)
            new: Any = value if value != "" else None
            if ("" if old is None else str(old)) != value:
                fields.setdefault(obj, {})[name] = new
        added = request.form.get("add_field", "").strip()
        if added:
            try:
                obj, name = parse_field_ref(added)
            except ValueError as exc:
                raise actions.ActionError(f"cannot add '{added}': {exc}") from None
            fields.setdefault(obj, {})[name] = request.form.get("add_value", "") or None
        actions.retry_entry(s, e, actor=_actor(), fields=fields or None, referral_id=referral_id)

    return _run(entry_id, "retried", run)


@bp.post("/entries/bulk")
@login_required
def bulk() -> Response:
    action = request.form.get("action")
    ids = [i for i in map(_form_id, request.form.getlist("entry_id")) if i is not None]
    back = local_next(url_for("review.queue", outcome="review"))
    if action not in ("approve", "reject") or not ids:
        flash("Tick at least one entry and choose approve or reject.", "error")
        return redirect(back)
    done, refused = 0, []
    for entry_id in ids:
        try:
            with store().session() as s:
                e = actions.get_entry_or_404(s, entry_id)
                if action == "approve":
                    actions.approve_entry(s, e, actor=_actor())
                else:
                    actions.reject_entry(s, e, actor=_actor(), note="bulk")
                pushes = list((e.decision or {}).get("pushes") or [])
            actions.enqueue_pushes(pushes)
            done += 1
        except actions.ActionError as exc:
            refused.append(f"{entry_id} ({exc.message})")
    verb = "approved" if action == "approve" else "rejected"
    flash(f"{done} entr{'y' if done == 1 else 'ies'} {verb}.", "success")
    if refused:
        flash("Not changed: " + "; ".join(refused), "error")
    return redirect(back)


@bp.get("/audit")
@login_required
def audit_log() -> str:
    page = page_number()
    size = current_app.config["PAGE_SIZE"] * 2
    f = {
        k: request.args.get(k, "").strip() for k in ("actor", "action", "object_type", "object_id")
    }
    with store().session() as s:
        query = select(AuditLog)
        for key, value in f.items():
            if value:
                query = query.where(getattr(AuditLog, key) == value)
        total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = list(
            s.scalars(query.order_by(AuditLog.id.desc()).offset((page - 1) * size).limit(size))
        )
    return render_template(
        "audit.html", rows=rows, filters=f, page=page, pages=max(1, -(-total // size)), total=total
    )


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
