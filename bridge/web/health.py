"""`/healthz` (the process answers), `/readyz` (what the bridge depends on) and `/metrics`.

Exposure: `/healthz` and the bare answer of `/readyz` (`{"status": "ready"}` or 503 `not
ready`) are public, for load balancers and orchestrators. The details of `/readyz` and all of
`/metrics` name orgs, hosts and volumes, so they need an API token with the `metrics:read`
scope or a client address in `MONITOR_NETWORKS` (`SFBRIDGE_MONITOR_NETWORKS`).

Readiness checks: the database answers; Redis answers (when configured); every org in the config
file has a stored connection with an org id and a running subscriber (one holds the org's
stream lease in Redis); the subscriber keeps up — the oldest stored event still waiting to be
processed is younger than `READY_MAX_LAG_SECONDS`; no channel is stalled — offered events for
longer than `STALL_AFTER_SECONDS` without its cursor moving (`bridge.streaming.stall`: a poison
event the subscriber cannot get past), named in `stalled_channels`. The newest cursor and
event ages are reported too (a quiet org moves neither, so they do not fail the check).
`api_budget:<org>` gives each org's API usage against its daily allocation: over the
configured share it carries a warning (polling is slowed), a used-up allocation fails.

Metrics (Prometheus text format):

- `sfbridge_inbound_events_total{org,channel}` events stored per org and channel
- `sfbridge_sales_entries{outcome}` entries per outcome
- `sfbridge_pushes{state}` pushes per state
- `sfbridge_rq_queue_depth{queue}` jobs waiting per rq queue (`inbound`, `outbound`)
- `sfbridge_salesforce_api_calls_total{org}` / `sfbridge_salesforce_api_errors_total{org}`
  from the Redis counters `sfbridge:sf_api_calls` / `sfbridge:sf_api_errors` (a hash keyed by
  org, or a plain counter), counted by `bridge.metrics.salesforce_call_hook` on a process's
  Salesforce session
- `sfbridge_salesforce_api_usage{org}` / `sfbridge_salesforce_api_allocation{org}` the daily
  API calls used and allowed, as each org last reported them (`Sforce-Limit-Info`, recorded in
  Redis by the same hook; bridge.salesforce.budget)
- `sfbridge_subscriber_lag_seconds` age of the oldest event waiting to be processed
- `sfbridge_up` 1
"""

from __future__ import annotations

import ipaddress
import time
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from rq import Queue
from sqlalchemy import func, select, text

from bridge import defaults
from bridge.errors import ConfigError
from bridge.salesforce import budget
from bridge.store.models import (
    InboundEvent,
    OrgConnection,
    Push,
    SalesEntry,
    SyncCursor,
    utcnow,
)
from bridge.streaming import stall
from bridge.streaming.subscriber import lease_key, topic_channels
from bridge.vocabulary import ENTRY_OUTCOMES, PUSH_STATES
from bridge.web import bearer
from bridge.web.extensions import store, web

bp = Blueprint("health", __name__)

SF_COUNTERS = {
    "sfbridge_salesforce_api_calls_total": "sfbridge:sf_api_calls",
    "sfbridge_salesforce_api_errors_total": "sfbridge:sf_api_errors",
}


MONITOR_SCOPE = "metrics:read"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def monitor_networks(text: str) -> list[Network]:
    """The networks of `MONITOR_NETWORKS` ("10.0.0.0/8, ::1"); a ConfigError names a bad one."""
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(
                f"SFBRIDGE_MONITOR_NETWORKS: '{part}' is not an address or network (CIDR)"
            ) from None
    return networks


def init_app(app: Flask) -> None:
    app.extensions["sfbridge_monitor_networks"] = monitor_networks(app.config["MONITOR_NETWORKS"])


def _monitor_refusal() -> bearer.Refusal | None:
    """None when the request may see monitoring details: an allowed network or a token."""
    networks: list[Network] = current_app.extensions["sfbridge_monitor_networks"]
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        address = None
    if address is not None and any(address in n for n in networks):
        return None
    header = request.headers.get("Authorization", "")
    if not header:
        return bearer.Refusal(
            401,
            "unauthorized",
            f"send an API token with the {MONITOR_SCOPE} scope (Authorization: Bearer <token>)"
            " or come from a network in SFBRIDGE_MONITOR_NETWORKS",
        )
    with store().session() as s:
        found = bearer.authenticate(s, header, MONITOR_SCOPE)
    return found if isinstance(found, bearer.Refusal) else None


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify({"status": "ok"})


def _age(at: datetime | None) -> float | None:
    return round((utcnow() - at).total_seconds(), 1) if at else None


