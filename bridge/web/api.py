"""JSON API v1 (SPEC §8): bearer API tokens with scopes, JSON errors, cursor pagination.

Every failure is `{"error": {"code", "message"[, "fields"]}}` with its HTTP status: 400 bad
input (naming the fields), 401 no/unknown/revoked/expired token (`bridge.web.bearer`), 403
missing scope, 404, 405, 409 state or duplicate conflicts, 422 well-formed input that refers
to something that does not exist.
Lists are newest first, `?limit=` (1–200, default 50) and `?cursor=` (the `next_cursor` of the
previous page). The request bodies, and their JSON Schemas in the OpenAPI document, are in
`bridge.web.bodies`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Blueprint, Flask, g, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ValidationError
from sqlalchemy import Select, String, false, select
from sqlalchemy import cast as sql_cast
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from bridge.matchkeys import email_key
from bridge.store.models import Program, Push, Referral, SalesEntry
from bridge.vocabulary import (
    ENTRY_OUTCOMES,
    PUSH_KINDS,
    PUSH_STATES,
    REFERRAL_STATUSES,
    STREAMED_OBJECTS,
)
from bridge.web import actions, bearer, edits, fitcheck, inputs, serialize
from bridge.web.bodies import (
    ActivityIn,
    EntryIn,
    EntryPatch,
    MemberIn,
    MemberPatch,
    NoBody,
    ReferralIn,
    ReferralPatch,
    RejectIn,
    RepushIn,
    RetryIn,
)
from bridge.web.extensions import store
from bridge.writeback import history

bp = Blueprint("api", __name__, url_prefix="/api/v1")

F = TypeVar("F", bound=Callable[..., Any])
MAX_LIMIT = 200
DEFAULT_LIMIT = 50

# ---- errors ---------------------------------------------------------------------------------


def init_app(app: Flask) -> None:
    """JSON errors for every /api/ path, including unknown routes (404) and methods (405)."""

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        if request.path.startswith("/api/"):
            code = getattr(exc, "error_code", None) or (exc.name or "error").lower().replace(
                " ", "_"
            )
            field = getattr(exc, "field", None)
            headers = None
            if isinstance(exc, MethodNotAllowed):
                headers = {"Allow": ", ".join(exc.valid_methods or [])}
            message = {404: "no such API endpoint or resource", 405: "method not allowed here"}
            return error(
                exc.code or 500,
                code,
                message.get(exc.code or 0, exc.description or code),
                [field] if field else None,
                headers=headers,
            )
        return render_template(
            "error.html", status=exc.code, title=exc.name, message=exc.description
        ), exc.code or 500


def error(
    status: int,
    code: str,
    message: str,
    fields: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> ResponseReturnValue:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return jsonify({"error": body}), status, headers or {}


class ApiAbort(Exception):
    def __init__(self, response: ResponseReturnValue):
        self.response = response


@bp.errorhandler(ApiAbort)
def _abort(exc: ApiAbort) -> ResponseReturnValue:
    return exc.response


@bp.errorhandler(actions.ActionError)
def _action_error(exc: actions.ActionError) -> ResponseReturnValue:
    return error(exc.status, exc.code, exc.message, exc.fields)


@bp.errorhandler(ValidationError)
def _validation(exc: ValidationError) -> ResponseReturnValue:
    fields, parts = [], []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "(body)"
        fields.append(name)
        parts.append(f"{name}: {err['msg']}")
    return error(400, "validation_error", "; ".join(parts), fields)


def body(model: type[BaseModel]) -> Any:
    # The body itself, not Content-Length: a chunked body has no length but is still sent.
    raw = inputs.read_body()
    if not raw.strip():
        data: Any = {}
    elif request.mimetype != "application/json":
        raise ApiAbort(
            error(400, "invalid_json", "send a JSON body with Content-Type: application/json")
        )
    else:
        try:
            data = inputs.parse_json(raw)
        except ValueError:  # also a body that is not UTF-8
            raise ApiAbort(
                error(400, "invalid_json", "the request body is not valid JSON")
            ) from None
    if not isinstance(data, dict):
        raise ApiAbort(error(400, "invalid_json", "the request body must be a JSON object"))
    return model.model_validate(data)


# ---- authentication -------------------------------------------------------------------------


def require_scope(scope: str) -> Callable[[F], F]:
    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with store().session() as s:
                found = bearer.authenticate(s, request.headers.get("Authorization", ""), scope)
                if isinstance(found, bearer.Refusal):
                    headers = bearer.CHALLENGE if found.status == 401 else None
                    return error(found.status, found.code, found.message, headers=headers)
                token, user = found
                g.api_actor = f"{user.email} (token {token.prefix}…)"
                g.api_token_id = token.id
            return view(*args, **kwargs)

        setattr(wrapped, "required_scope", scope)  # noqa: B010 - read by the OpenAPI builder
        return cast(F, wrapped)

    return decorator


# ---- pagination -----------------------------------------------------------------------------


def _page(query: Select[Any], id_column: Any, render: Callable[[Any], dict[str, Any]]) -> Any:
    raw_limit = request.args.get("limit", str(DEFAULT_LIMIT))
    if not raw_limit.isdecimal() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise ApiAbort(
            error(
                400,
                "validation_error",
                f"limit must be a whole number from 1 to {MAX_LIMIT}",
                ["limit"],
            )
        )
    limit = int(raw_limit)
    cursor = request.args.get("cursor")
    if cursor:
        try:
            after = int(base64.urlsafe_b64decode(cursor.encode() + b"==").decode())
            if not 0 < after < 2**63:  # ids are positive 64-bit integers
                raise ValueError(after)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise ApiAbort(
                error(400, "validation_error", "cursor is not one this API gave", ["cursor"])
            ) from None
        query = query.where(id_column < after)
    query = query.order_by(id_column.desc()).limit(limit + 1)
    with store().session() as s:
        rows = list(s.scalars(query))
        more = len(rows) > limit
        rows = rows[:limit]
        data = [render(r) for r in rows]
    next_cursor = (
        base64.urlsafe_b64encode(str(rows[-1].id).encode()).decode().rstrip("=") if more else None
    )
    return jsonify({"data": data, "next_cursor": next_cursor})


def _choice(name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.args.get(name)
    if value is not None and value not in allowed:
        raise ApiAbort(
            error(400, "validation_error", f"{name} must be one of {', '.join(allowed)}", [name])
        )
    return value


# ---- referrals, members, activities ---------------------------------------------------------


@bp.post("/referrals")
@require_scope("referrals:write")
def create_referral() -> ResponseReturnValue:
    data = body(ReferralIn).model_dump(exclude_none=True)
    fitcheck.read_rules(program=data["program"])
    with store().session() as s:
        referral, push = actions.create_referral(s, data, actor=g.api_actor)
        out: dict[str, Any] = {
            "referral": serialize.referral(referral),
            "push": serialize.push(push) if push else None,
        }
    if out["push"] is not None:
        out["push"]["note"] = actions.enqueue_pushes([out["push"]["id"]])
    return jsonify(out), 201


@bp.get("/referrals")
@require_scope("referrals:read")
def list_referrals() -> ResponseReturnValue:
    query = select(Referral)
    status = _choice("status", REFERRAL_STATUSES)
    if status:
        query = query.where(Referral.status == status)
    if email := request.args.get("email"):
        # The stored key, as matching uses it: Jane.Doe+ref@Gmail.com finds janedoe@gmail.com.
        key = email_key(email)
        query = query.where(Referral.email_key == key if key else false())
    if program := request.args.get("program"):
        query = query.join(Program, Program.id == Referral.program_id).where(Program.key == program)
    return _page(query, Referral.id, serialize.referral)


def _patch(model: type[BaseModel]) -> dict[str, Any]:
    """The fields a PATCH body gives (null included: it clears the field); none is a 400."""
    data = body(model)
    given = data.model_dump(exclude_unset=True)
    if not given or given == {"fields": {}}:
        raise ApiAbort(error(400, "validation_error", "give at least one field to change"))
    for name in ("last_name", "name"):
        if name in given and given[name] is None:
            raise ApiAbort(error(400, "validation_error", f"{name} cannot be cleared", [name]))
    return dict(given)


def _with_pushes(out: dict[str, Any], pushes: list[dict[str, Any]]) -> ResponseReturnValue:
    out["pushes"] = pushes
    if pushes:
        out["note"] = actions.enqueue_pushes([p["id"] for p in pushes])
    return jsonify(out)


@bp.get("/referrals/<int:referral_id>")
@require_scope("referrals:read")
def get_referral(referral_id: int) -> ResponseReturnValue:
    with store().session() as s:
        referral = edits.get_referral(s, referral_id)
        return jsonify(
            {
                **serialize.referral(referral),
                "not_sent_reason": edits.why_not_sent(s, referral),
                "history": history.of(s, referral),
            }
        )


@bp.patch("/referrals/<int:referral_id>")
@require_scope("referrals:write")
def patch_referral(referral_id: int) -> ResponseReturnValue:
    data = _patch(ReferralPatch)
    with store().session() as s:
        referral = edits.get_referral(s, referral_id)
        pushes = edits.edit_referral(s, referral, data, actor=g.api_actor)
        s.flush()
        out, made = serialize.referral(referral), [serialize.push(p) for p in pushes]
    return _with_pushes(out, made)


@bp.post("/referrals/<int:referral_id>/sync")
@require_scope("referrals:write")
def sync_referral(referral_id: int) -> ResponseReturnValue:
    """Manual sync: send the referral now, ignoring the routing criteria and delay."""
    body(NoBody)
    with store().session() as s:
        referral = edits.get_referral(s, referral_id)
        push = edits.sync_referral(s, referral, actor=g.api_actor)
        s.flush()
        out = {"referral": serialize.referral(referral), "push": serialize.push(push)}
    if out["push"]["state"] == "pending":
        out["push"]["note"] = actions.enqueue_pushes([out["push"]["id"]])
    return jsonify(out)


@bp.get("/members/<int:member_id>")
@require_scope("referrals:read")
def get_member(member_id: int) -> ResponseReturnValue:
    with store().session() as s:
        return jsonify(serialize.member(edits.get_member(s, member_id)))


@bp.patch("/members/<int:member_id>")
@require_scope("referrals:write")
def patch_member(member_id: int) -> ResponseReturnValue:
    data = _patch(MemberPatch)
    with store().session() as s:
        member = edits.get_member(s, member_id)
        pushes = edits.edit_member(s, member, data, actor=g.api_actor)
        s.flush()
        out, made = serialize.member(member), [serialize.push(p) for p in pushes]
    return _with_pushes(out, made)


@bp.post("/members")
@require_scope("referrals:write")
def create_member() -> ResponseReturnValue:
    data = body(MemberIn).model_dump(exclude_none=True)
    with store().session() as s:
        member = actions.create_member(s, data, actor=g.api_actor)
        out = serialize.member(member)
    return jsonify(out), 201


@bp.post("/activities")
@require_scope("activities:write")
def create_activity() -> ResponseReturnValue:
    data = body(ActivityIn).model_dump(exclude_none=True, mode="json")
    fitcheck.read_rules(org=data["org"], kind=data["kind"])
    with store().session() as s:
        push, created = actions.create_activity(s, data, actor=g.api_actor)
        out = serialize.push(push)
        push_id = push.id
    if created:
        out["note"] = actions.enqueue_pushes([push_id])
    return jsonify(out), 201 if created else 200


# ---- entries --------------------------------------------------------------------------------

#: A reason code, or a code prefix such as ``status_rule`` (nothing a LIKE pattern reads).
REASON_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


@bp.get("/entries")
@require_scope("entries:read")
def list_entries() -> ResponseReturnValue:
    query = select(SalesEntry)
    if outcome := _choice("outcome", ENTRY_OUTCOMES):
        query = query.where(SalesEntry.outcome == outcome)
    if sobject := _choice("sobject_type", STREAMED_OBJECTS):
        query = query.where(SalesEntry.sobject_type == sobject)
    if (reason := request.args.get("reason")) is not None:
        # reason=malformed_event lists the dead letters: events the bridge could not read
        if not REASON_CODE.fullmatch(reason):
            raise ApiAbort(
                error(400, "validation_error", "reason must be a reason code", ["reason"])
            )
        query = query.where(sql_cast(SalesEntry.reasons, String).like(f'%"{reason}%'))
    return _page(query, SalesEntry.id, serialize.entry)


@bp.post("/entries")
@require_scope("entries:write")
def submit_entry() -> ResponseReturnValue:
    entry_in = body(EntryIn)
    data = entry_in.model_dump()
    # as sent, with no nulls added
    data["record"] = entry_in.record.model_dump(exclude_unset=True)
    data["related"] = {
        obj: rec.model_dump(exclude_unset=True) if rec is not None else None
        for obj, rec in entry_in.related.items()
    }
    with store().session() as s:
        entry, created = actions.submit_entry(s, data, actor=g.api_actor)
        out = serialize.entry(entry)
    return jsonify(out), 201 if created else 200


@bp.get("/entries/<int:entry_id>")
@require_scope("entries:read")
def get_entry(entry_id: int) -> ResponseReturnValue:
    with store().session() as s:
        return jsonify(serialize.entry(actions.get_entry(s, entry_id)))


@bp.patch("/entries/<int:entry_id>")
@require_scope("entries:write")
def patch_entry(entry_id: int) -> ResponseReturnValue:
    patch = body(EntryPatch)
    with store().session() as s:
        entry = actions.edit_entry(
            s, actions.get_entry(s, entry_id), actor=g.api_actor, fields=patch.fields
        )
        return jsonify(serialize.entry(entry))


@bp.post("/entries/<int:entry_id>/approve")
@require_scope("entries:write")
def approve_entry(entry_id: int) -> ResponseReturnValue:
    body(NoBody)
    with store().session() as s:
        entry = actions.approve_entry(s, actions.get_entry(s, entry_id), actor=g.api_actor)
        out = serialize.entry(entry)
    return _entry_with_pushes(out)


def _entry_with_pushes(out: dict[str, Any]) -> ResponseReturnValue:
    """Enqueue what the entry's effects queued (link-back, field sync), once committed."""
    pushes = (out.get("decision") or {}).get("pushes") or []
    if pushes:
        out["note"] = actions.enqueue_pushes(list(pushes))
    return jsonify(out)


