"""The push lifecycle: every write to Salesforce is a saved `Push` before it is sent.

pending → sent | failed | skipped. A push is committed in `pending` before any API call, so a
crash loses nothing: the job finds it pending and sends it again (writes are upserts by an
external id or updates by record id, so a second send does not duplicate). Duplicates are
absorbed by `idempotency_key`. Failures keep Salesforce's code, message and fields and who can
fix them (`error_class`): transient ones stay pending and are retried with backoff until
`MAX_ATTEMPTS`; usage and permanent ones fail and can be repushed once the cause is fixed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bridge import audit
from bridge.errors import UsageError
from bridge.store.models import Push
from bridge.vocabulary import PUSH_KINDS, REPUSHABLE

MAX_ATTEMPTS = 5
"""Sends of one push before a transient error (lock, limit, outage) is saved as a failure."""


def payload_digest(payload: Mapping[str, Any]) -> str:
    """A short stable digest of a payload, for idempotency keys of content-addressed pushes."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def queue_push(
    session: Session,
    *,
    kind: str,
    idempotency_key: str,
    sobject_type: str,
    payload: dict[str, Any],
    org_connection_id: int | None,
    external_id_field: str | None = None,
    external_id: str | None = None,
    referral_id: int | None = None,
) -> tuple[Push, bool]:
    """Save a pending push; returns (push, created). An existing key returns the saved push."""
    if kind not in PUSH_KINDS:
        raise ValueError(f"unknown push kind {kind!r}")
    found = session.scalar(select(Push).where(Push.idempotency_key == idempotency_key))
    if found is not None:
        return found, False
    push = Push(
        kind=kind,
        idempotency_key=idempotency_key,
        sobject_type=sobject_type,
        payload=payload,
        org_connection_id=org_connection_id,
        external_id_field=external_id_field,
        external_id=external_id,
        referral_id=referral_id,
        state="pending",
        attempts=0,
        error_fields=[],
    )
    try:
        # A savepoint, so losing a race to a concurrent insert keeps the caller's transaction.
        with session.begin_nested():
            session.add(push)
            session.flush()
    except IntegrityError:
        found = session.scalar(select(Push).where(Push.idempotency_key == idempotency_key))
        if found is None:
            raise
        return found, False
    return push, True


def _clear_error(push: Push) -> None:
    push.error_code = None
    push.error_message = None
    push.error_fields = []
    push.error_class = None


def mark_sent(push: Push, sf_id: str | None, now: datetime | None = None) -> None:
    push.state = "sent"
    push.sf_id = sf_id
    push.sent_at = now or datetime.now(UTC)
    _clear_error(push)


def mark_skipped(push: Push, code: str, message: str) -> None:
    """Nothing was written, on purpose (e.g. `existing_email` with on_existing_email: skip)."""
    push.state = "skipped"
    push.error_code = code
    push.error_message = message
    push.error_fields = []
    push.error_class = None


def mark_error(
    push: Push,
    *,
    code: str,
    message: str,
    fields: list[str] | None,
    error_class: str,
) -> None:
    """Save an error; a transient one leaves the push pending for the retry until MAX_ATTEMPTS."""
    push.error_code = code[:64]
    push.error_message = message
    push.error_fields = list(fields or [])
    push.error_class = error_class
    if error_class == "transient" and push.attempts < MAX_ATTEMPTS:
        push.state = "pending"
    else:
        push.state = "failed"


def repush(
    session: Session,
    push_id: int,
    *,
    actor: str,
    fields: Mapping[str, Any] | None = None,
) -> Push:
    """Put a failed or skipped push back to pending (audited); the caller enqueues it.

    `fields` edits Salesforce fields of the write (a None value leaves the field out): kept
    as the payload's `overrides` and applied over the fields when the push is sent, whatever
    they are built from. A referral push is rebuilt from the referral when it is sent, so
    fixing the referral itself is usually enough.
    """
    push = session.get(Push, push_id)
    if push is None:
        raise UsageError(f"push {push_id} does not exist", code="push_not_found")
    if push.state not in REPUSHABLE:
        raise UsageError(
            f"push {push_id} is {push.state}; only failed or skipped pushes can be repushed",
            code="push_not_repushable",
        )
    previous = {
        "state": push.state,
        "error_code": push.error_code,
        "error_message": push.error_message,
        "error_fields": list(push.error_fields or []),
    }
    if fields:
        payload = dict(push.payload or {})
        payload["overrides"] = {**(payload.get("overrides") or {}), **fields}
        push.payload = payload
    push.state = "pending"
    push.attempts = 0
    _clear_error(push)
    audit.record(
        session,
        actor,
        "push.repush",
        "push",
        push.id,
        previous=previous,
        edited_fields=sorted(fields or {}),
    )
    session.flush()
    return push
