"""The push lifecycle: every write to Salesforce is a saved `Push` before it is sent.

pending → sent | failed | skipped. A push is committed in `pending` before any API call, so a
crash loses nothing: the job finds it pending and sends it again (writes are upserts by an
external id or updates by record id, so a second send does not duplicate). Duplicates are
absorbed by `idempotency_key`. Failures keep Salesforce's code, message and fields and who can
fix them (`error_class`): transient ones stay pending and are retried with backoff until
`MAX_ATTEMPTS`; usage and permanent ones fail and can be repushed once the cause is fixed.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, make_transient_to_detached

from bridge import audit
from bridge.errors import UsageError
from bridge.store import row_values
from bridge.store.models import Push, PushAttempt, utcnow
from bridge.vocabulary import PUSH_KINDS, REPUSHABLE

MAX_ATTEMPTS = 5
"""Sends of one push before a transient error (lock, limit, outage) is saved as a failure."""


@functools.lru_cache(maxsize=4)
def _insert_dialect(dialect: str) -> Any:
    table: Any = Push.__table__
    ins: Any = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return ins.on_conflict_do_nothing().returning(table.c.id)


def _insert_push(session: Session) -> Any:
    """INSERT … ON CONFLICT DO NOTHING RETURNING id of a push, built once per dialect."""
    return _insert_dialect(session.get_bind().dialect.name)


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
    now = utcnow()
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
        created_at=now,
        updated_at=now,
    )
    # One statement, neither a savepoint nor a flush of the whole session (the receiver's
    # batch queues a push for many of its entries): a push saved with the same key, earlier
    # or by a concurrent transaction, makes it insert nothing, and the saved one is returned.
    pushed = session.execute(_insert_push(session), row_values(push)).scalar()
    if pushed is None:
        found = session.scalar(select(Push).where(Push.idempotency_key == idempotency_key))
        if found is None:
            raise RuntimeError(f"push {idempotency_key!r} was neither inserted nor found")
        return found, False
    push.id = pushed
    make_transient_to_detached(push)
    session.add(push)  # in the session as saved, like a push loaded from the database
    return push, True


def claim(
    session: Session,
    token: str,
    *,
    until: datetime,
    now: datetime,
    org_connection_id: int | None = None,
    push_ids: Sequence[int] | None = None,
    limit: int | None = None,
) -> list[int]:
    """Claim the free pending pushes of an org (or among `push_ids`) for one sender; returns
    their ids, oldest first.

    One UPDATE whose WHERE repeats the conditions, so two drains racing for the same rows never
    both get one: PostgreSQL re-checks the WHERE on a row another transaction just claimed,
    SQLite runs one writer at a time. A claim expires at `until` (a killed worker's pushes are
    free again then); a push waiting for its retry is held by a claim until the retry is due.
    """
    free = (Push.state == "pending", or_(Push.claimed_until.is_(None), Push.claimed_until < now))
    wanted = select(Push.id).where(*free)
    if org_connection_id is not None:
        wanted = wanted.where(Push.org_connection_id == org_connection_id)
    if push_ids is not None:
        wanted = wanted.where(Push.id.in_(list(push_ids)))
    wanted = wanted.order_by(Push.id).limit(limit) if limit else wanted
    session.execute(
        update(Push)
        .where(Push.id.in_(wanted.scalar_subquery()), *free)
        .values(claim_token=token, claimed_until=until)
        .execution_options(synchronize_session=False)
    )
    return list(session.scalars(select(Push.id).where(Push.claim_token == token).order_by(Push.id)))


def hold(session: Session, push_ids: Sequence[int], until: datetime | None) -> None:
    """Keep still-pending pushes claimed until `until` (their retry), or free them (None)."""
    if push_ids:
        session.execute(
            update(Push)
            .where(Push.id.in_(list(push_ids)), Push.state == "pending")
            .values(claim_token=None, claimed_until=until)
            .execution_options(synchronize_session=False)
        )


def record_attempt(session: Session, push: Push, via: str) -> None:
    """One row of the push's send history: what this attempt came to."""
    session.add(
        PushAttempt(
            push_id=push.id,
            attempt=push.attempts or 0,
            state=push.state,
            sf_id=push.sf_id if push.state == "sent" else None,
            error_code=push.error_code,
            error_message=push.error_message,
            error_class=push.error_class,
            via=via,
        )
    )


@dataclass(frozen=True)
class NumberedAttempt:
    """One send of a push, numbered in order across repushes (1, 2, 3 …); `retry` counts the
    sends of its round before it (a repush starts a round: its first send is retry 0)."""

    number: int
    retry: int
    row: PushAttempt


def attempts_of(session: Session, push_id: int) -> list[NumberedAttempt]:
    """Every send of the push, oldest first: what the push page and the API list."""
    rows = session.scalars(
        select(PushAttempt).where(PushAttempt.push_id == push_id).order_by(PushAttempt.id)
    )
    return [
        NumberedAttempt(number, max((row.attempt or 1) - 1, 0), row)
        for number, row in enumerate(rows, start=1)
    ]


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
    # The last sender's claim ended with its send: free the push for the next drain now, not
    # when that claim would have expired.
    push.claim_token = None
    push.claimed_until = None
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
