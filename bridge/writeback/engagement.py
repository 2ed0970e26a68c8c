"""The sales engagement from Salesforce, as effects: after the receiver decided an entry about
a referral, a change of its Lead's/Contact's phase picklist or OwnerId is judged by the pure
rules (`bridge.writeback.phases`, `bridge.writeback.ownership`) and applied or refused.

Both land in the field history (`FieldChange`, source `salesforce`, outcome `applied` or
`refused` with the value Salesforce had); a refusal also puts its reason on the entry
(`phase_refused:…`, `owner_change_refused:…`), and an owner change refused tells the
reviewers the way review notifications do (the caller schedules it: `Engagement.notify`).
A phase moving into a resting or retired phase ends the sales cycle (`end_cycle`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.config import OrgConfig
from bridge.store.models import Demo, FieldChange, Push, Referral, SalesEntry, UserMapping, utcnow
from bridge.streaming.events import parse_sf_datetime
from bridge.writeback import history, ownership, phases
from bridge.writeback.activities import activity_object

CYCLE_FIELD = "sf_opportunity_id"
"""Cleared (with its history) when a cycle ends: the next sale makes a new Opportunity."""


@dataclass
class Engagement:
    """What an entry did to the engagement: reasons for the entry, whether the referral
    changed, and whether the reviewers are to be told (an owner change refused)."""

    reasons: list[str] = field(default_factory=list)
    changed: bool = False
    notify: bool = False


def end_cycle(
    session: Session, referral: Referral, org: OrgConfig, old: str | None, *, actor: str,
    source: str, entry_id: int | None = None,
) -> None:  # fmt: skip
    """After the phase changed from `old`: a move into a resting/retired phase ends the sales
    cycle, so the next sale or demo gets a new Opportunity on the same Account."""
    if not phases.ends_cycle(org, old, referral.phase) or not referral.sf_opportunity_id:
        return
    history.record(
        session, CYCLE_FIELD, referral=referral, outcome="applied", value=None, source=source,
        previous=referral.sf_opportunity_id, actor=actor, entry_id=entry_id,
    )  # fmt: skip
    referral.sf_opportunity_id = None


def earlier_cycles(session: Session, referral_ids: list[int]) -> dict[int, set[str]]:
    """The Opportunities of each referral's ended cycles (never this cycle's again)."""
    out: dict[int, set[str]] = {}
    if not referral_ids:
        return out
    rows = session.execute(
        select(FieldChange.referral_id, FieldChange.previous).where(
            FieldChange.referral_id.in_(referral_ids), FieldChange.field == CYCLE_FIELD
        )
    )
    for referral_id, previous in rows:
        if referral_id is not None and isinstance(previous, str):
            out.setdefault(referral_id, set()).add(previous)
    return out


def user_ids(session: Session, org: OrgConfig, org_connection_id: int) -> dict[str, str | None]:
    """The user mapping as last resolved (rep -> active user), without calling Salesforce:
    reps by id as configured, reps by email as the last resolution found them."""
    users: dict[str, str | None] = {
        rep: ref.salesforce_id for rep, ref in org.users.items() if ref.salesforce_id
    }
    for row in session.scalars(
        select(UserMapping).where(UserMapping.org_connection_id == org_connection_id)
    ):
        if row.rep in org.users:
            users[row.rep] = row.salesforce_user_id
    return users


def scheduled(session: Session, org: OrgConfig, referral_id: int, now: datetime) -> list[
    ownership.Scheduled
]:  # fmt: skip
    """The referral's future specific-time events: its booked demo and its Event activities."""
    demos = [
        (d.state, d.scheduled_at)
        for d in session.scalars(
            select(Demo).where(Demo.referral_id == referral_id).order_by(Demo.id)
        )
    ]
    activities: list[ownership.Scheduled] = []
    for push in session.scalars(
        select(Push).where(
            Push.referral_id == referral_id,
            Push.kind == "activity",
            Push.state.in_(("pending", "sent")),
        )
    ):
        payload = push.payload or {}
        kind = str(payload.get("kind") or "")
        start = (payload.get("fields") or {}).get("StartDateTime") or payload.get("occurred_at")
        is_event = push.sobject_type == "Event" or (
            kind and activity_object(kind, org) == "Event"  # type: ignore[arg-type]
        )
        at = parse_sf_datetime(start) if is_event and start else None
        if at is not None:
            activities.append(ownership.Scheduled(kind or "event", at))
    return ownership.future_events(demos, activities, now)


def from_salesforce(
    session: Session, entry: SalesEntry, referral: Referral, org: OrgConfig, *, actor: str,
    now: datetime | None = None,
) -> Engagement:  # fmt: skip
    """Judge and apply the entry's phase and owner changes (Lead and Contact entries)."""
    out = Engagement()
    record = (entry.records or {}).get(entry.sobject_type)
    if (
        not isinstance(record, Mapping)
        or entry.sobject_type not in ("Lead", "Contact")
        or entry.change_type == "deleted"
    ):
        return out
    before: Mapping[str, Any] = entry.previous or {}
    change = phases.inbound(org, entry.sobject_type, record, before, referral.phase)
    if change is not None:
        old = referral.phase
        history.record(
            session, phases.PHASE, referral=referral, source="salesforce",
            outcome="applied" if change.accepted else "refused",
            value=change.phase if change.accepted else change.value, previous=old, actor=actor,
            entry_id=entry.id,
        )  # fmt: skip
        if change.accepted:
            referral.phase = change.phase
            out.changed = True
            end_cycle(session, referral, org, old, actor=actor, source="salesforce",
                      entry_id=entry.id)  # fmt: skip
        else:
            out.reasons.append(f"phase_refused:{change.reason}")
    new_owner, seen = record.get("OwnerId"), before.get("OwnerId")
    if not org.users or entry.org_connection_id is None or not new_owner or new_owner == seen:
        return out  # the common case costs no query: the owner did not move
    owner = ownership.owner_change(
        new_user=new_owner,
        before_user=seen,
        local_owner=referral.owner,
        users=user_ids(session, org, entry.org_connection_id),
        future=scheduled(session, org, referral.id, now or utcnow()),
    )
    if owner is not None:
        history.record(
            session, ownership.OWNER, referral=referral, source="salesforce",
            previous=referral.owner, actor=actor,
            outcome="applied" if owner.accepted else "refused", entry_id=entry.id,
            value=owner.rep if owner.accepted else owner.user_id,
        )  # fmt: skip
        if owner.accepted:
            out.changed = out.changed or owner.rep != referral.owner
            referral.owner = owner.rep
        else:
            out.reasons.append(f"owner_change_refused:{owner.reason}")
            out.notify = True
    return out
