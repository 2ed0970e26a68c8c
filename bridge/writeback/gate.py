"""Lead routing in front of referral add: whether and when a referral's push is made.

`route_referral` asks the pure core (`bridge.writeback.routing.verdict`) and acts on its
answer: `send` queues the referral add push (the one way a referral reaches Salesforce),
`wait` saves the due time on the referral (`send_due_at`), anything else leaves it local.
The push is built from the referral when it is sent, so changes made while a referral waits
all go out together, once. `release_due` (the worker's sweeper) routes the referrals whose due
time has come; a restart loses nothing, the due time is in the store.

`why_not_sent` answers "why is this referral not in Salesforce?" in words.
"""

from __future__ import annotations

from datetime import UTC, datetime

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge import audit, locks
from bridge.config import BridgeConfig, OrgConfig
from bridge.store import Store
from bridge.store.models import OrgConnection, Program, Push, Referral
from bridge.vocabulary import REPUSHABLE
from bridge.writeback import routing
from bridge.writeback.pushes import repush
from bridge.writeback.referrals import idempotency_key, queue_referral_add

RELEASE_LOCK = "sfbridge:routing:release"
RELEASE_BATCH = 500


def criteria(org_config: OrgConfig) -> routing.Criteria:
    return routing.Criteria(org_config.routing.minimum_score, org_config.routing.delay)


def person(referral: Referral) -> routing.Person:
    return routing.Person(referral.score, referral.qualified_at, referral.conversation_closed_at)


def program_target(
    session: Session, config: BridgeConfig | None, program_id: int
) -> tuple[OrgConnection, OrgConfig] | None:
    """The program's connected org and its config, or None when it has none yet."""
    program = session.get(Program, program_id)
    if program is None or program.org_connection_id is None or config is None:
        return None
    conn = session.get(OrgConnection, program.org_connection_id)
    if conn is None or conn.name not in config.orgs:
        return None
    return conn, config.orgs[conn.name]


def referral_push(session: Session, org: OrgConnection, referral: Referral) -> Push | None:
    return session.scalar(
        select(Push).where(Push.idempotency_key == idempotency_key(org, referral))
    )


def note_score(referral: Referral, org_config: OrgConfig, now: datetime) -> None:
    """Keep `qualified_at` true to the score: set when it first meets the minimum, cleared
    when it drops below (a later rise starts the delay again)."""
    if routing.meets(criteria(org_config), referral.score):
        if referral.qualified_at is None:
            referral.qualified_at = now
    else:
        referral.qualified_at = None


def route_referral(
    session: Session,
    org: OrgConnection,
    org_config: OrgConfig,
    referral: Referral,
    *,
    now: datetime | None = None,
    manual: bool = False,
    actor: str = "routing",
) -> Push | None:
    """Queue the referral add when routing says send (returns the push); else save the due
    time or nothing. A manual sync ignores criteria and delay, and is audited."""
    now = now or datetime.now(UTC)
    note_score(referral, org_config, now)
    existing = referral_push(session, org, referral)
    if existing is not None and not manual:
        referral.send_due_at = None
        return existing
    if (referral.sf_lead_id or referral.sf_contact_id) and not manual:
        # Already in Salesforce (matched from there, or sent before): no referral add to
        # route; its edits go out by the field sync rules.
        referral.send_due_at = None
        return None
    decision = routing.verdict(person(referral), criteria(org_config), now, manual=manual)
    if decision.state != "send":
        referral.send_due_at = decision.due_at if decision.state == "wait" else None
        return None
    referral.send_due_at = None
    if existing is not None and existing.state in REPUSHABLE:
        push = repush(session, existing.id, actor=actor)
    else:
        push = existing or queue_referral_add(session, org, org_config, referral)
    if manual:
        audit.record(
            session, actor, "referral.sync", "referral", referral.id, org=org.name, push_id=push.id
        )
    return push


def release_due(
    store: Store,
    client: redis.Redis | None,
    config: BridgeConfig,
    *,
    now: datetime | None = None,
) -> list[int]:
    """Route the referrals whose delay is over; returns the pending pushes made, for the caller
    to enqueue. With a client, one sweeper at a time across workers."""
    if client is not None and not locks.once_per(client, RELEASE_LOCK, 1.0):
        return []
    now = now or datetime.now(UTC)
    made: list[int] = []
    with store.session() as session:
        due = session.scalars(
            select(Referral)
            .where(Referral.send_due_at.is_not(None), Referral.send_due_at <= now)
            .order_by(Referral.send_due_at, Referral.id)
            .limit(RELEASE_BATCH)
        ).all()
        for referral in due:
            target = program_target(session, config, referral.program_id)
            if target is None:
                referral.send_due_at = None
                continue
            push = route_referral(session, target[0], target[1], referral, now=now)
            if push is not None and push.state == "pending":
                made.append(push.id)
    return made


def why_not_sent(
    session: Session,
    config: BridgeConfig | None,
    referral: Referral,
    *,
    now: datetime | None = None,
) -> str | None:
    """Why this referral is not in Salesforce, in words; None when it is."""
    if referral.sf_lead_id or referral.sf_contact_id:
        return None
    target = program_target(session, config, referral.program_id)
    if target is None:
        return "its program is not connected to a Salesforce org"
    org, org_config = target
    push = referral_push(session, org, referral)
    paused = bool(org.outbound_paused)
    if paused and (push is None or push.state == "pending"):
        decision = routing.verdict(person(referral), criteria(org_config), now or datetime.now(UTC),
                                   outbound_on=False)  # fmt: skip
        held = " (saved: it is sent when outbound is resumed)" if push is not None else ""
        return decision.reason + held
    if push is not None:
        if push.state == "failed":
            return f"the push failed: {push.error_code}: {push.error_message}"
        if push.state == "skipped":
            return f"the push was skipped ({push.error_code}): {push.error_message}"
        if push.state == "pending":
            if push.error_code:
                return (
                    f"queued, retrying after {push.attempts} attempt(s): {push.error_code}: "
                    f"{push.error_message}"
                )
            return "queued to be sent"
        return None
    now = now or datetime.now(UTC)
    decision = routing.verdict(person(referral), criteria(org_config), now)
    if decision.state == "send" and referral.send_due_at is not None:
        when = referral.send_due_at.isoformat(timespec="minutes")
        return f"the delay is over ({when}); it goes with the next routing sweep"
    return decision.reason
