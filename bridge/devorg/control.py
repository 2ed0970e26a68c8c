"""The control API under /__devorg__/ (no OAuth; loopback clients only).

Real Salesforce has none of this: tests and benchmarks use it to inject faults, move the org
clock, read usage stats, reset the org, expire sessions and convert leads. docs/devorg.md
documents each body.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge.devorg import soql

if TYPE_CHECKING:
    from bridge.devorg.server import DevOrgServer


def _bad(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"the body is not JSON: {exc}"}),
            content_type="application/json",
        ) from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "the body must be a JSON object"}),
            content_type="application/json",
        )
    return data


class Control:
    def __init__(self, server: DevOrgServer) -> None:
        self.server = server
        self.state = server.state

    def routes(self) -> list[web.RouteDef]:
        p = "/__devorg__"
        return [
            web.get(f"{p}/health", self.health),
            web.get(f"{p}/faults", self.list_faults),
            web.post(f"{p}/faults", self.add_fault),
            web.delete(f"{p}/faults", self.clear_faults),
            web.get(f"{p}/clock", self.get_clock),
            web.post(f"{p}/clock", self.set_clock),
            web.get(f"{p}/stats", self.stats),
            web.post(f"{p}/reset", self.reset),
            web.post(f"{p}/expire-tokens", self.expire_tokens),
            web.post(f"{p}/limits", self.limits),
            web.post(f"{p}/convert-lead", self.convert_lead),
            web.get(f"{p}/metadata", self.get_metadata),
            web.post(f"{p}/metadata", self.deploy_metadata),
            web.post(f"{p}/undelete", self.undelete),
            web.get(f"{p}/strict", self.get_strict),
            web.post(f"{p}/strict", self.set_strict),
            web.delete(f"{p}/strict", self.clear_strict),
            web.get(f"{p}/latency", self.get_latency),
            web.post(f"{p}/latency", self.set_latency),
        ]

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok", "instance_url": self.server.base_url, "org_id": self.state.org_id}
        )

    # -- faults -----------------------------------------------------------------------------

    async def list_faults(self, request: web.Request) -> web.Response:
        return web.json_response({"faults": [r.to_dict() for r in self.state.faults.rules]})

    async def add_fault(self, request: web.Request) -> web.Response:
        body = await _body(request)
        allowed = {
            "kind", "path", "status", "error_code", "message", "latency_ms", "count",
            "probability", "method",
        }  # fmt: skip
        unknown = set(body) - allowed
        if unknown:
            return _bad(f"unknown key(s): {', '.join(sorted(unknown))}")
        kind = body.get("kind")
        if kind is None:
            kind = (
                "error" if body.get("error_code") else "latency" if body.get("latency_ms") else None
            )
        if kind is None:
            return _bad("kind is required: error, status, latency or drop")
        try:
            rule = self.state.faults.add(
                kind=str(kind),
                path=str(body.get("path", "/services/data/")),
                status=int(body["status"]) if body.get("status") is not None else None,
                error_code=body.get("error_code"),
                message=body.get("message"),
                latency_ms=int(body.get("latency_ms", 0)),
                count=int(body["count"]) if body.get("count") is not None else None,
                probability=float(body.get("probability", 1.0)),
                method=body.get("method"),
            )
        except (TypeError, ValueError) as exc:
            return _bad(str(exc))
        return web.json_response(rule.to_dict(), status=201)

    async def clear_faults(self, request: web.Request) -> web.Response:
        count = len(self.state.faults.rules)
        self.state.faults.clear()
        return web.json_response({"cleared": count})

    # -- clock ------------------------------------------------------------------------------

    def _clock(self) -> dict[str, Any]:
        return {
            "now": self.state.clock.now().isoformat(),
            "offset_seconds": self.state.clock.offset_seconds,
        }

    async def get_clock(self, request: web.Request) -> web.Response:
        return web.json_response(self._clock())

    async def set_clock(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if "advance_seconds" in body:
            try:
                seconds = float(body["advance_seconds"])
            except (TypeError, ValueError):
                return _bad("advance_seconds must be a number")
            self.state.clock.advance(seconds)
        elif "set" in body:
            try:
                when = soql.parse_datetime(str(body["set"]))
            except soql.SoqlError:
                try:
                    when = datetime.fromisoformat(str(body["set"]))
                except ValueError:
                    return _bad("set must be an ISO 8601 date-time")
            self.state.clock.set(when)
        elif body.get("reset"):
            self.state.clock.offset_seconds = 0.0
        else:
            return _bad("give advance_seconds, set or reset")
        self.state.save_settings()
        return web.json_response(self._clock())

    # -- stats, reset, sessions, limits -----------------------------------------------------

    async def stats(self, request: web.Request) -> web.Response:
        names = {u.id: u.username for u in self.state.users.values()}
        snap = self.state.stats.snapshot(names)
        snap["api_usage"] = {"used": self.state.api_usage, "max": self.state.daily_api_limit}
        snap["records"] = {
            name: len(list(self.state.records(name))) for name in self.server.schema.objects
        }
        return web.json_response(snap)

    async def reset(self, request: web.Request) -> web.Response:
        self.state.reset()
        self.server.seed()
        self.server.strict.reset()
        if self.server.rest is not None:
            self.server.rest.reset()
        return web.json_response({"reset": True})

    async def expire_tokens(self, request: web.Request) -> web.Response:
        body = await _body(request)
        user_id = None
        if body.get("user"):
            user = self.state.user_by_role(str(body["user"])) or self.state.user_by_username(
                str(body["user"])
            )
            if user is None:
                return _bad(f"no such user: {body['user']}")
            user_id = user.id
        return web.json_response({"expired": self.state.expire_tokens(user_id)})

    async def limits(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if "daily_api_requests" in body:
            try:
                self.state.daily_api_limit = int(body["daily_api_requests"])
            except (TypeError, ValueError):
                return _bad("daily_api_requests must be an integer")
        if body.get("reset_usage"):
            self.state.api_usage = 0
            self.state.api_usage_window_start = self.state.clock.now().timestamp()
        if "api_usage" in body:  # the calls used so far today, as if other integrations ran
            value = body["api_usage"]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                return _bad("api_usage must be a non-negative integer")
            self.state.api_usage = value
        if "session_timeout_seconds" in body:
            self.state.session_timeout = int(body["session_timeout_seconds"])
        self.state.save_settings()
        return web.json_response(
            {
                "daily_api_requests": self.state.daily_api_limit,
                "api_usage": self.state.api_usage,
                "session_timeout_seconds": self.state.session_timeout,
            }
        )

    # -- records ----------------------------------------------------------------------------

    async def convert_lead(self, request: web.Request) -> web.Response:
        from bridge.devorg import dml

        body = await _body(request)
        try:
            result = dml.convert_lead(self.server, body)
        except dml.DmlError as exc:
            return web.json_response(exc.errors, status=exc.status)
        return web.json_response(result)

    # -- custom objects and fields ------------------------------------------------------------

    async def get_metadata(self, request: web.Request) -> web.Response:
        custom = sorted(o.name for o in self.server.schema.objects.values() if o.custom)
        return web.json_response({"objects": custom, "deployed": self.server.deployments.bodies})

    async def deploy_metadata(self, request: web.Request) -> web.Response:
        from bridge.devorg.metadata import MetadataError

        body = await _body(request)
        try:
            deployed = self.server.deploy(body)
        except MetadataError as exc:
            return _bad(str(exc))
        return web.json_response({"deployed": deployed}, status=201)

    async def undelete(self, request: web.Request) -> web.Response:
        from bridge.devorg import dml

        body = await _body(request)
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids:
            return _bad("ids must be a non-empty list of record ids")
        return web.json_response(dml.undelete(self.server, [str(i) for i in ids], body.get("user")))

    # -- strict mode and latency ------------------------------------------------------------

    async def get_strict(self, request: web.Request) -> web.Response:
        return web.json_response(self.server.strict.describe())

    async def set_strict(self, request: web.Request) -> web.Response:
        from bridge.devorg.strict import StrictConfigError

        body = await _body(request)
        try:
            return web.json_response(self.server.strict.configure(body))
        except StrictConfigError as exc:
            return _bad(str(exc))

    async def clear_strict(self, request: web.Request) -> web.Response:
        self.server.strict.reset()
        return web.json_response(self.server.strict.describe())

    async def get_latency(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.latency.describe())

    async def set_latency(self, request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            return web.json_response(self.state.latency.configure(body))
        except (TypeError, ValueError) as exc:
            return _bad(str(exc))


def setup(app: web.Application, server: DevOrgServer) -> None:
    app.router.add_routes(Control(server).routes())
