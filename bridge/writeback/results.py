"""Saving a drain's results: each push's outcome on the push itself (sent with its record id,
skipped, denied or failed with the reason), its attempt in the push's history, and what the
outcome changes of its referral (the record id written back, a routed owner, a denial).

`save` takes the outcomes of one collection request (`bridge.writeback.sender`) and writes
them `PUSHES_PER_TRANSACTION` at a time, a group in a few set-based statements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge import audit
from bridge.store import Store
from bridge.store.models import Push, Referral, ReferralStatusChange
from bridge.writeback import lead_owners, referrals
from bridge.writeback.planning import Outcome
from bridge.writeback.pushes import mark_error, mark_sent, mark_skipped, record_attempts

ACTOR = "writeback"

PUSHES_PER_TRANSACTION = 10
"""Pushes claimed, and results saved, per write transaction: on SQLite the subscriber waits
for the transaction in progress, so a drain's are kept short (a group is a few set-based
statements, docs/writeback.md "What a drain costs the worker")."""


@dataclass
class SendReport:
    sent: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)  # transient errors: still pending
    new_leads: list[str] = field(default_factory=list)  # Leads created (not updated)

    def add(self, outcome: Outcome, push: Push) -> None:
        bucket = {"sent": self.sent, "failed": self.failed, "skipped": self.skipped}
        if push.state == "pending":
            self.retry.append(push.id)
        else:
            bucket[push.state].append(push.id)


def save(
    store: Store, outcomes: list[Outcome], now: datetime, report: SendReport,
    routed: dict[int, tuple[str | None, str]] | None = None,
) -> None:  # fmt: skip
    """Save the results, `PUSHES_PER_TRANSACTION` at a time: each push's result stands on its
    own, and on SQLite the subscriber waits for a write transaction to end (a drain's results
    in one held the lock for a second or more)."""
    for start in range(0, len(outcomes), PUSHES_PER_TRANSACTION):
        _save_some(store, outcomes[start : start + PUSHES_PER_TRANSACTION], now, report, routed)


def _save_some(
    store: Store, outcomes: list[Outcome], now: datetime, report: SendReport,
    routed: dict[int, tuple[str | None, str]] | None,
) -> None:  # fmt: skip
    """Save one group's results: its pushes read again in one query (only pending ones take a
    result), the referrals the results change in one more, and nothing written before the
    commit: the pushes' changes flushed together, their attempts one INSERT (a `session.get`
    per result flushed the result before it: a flush and a query per push)."""
    routed = routed or {}
    with store.session() as session, session.no_autoflush:
        ids = [o.push_id for o in outcomes]
        pushes = {p.id: p for p in session.scalars(select(Push).where(Push.id.in_(ids)))}
        wanted = [
            push.referral_id
            for o in outcomes
            if (push := pushes.get(o.push_id)) is not None and _changes_referral(push, o, routed)
        ]
        referral_of = (
            {r.id: r for r in session.scalars(select(Referral).where(Referral.id.in_(wanted)))}
            if wanted
            else {}
        )
        attempts: list[tuple[Push, str]] = []
        for outcome in outcomes:
            push = pushes.get(outcome.push_id)
            if push is None or push.state != "pending":
                continue
            referral = referral_of.get(push.referral_id) if push.referral_id is not None else None
            if outcome.fields is not None:
                payload = dict(push.payload or {})
                payload["fields"] = outcome.fields
                push.payload = payload
            if outcome.sobject:
                push.sobject_type = outcome.sobject
            if outcome.state == "sent":
                mark_sent(push, outcome.sf_id, now)
                if outcome.note:
                    push.payload = {**(push.payload or {}), "note": outcome.note}
                if referral is not None and push.kind == "referral":
                    _after_sent(referral, push, outcome)
                if referral is not None and push.id in routed:
                    lead_owners.record(session, referral, *routed[push.id])
                if outcome.created and push.kind == "referral" and push.sobject_type == "Lead":
                    report.new_leads.append(str(outcome.sf_id))
            elif outcome.state in ("skipped", "denied"):
                assert outcome.error is not None
                mark_skipped(push, outcome.error.code, outcome.error.message)
                if referral is not None and outcome.state == "denied":
                    _deny_referral(session, referral, push, outcome)
            else:
                assert outcome.error is not None
                mark_error(
                    push,
                    code=outcome.error.code,
                    message=outcome.error.message,
                    fields=outcome.error.fields,
                    error_class=outcome.error_class or "permanent",
                )
            attempts.append((push, outcome.via))
            report.add(outcome, push)
        record_attempts(session, attempts)


def _changes_referral(
    push: Push, outcome: Outcome, routed: dict[int, tuple[str | None, str]]
) -> bool:
    """Whether saving `outcome` changes the push's referral: a sent referral add (its record
    id, local updates), a routed push (its owner), a denied one (its status)."""
    if push.referral_id is None or push.state != "pending":
        return False
    if outcome.state == "sent":
        return push.kind == "referral" or push.id in routed
    return outcome.state == "denied"


def _after_sent(referral: Referral, push: Push, outcome: Outcome) -> None:
    if push.sobject_type == "Lead":
        referral.sf_lead_id = push.sf_id
    elif push.sobject_type == "Contact":
        referral.sf_contact_id = push.sf_id
    extra = dict(referral.fields or {})
    for name, value in outcome.local_updates.items():
        if name in referrals.REFERRAL_ATTRIBUTES and name not in ("public_id", "status"):
            setattr(referral, name, value)
        elif name not in ("public_id", "status"):
            extra[name] = value
    if extra != (referral.fields or {}):
        referral.fields = extra


def _deny_referral(session: Session, referral: Referral, push: Push, outcome: Outcome) -> None:
    if referral.status in ("approved", "denied"):
        return  # approved is terminal; denied already
    previous = referral.status
    referral.status = "denied"
    session.add(
        ReferralStatusChange(
            referral_id=referral.id, from_status=previous, to_status="denied", actor=ACTOR
        )
    )
    audit.record(
        session,
        ACTOR,
        "referral.denied",
        "referral",
        referral.id,
        reason="existing_email",
        push_id=push.id,
        message=outcome.error.message if outcome.error else None,
    )
