"""`POST /api/v1/sales` and `POST /api/v1/demos`: sales-engagement events about a referral.

Each is saved with its pending push before anything is sent (`bridge.writeback.events`) and
answered 201; the same `id` with the same body is answered 200 with the saved event, the same
`id` with another body 409. The views are registered on the API blueprint; their bodies are in
`bridge.web.bodies` with the others.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue

from bridge.store.models import Demo, Sale
from bridge.vocabulary import SalesKind
from bridge.web import actions, serialize
from bridge.web.api import body, bp, require_scope
from bridge.web.bodies import DemoIn, SaleIn
from bridge.web.extensions import store
from bridge.writeback import events, fieldsync, ownership


def _record(kind: SalesKind, data: dict[str, Any], at: datetime) -> ResponseReturnValue:
    with store().session() as s:
        conn, org = actions.connected_org(s, data["org"])
        referral = actions.referral_named(s, data["referral_id"])
        owner = referral.owner
        try:
            event, push, created = events.record(s, kind, conn, referral, data, at)
        except events.EventConflict as exc:
            raise actions.Conflict(exc.message, code=exc.code, fields=exc.fields) from None
        push_ids = [push.id]
        if created and referral.owner != owner:  # the event's rep owns the person: OwnerId
            changed = {ownership.OWNER: referral.owner}
            target = fieldsync.Target(conn, org)
            push_ids += [p.id for p in fieldsync.to_salesforce(s, referral, changed, [target])]
        out = {kind: event_out(event), "push": serialize.push(push)}
    if created:
        out["push"]["note"] = actions.enqueue_pushes(push_ids)
    return jsonify(out), 201 if created else 200


def event_out(event: Sale | Demo) -> dict[str, Any]:
    return {"id": event.client_id, "referral_id": event.referral_id, **event.body}


@bp.post("/sales")
@require_scope("sales:write")
def create_sale() -> ResponseReturnValue:
    sale = body(SaleIn)
    return _record("sale", sale.model_dump(exclude_none=True, mode="json"), sale.closed_at)


@bp.post("/demos")
@require_scope("sales:write")
def create_demo() -> ResponseReturnValue:
    demo = body(DemoIn)
    return _record("demo", demo.model_dump(exclude_none=True, mode="json"), demo.at)
