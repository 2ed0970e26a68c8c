"""Rows as JSON for the API (the shapes documented in openapi.py), always strict JSON."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from flask.json.provider import DefaultJSONProvider

from bridge.store.models import Member, Push, Referral, SalesEntry
from bridge.web.words import reason_text
from bridge.writeback.pushes import NumberedAttempt


def _ts(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def referral(r: Referral) -> dict[str, Any]:
    return {
        "id": r.id,
        "public_id": r.public_id,
        "external_id": r.external_id,
        "program_id": r.program_id,
        "member_id": r.member_id,
        "first_name": r.first_name,
        "last_name": r.last_name,
        "email": r.email,
        "company": r.company,
        "phone": r.phone,
        "status": r.status,
        "phase": r.phase,
        "owner": r.owner,
        "fields": r.fields or {},
        "salesforce": {
            "lead_id": r.sf_lead_id,
            "contact_id": r.sf_contact_id,
            "account_id": r.sf_account_id,
            "opportunity_id": r.sf_opportunity_id,
        },
        "routing": {
            "score": r.score,
            "qualified_at": _ts(r.qualified_at),
            "send_due_at": _ts(r.send_due_at),
            "conversation_closed_at": _ts(r.conversation_closed_at),
            "meeting_owner": r.meeting_owner,
            "routed_owner": r.routed_owner,
            "closed_by": r.closed_by,
        },
        "created_at": _ts(r.created_at),
        "updated_at": _ts(r.updated_at),
    }


def member(m: Member) -> dict[str, Any]:
    return {
        "id": m.id,
        "program_id": m.program_id,
        "external_id": m.external_id,
        "referral_code": m.referral_code,
        "name": m.name,
        "email": m.email,
        "phone": m.phone,
        "url": m.url,
        "fields": dict(m.fields or {}),
        "created_at": _ts(m.created_at),
    }


def entry(e: SalesEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "source": e.source,
        "sobject_type": e.sobject_type,
        "record_id": e.record_id,
        "change_type": e.change_type,
        "outcome": e.outcome,
        "reasons": list(e.reasons or []),
        "reasons_in_words": [{"code": c, "text": reason_text(c)} for c in e.reasons or []],
        "error": e.error,
        "decision": e.decision or {},
        "candidates": list(e.candidates or []),
        "records": e.records or {},
        "referral_id": e.referral_id,
        "member_id": e.member_id,
        "program_id": e.program_id,
        "attempts": e.attempts,
        "decided_by": e.decided_by,
        "created_at": _ts(e.created_at),
        "updated_at": _ts(e.updated_at),
        "processed_at": _ts(e.processed_at),
    }


def push(p: Push) -> dict[str, Any]:
    return {
        "id": p.id,
        "kind": p.kind,
        "state": p.state,
        "sobject_type": p.sobject_type,
        "external_id_field": p.external_id_field,
        "external_id": p.external_id,
        "sf_id": p.sf_id,
        "error": (
            {"code": p.error_code, "message": p.error_message, "fields": list(p.error_fields or [])}
            if p.error_code or p.error_message
            else None
        ),
        "attempts": p.attempts,
        "referral_id": p.referral_id,
        "payload": p.payload or {},
        "created_at": _ts(p.created_at),
        "updated_at": _ts(p.updated_at),
        "sent_at": _ts(p.sent_at),
    }


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON, but never `NaN` or `Infinity` (not JSON; clients fail on the whole list).
    The API refuses them on the way in; a value stored before that is written as null."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs["allow_nan"] = False
        try:
            return super().dumps(obj, **kwargs)
        except ValueError:
            return super().dumps(_finite(obj), **kwargs)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def push_attempt(numbered: NumberedAttempt) -> dict[str, Any]:
    a = numbered.row
    return {
        "attempt": numbered.number,
        "retry": numbered.retry,
        "state": a.state,
        "sf_id": a.sf_id,
        "error": (
            {"code": a.error_code, "message": a.error_message, "class": a.error_class}
            if a.error_code
            else None
        ),
        "via": a.via,
        "at": _ts(a.at),
    }
