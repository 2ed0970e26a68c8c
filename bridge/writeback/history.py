"""A referral's or member's field history: one `FieldChange` row per change, whoever made it
(a local edit, two-way sync, routing, a sale or demo, a refused phase or owner)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.store.models import FieldChange, Referral, utcnow
from bridge.writeback.sync import MEMBER_PREFIX


def record(
    session: Session,
    name: str,
    *,
    source: str,
    outcome: str,
    value: Any,
    previous: Any,
    actor: str,
    referral: Referral | None = None,
    member_id: int | None = None,
    entry_id: int | None = None,
) -> None:
    """Add the row of one change of field `name` (a `member.` name is the referral's member's
    field, on the member's history too)."""
    if member_id is None and referral is not None and name.startswith(MEMBER_PREFIX):
        member_id = referral.member_id
    session.add(
        FieldChange(
            referral_id=referral.id if referral is not None else None,
            member_id=member_id,
            field=name,
            source=source,
            outcome=outcome,
            value=value,
            previous=previous,
            entry_id=entry_id,
            actor=actor,
            at=utcnow(),
        )
    )


def of(session: Session, referral: Referral) -> list[dict[str, Any]]:
    """The referral's field history, oldest first (its member's changes included)."""
    query = select(FieldChange).where(FieldChange.referral_id == referral.id)
    if referral.member_id is not None:
        query = select(FieldChange).where(
            (FieldChange.referral_id == referral.id)
            | ((FieldChange.member_id == referral.member_id) & FieldChange.referral_id.is_(None))
        )
    return [
        {
            "field": c.field,
            "source": c.source,
            "outcome": c.outcome,
            "value": c.value,
            "previous": c.previous,
            "entry_id": c.entry_id,
            "actor": c.actor,
            "at": c.at.isoformat().replace("+00:00", "Z") if c.at else None,
        }  # fmt: skip
        for c in session.scalars(query.order_by(FieldChange.id))
    ]
