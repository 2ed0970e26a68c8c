"""JSON API v1, outbound: the integration's on/off switch per org and direction, a push's
attempts, repushing every push a filter selects. Routes of `bridge.web.api`'s blueprint (same
tokens, errors and JSON shapes).
"""

from __future__ import annotations

from typing import Annotated, Literal

from flask import g, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, Field

from bridge import switches
from bridge.errors import UsageError
from bridge.vocabulary import PushKind
from bridge.web import actions, pushlist, serialize
from bridge.web.api import body, bp, require_scope
from bridge.web.bodies import FieldName, _Body
from bridge.web.extensions import store, web
from bridge.writeback.pushes import attempts_of

OrgName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]


class SwitchIn(_Body):
    """Which directions to turn off or on; neither named: both."""

    outbound: bool = False
    inbound: bool = False


class RepushMatchingIn(_Body):
    """The filter of a bulk repush, as the pushes report's: every failed or skipped push it
    selects is sent again (at most 500 at a time; `remaining` says how many more match)."""

    org: OrgName | None = None
    state: Literal["failed", "skipped"] | None = Field(
        default=None, description="failed or skipped; neither named: both"
    )
    error_code: Annotated[str, Field(pattern=r"^[A-Z0-9_]{1,64}$")] | None = None
    object: FieldName | None = Field(default=None, description="the Salesforce object, e.g. Lead")
    kind: PushKind | None = None
    dry_run: bool = Field(default=False, description="say what would be repushed; change nothing")


REQUEST_MODELS: dict[str, type[BaseModel]] = {
    "SwitchIn": SwitchIn,
    "RepushMatchingIn": RepushMatchingIn,
}


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
        return jsonify({"data": [serialize.push_attempt(a) for a in attempts_of(s, push_id)]})


@bp.post("/pushes/repush")
@require_scope("pushes:write")
def repush_matching() -> ResponseReturnValue:
    data = body(RepushMatchingIn)
    f = pushlist.filters_from(
        {
            "org": data.org,
            "state": data.state,
            "code": data.error_code,
            "object": data.object,
            "kind": data.kind,
        }
    )
    with store().session() as s:
        pushlist.check(s, f, repush=True)
        if data.dry_run:
            done = pushlist.select_matching(s, f)
        else:
            done = pushlist.repush_matching(s, f, actor=g.api_actor)
    out = {
        "pushes": done.pushes,
        "count": len(done.pushes),
        "error_codes": done.error_codes,
        "remaining": done.remaining,
        "dry_run": data.dry_run,
        "note": "" if data.dry_run else actions.enqueue_pushes(done.pushes),
    }
    return jsonify(out), 200 if data.dry_run else 202
