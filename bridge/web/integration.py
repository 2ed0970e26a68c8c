"""The integration health page (admins and reviewers): per org its connection, stream, polling
cursors and Salesforce API usage; for the bridge its queues, failed pushes, entries needing
attention and notification delivery. `/integration.json` gives the same for the dashboard,
which polls it to refresh itself without reloading.

Where the figures come from: the store (connections, cursors, events, entries, pushes), Redis
(the stream lease a running `sfbridge stream` holds, rq queue depths, the API counters of
bridge.metrics). An org is healthy when it is connected, a subscriber holds its stream lease
(a stopped subscriber's lease lapses within `LEASE_TTL_SECONDS`) and stored events wait no
longer than `READY_MAX_LAG_SECONDS` — the checks of `/readyz`, in words. Reads only."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from markupsafe import Markup
from rq import Queue
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bridge import defaults, metrics, switches
from bridge.config import BridgeConfig, OrgConfig
from bridge.errors import ConfigError, UsageError
from bridge.salesforce import budget
from bridge.store.models import InboundEvent, OrgConnection, Push, SalesEntry, SyncCursor, utcnow
from bridge.streaming.inbox import BACKFILL_PREFIX
from bridge.streaming.subscriber import lease_key, topic_channels
from bridge.vocabulary import ENTRY_OUTCOMES
from bridge.web.auth import login_required, role_required
from bridge.web.chart import entries_per_day_svg
from bridge.web.extensions import store, web

bp = Blueprint("integration", __name__)

API_DAYS = 14
API_SERIES = {"calls": "#1565c0"}


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _age(at: datetime | None, now: datetime) -> float | None:
    return round((now - at).total_seconds(), 1) if at else None


def _api(conn: Any, name: str, today: date) -> dict[str, Any]:
    """Calls per day, the last successful call and the usage Salesforce last reported."""
    if conn is None:
        return {"known": False, "days": {}, "last_ok_at": None, "used": None, "limit": None}
    daily = {_text(k): int(v) for k, v in conn.hgetall(metrics.daily_key(name)).items()}
    days = [(today - timedelta(days=i)).isoformat() for i in range(API_DAYS - 1, -1, -1)]
    usage = budget.read(conn, name)
    return {
        "known": usage is not None,
        "days": {d: daily.get(d, 0) for d in days},
        "last_ok_at": _text(conn.hget(metrics.SF_API_LAST_OK, name)),
        "used": usage.used if usage else None,
        "limit": usage.allocation if usage else None,
    }


def _org(
    s: Session, conn: Any, name: str, org: OrgConfig, row: OrgConnection | None, now: datetime
) -> dict[str, Any]:
    problems: list[str] = []
    if row is None or not row.org_id:
        problems.append(f"not connected: run `sfbridge org connect {name}`")
    channels = topic_channels(org)
    holder = None
    if conn is not None:
        holder = _text(conn.get(lease_key(name, list(channels))))
        if not holder:
            problems.append(f"no subscriber streams it: is `sfbridge stream --org {name}` running?")
    cursors: dict[str, SyncCursor] = {}
    last_event: dict[str, datetime] = {}
    waiting_since = None
    if row is not None:
        cursors = {
            c.channel: c
            for c in s.scalars(select(SyncCursor).where(SyncCursor.org_connection_id == row.id))
        }
        last_event = dict(
            s.execute(
                select(InboundEvent.channel, func.max(InboundEvent.received_at))
                .where(InboundEvent.org_connection_id == row.id)
                .group_by(InboundEvent.channel)
            ).all()
        )
        waiting_since = s.scalar(
            select(func.min(InboundEvent.received_at)).where(
                InboundEvent.org_connection_id == row.id, InboundEvent.state == "new"
            )
        )
    lag = _age(waiting_since, now) or 0.0
    max_lag = current_app.config["READY_MAX_LAG_SECONDS"]
    if lag > max_lag:
        problems.append(f"events wait {lag:.0f}s to be processed (limit {max_lag}s)")
    stream = [
        {
            "channel": ch,
            "object": obj,
            "last_event_at": _iso(last_event.get(ch)),
            "last_event_age_seconds": _age(last_event.get(ch), now),
            "cursor_at": _iso(cursors[ch].updated_at) if ch in cursors else None,
        }
        for ch, obj in channels.items()
    ]
    polling = [
        {
            "channel": c.channel,
            "modstamp": _iso(c.modstamp),
            "updated_at": _iso(c.updated_at),
            # a backfill's cursor lives while it runs, at the SystemModstamp it has reached
            "backfill": c.channel.startswith(BACKFILL_PREFIX),
            "behind_seconds": _age(c.modstamp, now),
        }
        for c in cursors.values()
        if c.modstamp is not None
    ]
    return {
        "name": name,
        "healthy": not problems,
        "problems": problems,
        "connected": bool(row and row.org_id),
        "switch": switches.state(row) if row else None,
        "org_id": row.org_id if row else None,
        "instance_url": row.instance_url if row else None,
        "auth_method": row.auth_method if row else None,
        "credentials_stored_at": _iso(row.updated_at) if row else None,
        "credentials_age_seconds": _age(row.updated_at, now) if row else None,
        "stream": {
            "transport": org.streaming.transport,
            "holder": holder,
            "lag_seconds": lag,
            "channels": stream,
        },
        "polling": polling,
        "backfills": sum(1 for p in polling if p["backfill"]),
        "api": _api(conn, name, now.date()),
    }


def _redis_figures(conn: Any) -> tuple[Any, dict[str, int | None]]:
    """(the client or None when it does not answer, depth per queue)."""
    if conn is None:
        return None, {q: None for q in defaults.QUEUES}
    try:
        return conn, {q: Queue(q, connection=conn).count for q in defaults.QUEUES}
    except Exception:  # Redis down: say unknown, the rest still shows
        return None, {q: None for q in defaults.QUEUES}


def health() -> dict[str, Any]:
    """Everything the page and the JSON show."""
    now = utcnow()
    problems: list[str] = []
    cfg: BridgeConfig | None = None
    try:
        cfg = web().config()
    except ConfigError as exc:
        problems.append(f"the config file has problems: {exc.message}")
    conn, queues = _redis_figures(web().redis())
    if conn is None:
        problems.append("Redis does not answer (or SFBRIDGE_REDIS_URL is not set)")
    with store().session() as s:
        rows = {c.name: c for c in s.scalars(select(OrgConnection))}
        orgs = [_org(s, conn, n, o, rows.get(n), now) for n, o in (cfg.orgs if cfg else {}).items()]
        outcomes = dict(
            s.execute(select(SalesEntry.outcome, func.count()).group_by(SalesEntry.outcome)).all()
        )
        pushes = dict(s.execute(select(Push.state, func.count()).group_by(Push.state)).all())
        notify = dict(
            s.execute(
                select(SalesEntry.notify_state, func.count())
                .where(SalesEntry.notify_state.is_not(None))
                .group_by(SalesEntry.notify_state)
            ).all()
        )
    healthy = not problems and all(o["healthy"] for o in orgs)
    return {
        "status": "healthy" if healthy else "unhealthy",
        "checked_at": now.isoformat(),
        "problems": problems,
        "orgs": orgs,
        "queues": queues,
        "entries": {k: outcomes.get(k, 0) for k in ENTRY_OUTCOMES},
        "pushes": {k: pushes.get(k, 0) for k in ("pending", "failed", "sent")},
        "notifications": {k: notify.get(k, 0) for k in ("sent", "failed", "pending")},
    }


def api_chart(org: dict[str, Any]) -> Markup:
    days = [date.fromisoformat(d) for d in org["api"]["days"]]
    counts = {date.fromisoformat(d): {"calls": n} for d, n in org["api"]["days"].items()}
    svg = entries_per_day_svg(
        days,
        counts,
        series=API_SERIES,
        title=f"Salesforce API calls per day, org {org['name']}",
        chart_id=f"api-chart-{org['name']}",
    )
    return Markup(svg)  # noqa: S704 - built from numbers, dates and an escaped title


@bp.get("/integration")
@login_required
def page() -> str:
    return render_template(
        "integration.html",
        h=health(),
        chart=api_chart,
        refresh_ms=int(defaults.HEALTH_REFRESH_SECONDS * 1000),
    )


@bp.get("/integration.json")
@login_required
def as_json() -> ResponseReturnValue:
    return jsonify(health())


@bp.post("/integration/<name>/switch")
@role_required("admin")
def switch(name: str) -> ResponseReturnValue:
    """Pause or resume one direction of an org (the on/off switch of `sfbridge org pause`)."""
    direction, action = request.form.get("direction"), request.form.get("action")
    if direction not in switches.DIRECTIONS or action not in ("pause", "resume"):
        flash("choose outbound or inbound, and pause or resume", "error")
    else:
        try:
            switches.set_paused(
                store(), web().redis(), name, [direction], action == "pause", actor=g.user.email
            )
            flash(f"{direction} of org {name}: {'paused' if action == 'pause' else 'on'}")
        except UsageError as exc:
            flash(str(exc), "error")
    return redirect(url_for("integration.page") + f"#org-{name}")