def _oldest_waiting_event(s: Any) -> datetime | None:
    at: datetime | None = s.scalar(
        select(func.min(InboundEvent.received_at)).where(InboundEvent.state == "new")
    )
    return at


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    checks: dict[str, dict[str, Any]] = {}
    connections: dict[str, OrgConnection] = {}
    cursor_moved: dict[int, dict[str, datetime]] = {}
    try:
        with store().session() as s:
            s.execute(text("SELECT 1"))
            checks["database"] = {"ok": True}
            connections = {c.name: c for c in s.scalars(select(OrgConnection))}
            for c in connections.values():
                s.expunge(c)
            waiting_since = _oldest_waiting_event(s)
            newest_cursor = s.scalar(select(func.max(SyncCursor.updated_at)))
            newest_event = s.scalar(select(func.max(InboundEvent.received_at)))
            for org_connection_id, channel, updated_at in s.execute(
                select(SyncCursor.org_connection_id, SyncCursor.channel, SyncCursor.updated_at)
            ):
                cursor_moved.setdefault(org_connection_id, {})[channel] = updated_at
        lag = _age(waiting_since) or 0.0
        max_lag = current_app.config["READY_MAX_LAG_SECONDS"]
        checks["subscriber"] = {
            "ok": lag <= max_lag,
            "lag_seconds": lag,
            "max_lag_seconds": max_lag,
            "newest_cursor_age_seconds": _age(newest_cursor),
            "newest_event_age_seconds": _age(newest_event),
        }
        if lag > max_lag:
            checks["subscriber"]["error"] = (
                f"events have waited {lag:.0f}s to be processed (limit {max_lag}s): "
                "is `sfbridge worker` running?"
            )
    except Exception as exc:  # the database is down: say so, do not raise
        checks["database"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    conn = web().redis()
    if conn is None:
        checks["redis"] = {"ok": False, "error": "SFBRIDGE_REDIS_URL is not set"}
    else:
        try:
            conn.ping()
            checks["redis"] = {"ok": True}
        except Exception as exc:
            checks["redis"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    try:
        cfg = web().config()
    except ConfigError as exc:
        checks["config"] = {"ok": False, "error": exc.message, "problems": exc.problems}
        cfg = None
    if cfg is not None:
        for name in cfg.orgs:
            found = connections.get(name)
            if found is None or not found.org_id:
                checks[f"org:{name}"] = {
                    "ok": False,
                    "error": f"org '{name}' is not connected: run `sfbridge org connect {name}`",
                }
            else:
                checks[f"org:{name}"] = {
                    "ok": True,
                    "org_id": found.org_id,
                    "instance_url": found.instance_url,
                }
    if cfg is not None and conn is not None and checks["redis"]["ok"]:
        for name, org in cfg.orgs.items():
            holder = conn.get(lease_key(name, list(topic_channels(org))))
            checks[f"stream:{name}"] = (
                {"ok": True, "holder": holder.decode() if isinstance(holder, bytes) else holder}
                if holder
                else {
                    "ok": False,
                    "error": f"no subscriber streams org '{name}': is "
                    f"`sfbridge stream --org {name}` running?",
                }
            )
            found = connections.get(name)
            moved_at = cursor_moved.get(found.id, {}) if found is not None else {}
            stuck = stall.stalled(conn, name, defaults.STALL_AFTER_SECONDS, moved_at)
            if stuck:
                worst = max(stuck, key=lambda c: stuck[c])
                checks[f"stream:{name}"].update(
                    ok=False,
                    stalled_channels=stuck,
                    error=f"channel {worst} of org '{name}' has been offered events for "
                    f"{stuck[worst]:.0f}s without its cursor moving (limit "
                    f"{defaults.STALL_AFTER_SECONDS:.0f}s): see the stream's log",
                )
    if cfg is not None and conn is not None and checks["redis"]["ok"]:
        readings = budget.read_all(conn)
        for name, org in cfg.orgs.items():
            if name in readings:
                checks[f"api_budget:{name}"] = _budget_check(readings[name], org.api_budget.share)
    failing = sorted(k for k, v in checks.items() if not v["ok"])
    status = 200 if not failing else 503
    if _monitor_refusal() is not None:  # the bare answer only
        return jsonify({"status": "ready" if not failing else "not ready"}), status
    body = {"status": "ready" if not failing else "not ready", "failing": failing, "checks": checks}
    return jsonify(body), status


def _budget_check(usage: budget.ApiUsage, share: float) -> dict[str, Any]:
    """Over the share is a warning (polling slowed, streaming goes on); a used-up allocation
    fails the check: Salesforce refuses API calls (REQUEST_LIMIT_EXCEEDED) until usage falls."""
    check: dict[str, Any] = {
        "ok": usage.used < usage.allocation,
        "used": usage.used,
        "allocation": usage.allocation,
        "share": round(usage.share, 4),
        "budget_share": share,
        "over_budget": usage.over(share),
        "age_seconds": round(time.time() - usage.at, 1),
    }
    if not check["ok"]:
        check["error"] = f"the org has used {usage.words()}: Salesforce refuses API calls"
    elif check["over_budget"]:
        check["warning"] = (
            f"the org has used {usage.words()}, over the budget of {share:.0%}: "
            "polling and backfill are slowed"
        )
    return check


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _line(name: str, value: float, **labels: str) -> str:
    if labels:
        inner = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
        return f"{name}{{{inner}}} {value:g}"
    return f"{name} {value:g}"


@bp.get("/metrics")
def metrics() -> ResponseReturnValue:
    refusal = _monitor_refusal()
    if refusal is not None:
        headers = bearer.CHALLENGE if refusal.status == 401 else {}
        body = {"error": {"code": refusal.code, "message": refusal.message}}
        return jsonify(body), refusal.status, headers
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, lines: list[str]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(lines)

    family("sfbridge_up", "gauge", "The web process answers.", [_line("sfbridge_up", 1)])
    with store().session() as s:
        names = dict(s.execute(select(OrgConnection.id, OrgConnection.name)).all())
        rows = s.execute(
            select(InboundEvent.org_connection_id, InboundEvent.channel, func.count()).group_by(
                InboundEvent.org_connection_id, InboundEvent.channel
            )
        ).all()
        family(
            "sfbridge_inbound_events_total",
            "counter",
            "Events stored, by org and channel.",
            [
                _line("sfbridge_inbound_events_total", n, org=names.get(org, str(org)), channel=ch)
                for org, ch, n in rows
            ],
        )
        outcomes = dict(
            s.execute(select(SalesEntry.outcome, func.count()).group_by(SalesEntry.outcome)).all()
        )
        family(
            "sfbridge_sales_entries",
            "gauge",
            "Sales entries by outcome.",
            [
                _line("sfbridge_sales_entries", outcomes.get(o, 0), outcome=o)
                for o in ENTRY_OUTCOMES
            ],
        )
        states = dict(s.execute(select(Push.state, func.count()).group_by(Push.state)).all())
        family(
            "sfbridge_pushes",
            "gauge",
            "Pushes to Salesforce by state.",
            [_line("sfbridge_pushes", states.get(st, 0), state=st) for st in PUSH_STATES],
        )
        waiting_since = _oldest_waiting_event(s)
    family(
        "sfbridge_subscriber_lag_seconds",
        "gauge",
        "Age of the oldest stored event not yet processed (0 when none wait).",
        [_line("sfbridge_subscriber_lag_seconds", _age(waiting_since) or 0.0)],
    )

    conn = web().redis()
    if conn is not None:
        try:
            family(
                "sfbridge_rq_queue_depth",
                "gauge",
                "Jobs waiting per rq queue.",
                [
                    _line("sfbridge_rq_queue_depth", Queue(q, connection=conn).count, queue=q)
                    for q in defaults.QUEUES
                ],
            )
            for metric, key in SF_COUNTERS.items():
                family(
                    metric,
                    "counter",
                    f"Salesforce API {metric.split('_')[3]} (Redis {key}).",
                    _redis_counter(conn, metric, key),
                )
            readings = sorted(budget.read_all(conn).items())
            family(
                "sfbridge_salesforce_api_usage",
                "gauge",
                "Daily API calls used, as the org last reported (Sforce-Limit-Info).",
                [_line("sfbridge_salesforce_api_usage", u.used, org=o) for o, u in readings],
            )
            family(
                "sfbridge_salesforce_api_allocation",
                "gauge",
                "The org's daily API allocation (Sforce-Limit-Info).",
                [
                    _line("sfbridge_salesforce_api_allocation", u.allocation, org=o)
                    for o, u in readings
                ],
            )
        except Exception as exc:  # Redis down: the rest of the metrics still count
            out.append(f"# redis unavailable: {type(exc).__name__}")
    return Response("\n".join(out) + "\n", mimetype="text/plain; version=0.0.4")


def _redis_counter(conn: Any, metric: str, key: str) -> list[str]:
    kind = conn.type(key)
    kind = kind.decode() if isinstance(kind, bytes) else kind
    if kind == "hash":
        return [
            _line(metric, float(v), org=k.decode() if isinstance(k, bytes) else str(k))
            for k, v in sorted(conn.hgetall(key).items())
        ]
    if kind == "string":
        return [_line(metric, float(conn.get(key) or 0))]
    return [_line(metric, 0)]