@bp.post("/entries/<int:entry_id>/reject")
@require_scope("entries:write")
def reject_entry(entry_id: int) -> ResponseReturnValue:
    data = body(RejectIn)
    with store().session() as s:
        entry = actions.reject_entry(
            s, actions.get_entry(s, entry_id), actor=g.api_actor, note=data.note
        )
        return jsonify(serialize.entry(entry))


@bp.post("/entries/<int:entry_id>/retry")
@require_scope("entries:write")
def retry_entry(entry_id: int) -> ResponseReturnValue:
    data = body(RetryIn)
    with store().session() as s:
        entry = actions.retry_entry(
            s,
            actions.get_entry(s, entry_id),
            actor=g.api_actor,
            fields=data.fields,
            referral_id=data.referral_id,
        )
        out = serialize.entry(entry)
    return _entry_with_pushes(out)


# ---- pushes ---------------------------------------------------------------------------------


@bp.get("/pushes")
@require_scope("pushes:read")
def list_pushes() -> ResponseReturnValue:
    query = select(Push)
    if state := _choice("state", PUSH_STATES):
        query = query.where(Push.state == state)
    if kind := _choice("kind", PUSH_KINDS):
        query = query.where(Push.kind == kind)
    return _page(query, Push.id, serialize.push)


@bp.post("/pushes/<int:push_id>/repush")
@require_scope("pushes:write")
def repush(push_id: int) -> ResponseReturnValue:
    data = body(RepushIn)
    if data.fields:
        fitcheck.read_rules(push_id=push_id)
    with store().session() as s:
        push = actions.repush(
            s, actions.get_push(s, push_id), actor=g.api_actor, fields=data.fields
        )
        saved, more = (
            edits.save_on_referral(s, push, data.fields, actor=g.api_actor)
            if data.apply_to_referral and data.fields
            else ([], [])
        )
        s.flush()
        out = serialize.push(push)
        if data.apply_to_referral:
            out |= {"saved_on_referral": saved, "referral_pushes": [p.id for p in more]}
    out["note"] = actions.enqueue_pushes([push_id, *out.get("referral_pushes", [])])
    return jsonify(out), 202
