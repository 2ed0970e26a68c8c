"""The OpenAPI 3.1 document of API v1, built from the same request models the views validate
with, so the two cannot drift apart on inputs; the test suite checks routes and responses.

It documents `bridge.web.api` and serves itself at ``/api/v1/openapi.json`` (this module's
blueprint), so the dependency runs one way: the document reads the API, never the reverse.

Longer than most modules on purpose: one path after another, in the reference's order, so
reading it is reading the API.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import version
from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from bridge.vocabulary import (
    ENTRY_OUTCOMES,
    ENTRY_SOURCES,
    PUSH_KINDS,
    PUSH_STATES,
    REFERRAL_STATUSES,
    SCOPES,
    STREAMED_OBJECTS,
)
from bridge.web import api, api_outbound, bodies, sales_api

bp = Blueprint("openapi", __name__, url_prefix="/api/v1")

_TS = {"type": ["string", "null"], "format": "date-time"}
_STR_OR_NULL = {"type": ["string", "null"]}
_INT_OR_NULL = {"type": ["integer", "null"]}
_OBJ = {"type": "object"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list_of(name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["data", "next_cursor"],
        "properties": {
            "data": {"type": "array", "items": _ref(name)},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "pass as ?cursor= for the next page; null on the last page",
            },
        },
        "additionalProperties": False,
    }


RESPONSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "fields": {"type": "array", "items": {"type": "string"}},
                },
                "additionalProperties": False,
            }
        },
        "additionalProperties": False,
    },
    "Referral": {
        "type": "object",
        "required": ["id", "public_id", "program_id", "status", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "public_id": {"type": "string", "description": "written to Referral_ID__c"},
            "external_id": _STR_OR_NULL,
            "program_id": {"type": "integer"},
            "member_id": _INT_OR_NULL,
            "first_name": _STR_OR_NULL,
            "last_name": _STR_OR_NULL,
            "email": _STR_OR_NULL,
            "company": _STR_OR_NULL,
            "phone": _STR_OR_NULL,
            "status": {"enum": list(REFERRAL_STATUSES)},
            "phase": {**_STR_OR_NULL, "description": "the lead phase (writeback.sales.phases)"},
            "owner": {
                **_STR_OR_NULL,
                "description": "the owner rep (users:): Lead/Contact OwnerId flows from it; set "
                "by the API, a sale or demo, or routing's choice for a new Lead",
            },
            "fields": _OBJ,
            "salesforce": {
                "type": "object",
                "properties": {
                    k: _STR_OR_NULL
                    for k in ("lead_id", "contact_id", "account_id", "opportunity_id")
                },
                "additionalProperties": False,
            },
            "routing": {
                "type": "object",
                "description": "lead routing: the score the criteria judge, the delay's due "
                "time, the reps who touched the conversation",
                "properties": {
                    "score": {"type": ["number", "null"]},
                    "qualified_at": _TS,
                    "send_due_at": _TS,
                    "conversation_closed_at": _TS,
                    "meeting_owner": _STR_OR_NULL,
                    "routed_owner": _STR_OR_NULL,
                    "closed_by": _STR_OR_NULL,
                },
                "additionalProperties": False,
            },
            "created_at": _TS,
            "updated_at": _TS,
        },
        "additionalProperties": False,
    },
    "Member": {
        "type": "object",
        "required": ["id", "program_id", "name"],
        "properties": {
            "id": {"type": "integer"},
            "program_id": {"type": "integer"},
            "external_id": _STR_OR_NULL,
            "referral_code": _STR_OR_NULL,
            "name": {"type": "string"},
            "email": _STR_OR_NULL,
            "phone": _STR_OR_NULL,
            "url": _STR_OR_NULL,
            "fields": {"type": "object", "description": "custom member fields"},
            "created_at": _TS,
        },
        "additionalProperties": False,
    },
    "Entry": {
        "type": "object",
        "required": ["id", "sobject_type", "outcome", "reasons", "reasons_in_words", "records"],
        "properties": {
            "id": {"type": "integer"},
            "source": {"enum": list(ENTRY_SOURCES)},
            "sobject_type": {"type": "string"},
            "record_id": _STR_OR_NULL,
            "change_type": {"type": "string"},
            "outcome": {"enum": list(ENTRY_OUTCOMES)},
            "reasons": {"type": "array", "items": {"type": "string"}},
            "reasons_in_words": {
                "type": "array",
                "description": "each reason code with the receiver's words for it, as the review "
                "UI shows them (bridge.receiver.decision.REASONS), in the order of `reasons`",
                "items": {
                    "type": "object",
                    "required": ["code", "text"],
                    "properties": {"code": {"type": "string"}, "text": {"type": "string"}},
                },
            },
            "error": _STR_OR_NULL,
            "decision": _OBJ,
            "candidates": {"type": "array", "items": _OBJ},
            "records": {
                "type": "object",
                "description": "/".join(STREAMED_OBJECTS) + ": the record or null",
                "additionalProperties": {"type": ["object", "null"]},
            },
            "referral_id": _INT_OR_NULL,
            "member_id": _INT_OR_NULL,
            "program_id": _INT_OR_NULL,
            "attempts": {"type": "integer"},
            "decided_by": _STR_OR_NULL,
            "created_at": _TS,
            "updated_at": _TS,
            "processed_at": _TS,
        },
        "additionalProperties": False,
    },
    "Push": {
        "type": "object",
        "required": ["id", "kind", "state", "sobject_type"],
        "properties": {
            "id": {"type": "integer"},
            "kind": {"enum": list(PUSH_KINDS)},
            "state": {"enum": list(PUSH_STATES)},
            "sobject_type": {"type": "string"},
            "external_id_field": _STR_OR_NULL,
            "external_id": _STR_OR_NULL,
            "sf_id": _STR_OR_NULL,
            "error": {
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": ["code", "message", "fields"],
                        "properties": {
                            "code": _STR_OR_NULL,
                            "message": _STR_OR_NULL,
                            "fields": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                ],
                "description": "Salesforce's error code, message and fields of the last attempt",
            },
            "attempts": {"type": "integer"},
            "referral_id": _INT_OR_NULL,
            "payload": _OBJ,
            "note": {"type": "string", "description": "what happened to the send job"},
            "saved_on_referral": {
                "type": "array",
                "items": {"type": "string"},
                "description": "repush with apply_to_referral: the local names saved on the "
                "referral or member (`last_name`, `member.phone`)",
            },
            "referral_pushes": {
                "type": "array",
                "items": {"type": "integer"},
                "description": "repush with apply_to_referral: the pushes that edit queued",
            },
            "created_at": _TS,
            "updated_at": _TS,
            "sent_at": _TS,
        },
        "additionalProperties": False,
    },
    "ReferralCreated": {
        "type": "object",
        "required": ["referral", "push"],
        "properties": {
            "referral": _ref("Referral"),
            "push": {
                "oneOf": [_ref("Push"), {"type": "null"}],
                "description": "the write to Salesforce; null when the program has no "
                "connected org yet",
            },
        },
        "additionalProperties": False,
    },
    "ReferralList": _list_of("Referral"),
    "FieldChange": {
        "type": "object",
        "required": ["field", "source", "outcome", "at"],
        "properties": {
            "field": {"type": "string", "description": "local name: company, member.email"},
            "source": {"enum": ["local", "salesforce"]},
            "outcome": {
                "enum": ["applied", "lost"],
                "description": "lost: the value that lost a read_write conflict",
            },
            "value": {},
            "previous": {"description": "applied: the value before; lost: the one kept"},
            "entry_id": _INT_OR_NULL,
            "actor": {"type": "string"},
            "at": _TS,
        },
        "additionalProperties": False,
    },
    "EntryList": _list_of("Entry"),
    "PushList": _list_of("Push"),
    "PushAttempt": {
        "type": "object",
        "required": ["attempt", "retry", "state", "sf_id", "error", "via", "at"],
        "properties": {
            "attempt": {
                "type": "integer",
                "minimum": 1,
                "description": "the send's number, in order across repushes (as the push page)",
            },
            "retry": {
                "type": "integer",
                "minimum": 0,
                "description": "sends of its round before it (a repush starts a round: 0)",
            },
            "state": {"type": "string", "enum": list(PUSH_STATES)},
            "sf_id": _STR_OR_NULL,
            "error": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["code", "message", "class"],
                        "properties": {
                            "code": {"type": "string"},
                            "message": _STR_OR_NULL,
                            "class": _STR_OR_NULL,
                        },
                    },
                    {"type": "null"},
                ]
            },
            "via": {"type": "string", "enum": ["collections", "bulk", "none"]},
            "at": _TS,
        },
        "additionalProperties": False,
    },
    "PushAttemptList": {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"type": "array", "items": _ref("PushAttempt")}},
        "additionalProperties": False,
    },
    "OrgSwitch": {
        "type": "object",
        "required": ["org", "outbound", "inbound"],
        "properties": {
            "org": {"type": "string"},
            "outbound": {"type": "string", "enum": ["on", "paused"]},
            "inbound": {"type": "string", "enum": ["on", "paused"]},
        },
        "additionalProperties": False,
    },
    "PushesRepushed": {
        "type": "object",
        "required": ["pushes", "count", "error_codes", "remaining", "dry_run", "note"],
        "properties": {
            "pushes": {"type": "array", "items": {"type": "integer"}, "description": "their ids"},
            "count": {"type": "integer"},
            "error_codes": {
                "type": "object",
                "additionalProperties": {"type": "integer"},
                "description": "error code -> how many of them failed with it",
            },
            "remaining": {"type": "integer", "description": "more that match, for the next call"},
            "dry_run": {"type": "boolean"},
            "note": {"type": "string", "description": "what happened to the send job"},
        },
        "additionalProperties": False,
    },
    "Health": {"type": "object"},
}


def _extended(name: str, extra: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    base = RESPONSE_SCHEMAS[name]
    return {
        **base,
        "required": [*base["required"], *required],
        "properties": {**base["properties"], **extra},
    }


_PUSHES_MADE = {
    "pushes": {
        "type": "array",
        "items": _ref("Push"),
        "description": "the writes to Salesforce this edit queued, by the fields' sync rules",
    },
    "note": {"type": "string", "description": "what happened to the send job"},
}
RESPONSE_SCHEMAS["ReferralDetail"] = _extended(
    "Referral",
    {
        "history": {"type": "array", "items": _ref("FieldChange")},
        "not_sent_reason": {
            **_STR_OR_NULL,
            "description": "why the referral is not in Salesforce, in words (null: it is)",
        },
    },
    ("history", "not_sent_reason"),
)
RESPONSE_SCHEMAS["ReferralUpdated"] = _extended("Referral", _PUSHES_MADE, ("pushes",))
RESPONSE_SCHEMAS["MemberUpdated"] = _extended("Member", _PUSHES_MADE, ("pushes",))
RESPONSE_SCHEMAS["Entry"]["properties"]["note"] = {
    "type": "string",
    "description": "approve/retry: what happened to the send job of the pushes it queued",
}

for _kind, _body in (("sale", "SaleIn"), ("demo", "DemoIn")):
    RESPONSE_SCHEMAS[f"{_kind.capitalize()}Recorded"] = {
        "type": "object",
        "required": [_kind, "push"],
        "properties": {
            _kind: {
                "type": "object",
                "description": f"the {_kind} as saved (the validated body, its id the client's)",
            },
            "push": _ref("Push"),
        },
        "additionalProperties": False,
    }

_PAGING = [
    {
        "name": "limit",
        "in": "query",
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": api.MAX_LIMIT,
            "default": api.DEFAULT_LIMIT,
        },
    },
    {
        "name": "cursor",
        "in": "query",
        "description": "the next_cursor of the previous page (any other value is a 400)",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"},
    },
]


def _q(name: str, values: tuple[str, ...] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if values:
        schema["enum"] = list(values)
    return {"name": name, "in": "query", "schema": schema}


def _id(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
    }


def _name(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


# (path, method, view function, summary, request model, success status, success schema, params)
OPERATIONS: list[tuple[str, str, Any, str, str | None, int, str, list[dict[str, Any]]]] = [
    (
        "/referrals",
        "post",
        api.create_referral,
        "Add a referral; saves a pending push that writes it to Salesforce",
        "ReferralIn",
        201,
        "ReferralCreated",
        [],
    ),
    (
        "/referrals",
        "get",
        api.list_referrals,
        "List referrals, newest first",
        None,
        200,
        "ReferralList",
        [
            *_PAGING,
            _q("status", REFERRAL_STATUSES),
            _q("email"),
            _q("program"),
        ],
    ),
    (
        "/referrals/{referral_id}",
        "get",
        api.get_referral,
        "One referral with its field history (sync changes, local edits, conflicts' losers)",
        None,
        200,
        "ReferralDetail",
        [_id("referral_id")],
    ),
    (
        "/referrals/{referral_id}",
        "patch",
        api.patch_referral,
        "Edit a referral; queues pushes for the fields whose sync rule sends them",
        "ReferralPatch",
        200,
        "ReferralUpdated",
        [_id("referral_id")],
    ),
    (
        "/referrals/{referral_id}/sync",
        "post",
        api.sync_referral,
        "Manual sync: send the referral now, ignoring the routing criteria and delay (audited)",
        "NoBody",
        200,
        "ReferralCreated",
        [_id("referral_id")],
    ),
    (
        "/members/{member_id}",
        "get",
        api.get_member,
        "One referring member",
        None,
        200,
        "Member",
        [_id("member_id")],
    ),
    (
        "/members/{member_id}",
        "patch",
        api.patch_member,
        "Edit a member; queues pushes onto the Salesforce records of its referrals",
        "MemberPatch",
        200,
        "MemberUpdated",
        [_id("member_id")],
    ),
    (
        "/members",
        "post",
        api.create_member,
        "Add a referring member to a program",
        "MemberIn",
        201,
        "Member",
        [],
    ),
    (
        "/activities",
        "post",
        api.create_activity,
        "Log an activity (Task/Event upserted by SFBridge_Activity_Id__c); idempotent on "
        "activity_id: 201 new, 200 the same activity again, 409 the same id with other values",
        "ActivityIn",
        201,
        "Push",
        [],
    ),
    (
        "/entries",
        "get",
        api.list_entries,
        "List sales entries, newest first",
        None,
        200,
        "EntryList",
        [
            *_PAGING,
            _q("outcome", ENTRY_OUTCOMES),
            _q("sobject_type", STREAMED_OBJECTS),
            # e.g. reason=malformed_event: the dead letters (events the bridge could not read)
            _q("reason"),
        ],
    ),
    (
        "/entries",
        "post",
        api.submit_entry,
        "Submit a change directly (Flow/Apex) instead of streaming; it is stored and decided like "
        "a streamed one. 201 new, 200 when the same change (record Id + SystemModstamp) was sent "
        "before",
        "EntryIn",
        201,
        "Entry",
        [],
    ),
    (
        "/entries/{entry_id}",
        "get",
        api.get_entry,
        "One entry with records, candidates, decision",
        None,
        200,
        "Entry",
        [_id("entry_id")],
    ),
    (
        "/entries/{entry_id}",
        "patch",
        api.patch_entry,
        "Edit record fields of a waiting or failed entry (retry decides it again)",
        "EntryPatch",
        200,
        "Entry",
        [_id("entry_id")],
    ),
    (
        "/entries/{entry_id}/approve",
        "post",
        api.approve_entry,
        "Approve an entry in review",
        "NoBody",
        200,
        "Entry",
        [_id("entry_id")],
    ),
    (
        "/entries/{entry_id}/reject",
        "post",
        api.reject_entry,
        "Reject an entry in review or failed",
        "RejectIn",
        200,
        "Entry",
        [_id("entry_id")],
    ),
    (
        "/entries/{entry_id}/retry",
        "post",
        api.retry_entry,
        "Decide an entry again, with edited fields or another referral",
        "RetryIn",
        200,
        "Entry",
        [_id("entry_id")],
    ),
    (
        "/sales",
        "post",
        sales_api.create_sale,
        "Record a sale of a referral; saves a pending push that connects or creates its Account "
        "and Contact and writes its Opportunity with line items (same id and body: 200)",
        "SaleIn",
        201,
        "SaleRecorded",
        [],
    ),
    (
        "/demos",
        "post",
        sales_api.create_demo,
        "Record a demo set, rescheduled or cancelled; saves a pending push (same id and body: 200)",
        "DemoIn",
        201,
        "DemoRecorded",
        [],
    ),
    (
        "/pushes",
        "get",
        api.list_pushes,
        "List pushes to Salesforce, newest first",
        None,
        200,
        "PushList",
        [
            *_PAGING,
            _q("state", PUSH_STATES),
            _q("kind", PUSH_KINDS),
        ],
    ),
    (
        "/pushes/repush",
        "post",
        api_outbound.repush_matching,
        "Send again every failed or skipped push the filter selects (org, state, error code, "
        'object, kind), as the pushes report\'s "Repush all matching"; audited push.bulk_repush. '
        "dry_run: what it would repush (200). An org with no connection is 422 unknown_org",
        "RepushMatchingIn",
        202,
        "PushesRepushed",
        [],
    ),
    (
        "/pushes/{push_id}/repush",
        "post",
        api.repush,
        "Send a failed or skipped push again; `fields` overrides Salesforce fields of the write "
        "(checked against the org's field lengths and picklists: 400 value_does_not_fit); with "
        "`apply_to_referral` those that come from the referral or its member are saved there "
        "too. Every send is kept as an attempt",
        "RepushIn",
        202,
        "Push",
        [_id("push_id")],
    ),
    (
        "/pushes/{push_id}/attempts",
        "get",
        api_outbound.push_attempts,
        "Every send of a push and what came of it, oldest first",
        None,
        200,
        "PushAttemptList",
        [_id("push_id")],
    ),
    (
        "/orgs/{name}/pause",
        "post",
        api_outbound.pause_org,
        "Turn the org's integration off, per direction: outbound pushes are held as pending, "
        "inbound events are stored but not taken in",
        "SwitchIn",
        200,
        "OrgSwitch",
        [_name("name")],
    ),
    (
        "/orgs/{name}/resume",
        "post",
        api_outbound.resume_org,
        "Turn the org's integration back on; held pushes are sent, stored events taken in",
        "SwitchIn",
        200,
        "OrgSwitch",
        [_name("name")],
    ),
]

_ERRORS = {
    "400": "bad input: the fields named in error.fields",
    "401": "no API token, or an unknown or revoked one",
    "403": "the token lacks the required scope",
    "404": "no such resource",
    "405": "method not allowed",
    "409": "the resource's state or a duplicate conflicts with the request",
    "422": "well-formed input that names something that does not exist",
    "414": "the request line is longer than the server reads (gunicorn: 4094 bytes)",
    "5XX": "an unexpected failure on the bridge's side; nothing half-done is kept",
}
_BODY_ERRORS = {"413": "the body is larger than the server accepts (2 MB)"}


def _property_names(schema: Any) -> Any:
    """pydantic writes a dict with constrained keys as `patternProperties`, which lets any other
    key through as well; the API refuses those, so say `propertyNames` (the key's pattern)."""
    if isinstance(schema, dict):
        schema = {k: _property_names(v) for k, v in schema.items()}
        patterns = schema.get("patternProperties")
        if isinstance(patterns, dict) and len(patterns) == 1:
            (pattern, values), *_ = patterns.items()
            del schema["patternProperties"]
            schema["propertyNames"] = {"pattern": pattern}
            schema["additionalProperties"] = values
        return schema
    if isinstance(schema, list):
        return [_property_names(v) for v in schema]
    return schema


def _error_response(desc: str) -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": _ref("Error")}}}


@cache
def document() -> dict[str, Any]:
    schemas: dict[str, Any] = dict(RESPONSE_SCHEMAS)
    for name, model in {**bodies.REQUEST_MODELS, **api_outbound.REQUEST_MODELS}.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for sub, sub_schema in schema.pop("$defs", {}).items():
            schemas[sub] = _property_names(sub_schema)
        schemas[name] = _property_names(schema)
    paths: dict[str, dict[str, Any]] = {}
    for path, method, view, summary, req, status, resp, params in OPERATIONS:
        scope = view.required_scope
        responses: dict[str, Any] = {
            str(status): {
                "description": "success",
                "content": {"application/json": {"schema": _ref(resp)}},
            }
        }
        for code, desc in {**_ERRORS, **(_BODY_ERRORS if req else {})}.items():
            responses[code] = _error_response(desc)
        if path == "/pushes/repush":
            responses["200"] = {
                "description": "dry_run: what would be repushed, nothing changed",
                "content": {"application/json": {"schema": _ref(resp)}},
            }
        if status == 201 and path in ("/activities", "/entries", "/sales", "/demos"):
            responses["200"] = {
                "description": "the same item was sent before",
                "content": {"application/json": {"schema": _ref(resp)}},
            }
        op: dict[str, Any] = {
            "operationId": view.__name__,
            "summary": summary,
            "security": [{"bearer": [scope]}],
            "parameters": params,
            "responses": responses,
            "x-required-scope": scope,
        }
        if req:
            # Required when the body has required fields; else an empty body means `{}`.
            op["requestBody"] = {
                "required": bool(schemas[req].get("required")),
                "content": {"application/json": {"schema": _ref(req)}},
            }
        paths.setdefault(path, {})[method] = op
    paths["/openapi.json"] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {
                    "description": "the OpenAPI document",
                    "content": {"application/json": {"schema": _OBJ}},
                }
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sfbridge API",
            "version": version("sfbridge"),
            "description": "Referrals, activities, sales entries and pushes. Authenticate with "
            "`Authorization: Bearer <token>` (create one with `sfbridge tokens create`). "
            'Errors are `{"error": {"code", "message", "fields"?}}`. Scopes: '
            + ", ".join(SCOPES)
            + ".",
        },
        "servers": [{"url": "/api/v1"}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API token"}
            },
        },
        "paths": paths,
    }


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    return jsonify(document())
