"""JSON API v1, outbound: the integration's on/off switch per org and direction, a push's
attempts. Routes of `bridge.web.api`'s blueprint (same tokens, errors and JSON shapes).
"""

from __future__ import annotations

from typing import Annotated

from flask import g, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, Field
from sqlalchemy import select

from bridge import switches
from bridge.errors import UsageError
from bridge.store.models import PushAttempt
from bridge.web import actions, serialize
from bridge.web.api import body, bp, require_scope
from bridge.web.bodies import _Body
from bridge.web.extensions import store, web

OrgName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]


class SwitchIn(_Body):
    """Which directions to turn off or on; neither named: both."""

    outbound: bool = False
    inbound: bool = False


REQUEST_MODELS: dict[str, type[BaseModel]] = {"SwitchIn": SwitchIn}


def _switch(name: str, paused: bool) -> ResponseReturnValue:
    data = body(SwitchIn)
    directions: list[switches.Direction] = [
        d for d in switches.DIRECTIONS if getattr(data, d)
    ] or list(switches.DIRECTIONS)
    try:
        state = switches.set_paused(
            store(), web().redis(), name, directions, paused, actor=g.api_actor
        )
    except UsageError as exc:
        raise actions.NotFound(exc.message, code="unknown_org", fields=["org"]) from None
    return jsonify(state)


@bp.post("/orgs/<name>/pause")
@require_scope("pushes:write")
def pause_org(name: str) -> ResponseReturnValue:
    return _switch(name, True)


@bp.post("/orgs/<name>/resume")
@require_scope("pushes:write")
def resume_org(name: str) -> ResponseReturnValue:
    return _switch(name, False)


@bp.get("/pushes/<int:push_id>/attempts")
@require_scope("pushes:read")
def push_attempts(push_id: int) -> ResponseReturnValue:
    with store().session() as s:
        actions.get_push(s, push_id)
        rows = s.scalars(
            select(PushAttempt).where(PushAttempt.push_id == push_id).order_by(PushAttempt.id)
        ).all()
        return jsonify({"data": [serialize.push_attempt(a) for a in rows]})
