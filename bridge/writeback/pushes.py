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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, make_transient_to_detached

from bridge import audit
from bridge.errors import UsageError
from bridge.store import reserve_ids, row_values, unsaved
from bridge.store.arrays import insert_rows
from bridge.store.models import Push, PushAttempt, utcnow
from bridge.vocabulary import PUSH_KINDS, REPUSHABLE

MAX_ATTEMPTS = 5
"""Sends of one push before a transient error (lock, limit, outage) is saved as a failure."""


@functools.lru_cache(maxsize=4)
def _insert_dialect(dialect: str) -> Any:
    table: Any = Push.__table__
    ins: Any = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    # Only a saved key is absorbed: a row whose id is taken is an error, not a push dropped.
    return ins.on_conflict_do_nothing(index_elements=[table.c.idempotency_key]).returning(
        table.c.id
    )


def _insert_push(session: Session) -> Any:
    """INSERT … ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, built once per dialect."""
    return _insert_dialect(session.get_bind().dialect.name)


_PUSHES: Any = Push.__table__

_BATCH = "bridge.writeback.pushes.batch"
_ID_BLOCK = 50
"""Push ids reserved at a time by a batch (a receiver chunk queues at most one or two an entry)."""


class _Batch:
    """The pushes a block queues, written together with one multi-row INSERT (`batched`).

    Each push gets a reserved id when queued, so it can be listed (on an entry's decision)
    before it is written. A key queued twice in the block gives the first push. A key already
    saved (earlier, or by a concurrent transaction) inserts nothing: the saved push's id
    replaces the reserved one (`replaced`, which `relink` applies to lists of ids). A written
    push stays out of the session (nothing in the block changes it after; joining the
    session cost a fifth of writing it): whoever needs it reads it by its id.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.pending: dict[str, Push] = {}
        self.free: list[int] = []
        self.replaced: dict[int, int] = {}

    def queue(self, push: Push) -> tuple[Push, bool]:
        queued = self.pending.get(push.idempotency_key)
        if queued is not None:
            return queued, False
        if not self.free:
            # Written first: on SQLite the next ids are read from the highest written one.
            self.write()
            self.free = reserve_ids(self.session, Push, _ID_BLOCK)
        push.id = self.free.pop(0)
        self.pending[push.idempotency_key] = push
        return push, True

    def write(self) -> None:
        pending, self.pending = list(self.pending.values()), {}
        if not pending:
            return
        session = self.session
        rows = [row_values(p) for p in pending]
        with session.no_autoflush:
            inserted = set(
                insert_rows(
                    session, _PUSHES, rows, skip_conflicts_on="idempotency_key", returning="id"
                )
            )
            absorbed = [p for p in pending if p.id not in inserted]
            if absorbed:
                keys = [p.idempotency_key for p in absorbed]
                found = select(Push.idempotency_key, Push.id).where(Push.idempotency_key.in_(keys))
                saved: dict[str, int] = dict(session.execute(found).all())
                for push in absorbed:
                    if push.idempotency_key not in saved:
                        raise RuntimeError(
                            f"push {push.idempotency_key!r} was neither inserted nor found"
                        )
                    self.replaced[push.id] = saved[push.idempotency_key]

    def relink(self, push_ids: Sequence[int]) -> list[int]:
        return [self.replaced.get(i, i) for i in push_ids]


@contextmanager
def batched(session: Session) -> Iterator[None]:
    """Collect the pushes `queue_push` saves in the block and write them with one INSERT at
    its end (or when `write_batched` is called; not on error: the transaction is then rolled
    back anyway). A push's id is known when it is queued, but a key saved before is only
    found when the batch is written: `write_batched` gives the ids to use instead. Nested
    blocks write with the outermost."""
    if _BATCH in session.info:
        yield
        return
    batch = _Batch(session)
    session.info[_BATCH] = batch
    try:
        yield
    finally:
        del session.info[_BATCH]
    batch.write()


def write_batched(session: Session, push_ids: Sequence[int]) -> list[int]:
    """Write the pushes queued so far in a `batched` block, and return `push_ids` with the id
    of the push saved before in place of each one queued whose key was (unchanged outside a
    block)."""
    batch: _Batch | None = session.info.get(_BATCH)
    if batch is None:
        return list(push_ids)
    batch.write()
    return batch.relink(push_ids)


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
    values: dict[str, Any] = {
        "kind": kind,
        "idempotency_key": idempotency_key,
        "sobject_type": sobject_type,
        "payload": payload,
        "org_connection_id": org_connection_id,
        "external_id_field": external_id_field,
        "external_id": external_id,
        "referral_id": referral_id,
        "state": "pending",
        "attempts": 0,
        "error_fields": [],
        "created_at": now,
        "updated_at": now,
    }
    batch: _Batch | None = session.info.get(_BATCH)
    if batch is not None:
        return batch.queue(unsaved(Push, values))
    push = Push(**values)
    # One statement, neither a savepoint nor a flush of the whole session: a push saved with
    # the same key, earlier or by a concurrent transaction, makes it insert nothing, and the
    # saved one is returned.
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

    One UPDATE … RETURNING whose WHERE repeats the conditions, so two drains racing for the
    same rows never both get one: PostgreSQL re-checks the WHERE on a row another transaction
    just claimed, SQLite runs one writer at a time. A claim expires at `until` (a killed
    worker's pushes are free again then); a push waiting for its retry is held by a claim
    until the retry is due.
    """
    free = (Push.state == "pending", or_(Push.claimed_until.is_(None), Push.claimed_until < now))
    wanted = select(Push.id).where(*free)
    if org_connection_id is not None:
        wanted = wanted.where(Push.org_connection_id == org_connection_id)
    if push_ids is not None:
        wanted = wanted.where(Push.id.in_(list(push_ids)))
    wanted = wanted.order_by(Push.id).limit(limit) if limit else wanted
    claimed = session.scalars(
        update(Push)
        .where(Push.id.in_(wanted.scalar_subquery()), *free)
        .values(claim_token=token, claimed_until=until)
        .returning(Push.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(claimed)


def hold(session: Session, push_ids: Sequence[int], until: datetime | None) -> None:
    """Keep still-pending pushes claimed until `until` (their retry), or free them (None)."""
    if push_ids:
        session.execute(
            update(Push)
            .where(Push.id.in_(list(push_ids)), Push.state == "pending")
            .values(claim_token=None, claimed_until=until)
            .execution_options(synchronize_session=False)
        )


_INSERT_ATTEMPTS: Any = insert(PushAttempt.__table__)  # type: ignore[arg-type]


def record_attempts(session: Session, attempts: Sequence[tuple[Push, str]]) -> None:
    """One row of send history per (push, via): what this attempt came to; all of them one
    INSERT."""
    if not attempts:
        return
    rows = [
        {
            "push_id": push.id,
            "attempt": push.attempts or 0,
            "state": push.state,
            "sf_id": push.sf_id if push.state == "sent" else None,
            "error_code": push.error_code,
            "error_message": push.error_message,
            "error_class": push.error_class,
            "via": via,
            "at": utcnow(),
        }
        for push, via in attempts
    ]
    session.execute(_INSERT_ATTEMPTS, rows)


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
