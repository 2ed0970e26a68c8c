"""Sales entries through the receiver: decide, apply the effects, save the explanation.

The caller owns the transaction (``with store.session() as session: process_entry(...)``):
the referral change, its status history, the entry's explanation and the audit record commit
together or not at all. Review notifications go out after that commit (see notify.py).

Entry ``records`` follow SPEC §6 (``{"Lead": {...}|None, "Contact": ..., "Account": ...,
"Opportunity": ...}``); with ``contact_matching: trigger_and_account_contacts`` the inbound
side adds ``"AccountContacts": [...]`` (see bridge.receiver.matching).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge import audit
from bridge.config import SOBJECTS, OrgConfig, parse_field_ref
from bridge.errors import UsageError
from bridge.receiver import notify
from bridge.receiver.candidates import find_members, find_referrals, referral_candidate
from bridge.receiver.decision import FAILED, PROCESSED, REVIEW, SKIPPED, Decision, decide
from bridge.receiver.matching import EntryInput, plan_lookups
from bridge.receiver.rules import QUALIFYING
from bridge.store.models import (
    OrgConnection,
    Program,
    Referral,
    ReferralStatusChange,
    SalesEntry,
    utcnow,
)

RULES_ACTOR = "rules"
NEW = "new"


def new_public_id() -> str:
    """A referral's public id (written to Salesforce's Referral_ID__c)."""
    return "R" + secrets.token_hex(8).upper()


# ---- the four actions ------------------------------------------------------------------------


def process_entry(
    session: Session,
    entry: SalesEntry,
    org: OrgConfig,
    *,
    integration_user_id: str | None = None,
) -> SalesEntry:
    """Decide a new entry and apply it. Idempotent: an entry already decided is left as it is
    (a redelivered job changes nothing), so only ``new`` entries are processed."""
    if entry.outcome != NEW:
        return entry
    if integration_user_id is None and entry.org_connection_id is not None:
        conn = session.get(OrgConnection, entry.org_connection_id)
        integration_user_id = conn.integration_user_id if conn else None
    _run(session, entry, org, actor=RULES_ACTOR, integration_user_id=integration_user_id)
    return entry


def approve_entry(session: Session, entry: SalesEntry, org: OrgConfig, *, actor: str) -> SalesEntry:
    """Apply what an entry in review proposed. The rules run again on the current state of the
    referral (it may have changed meanwhile), with the proposal as the forced target."""
    if entry.outcome != REVIEW:
        raise UsageError(f"entry {entry.id} is {entry.outcome}, not in review: nothing to approve")
    proposal = entry.decision or {}
    referral_id = proposal.get("referral_id")
    member_id = proposal.get("member_id") if proposal.get("create_referral") is not None else None
    if referral_id is None and member_id is None:
        raise UsageError(
            f"entry {entry.id} has no proposed referral ({', '.join(entry.reasons)}): "
            "pick a referral or edit its fields and retry"
        )
    _run(
        session,
        entry,
        org,
        actor=actor,
        forced_referral_id=referral_id,
        forced_member_id=member_id,
        reviewed=True,
        action="entry.approved",
    )
    return entry


def reject_entry(
    session: Session, entry: SalesEntry, *, actor: str, note: str | None = None
) -> SalesEntry:
    """Close an entry in review (or failed) without touching any referral."""
    if entry.outcome not in (REVIEW, FAILED):
        raise UsageError(
            f"entry {entry.id} is {entry.outcome}: only entries in review or failed can be rejected"
        )
    entry.outcome = SKIPPED
    entry.reasons = [*entry.reasons, "rejected"]
    entry.decision = {**(entry.decision or {}), "rejected": {"by": actor, "note": note}}
    entry.decided_by = actor
    entry.processed_at = utcnow()
    audit.record(session, actor, "entry.rejected", "sales_entry", entry.id, note=note)
    return entry


def retry_entry(
    session: Session,
    entry: SalesEntry,
    org: OrgConfig,
    *,
    actor: str,
    fields: Mapping[str, Any] | None = None,
    referral_id: int | None = None,
) -> SalesEntry:
    """Run the rules again after a reviewer edited the entry's fields and/or picked a referral.

    ``fields``: ``{"Contact.Email": "jane@example.com", ...}`` (or ``{"Contact": {...}}``),
    merged into ``records``; the original payload stays in ``raw``. A picked referral is a
    reviewer's decision, so the review rules do not apply to it again; edits alone re-run the
    rules as for a new entry.
    """
    if entry.outcome == PROCESSED:
        raise UsageError(f"entry {entry.id} is already processed; nothing to retry")
    edits = _normalize_edits(fields or {})
    if edits:
        records = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in entry.records.items()}
        for obj, values in edits.items():
            current = records.get(obj)
            records[obj] = {**(current if isinstance(current, Mapping) else {}), **values}
        entry.records = records
    _run(
        session,
        entry,
        org,
        actor=actor,
        forced_referral_id=referral_id,
        reviewed=referral_id is not None,
        action="entry.retried",
        extra={"edits": edits, "chosen_referral_id": referral_id},
    )
    return entry


# ---- internals -------------------------------------------------------------------------------


def _normalize_edits(fields: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    edits: dict[str, dict[str, Any]] = {}
    for key, value in fields.items():
        if key in SOBJECTS and isinstance(value, Mapping):
            for name, v in value.items():
                edits.setdefault(key, {})[str(name)] = v
            continue
        try:
            obj, name = parse_field_ref(str(key))
        except ValueError as exc:
            raise UsageError(f"cannot edit '{key}': {exc}", fields=[str(key)]) from None
        edits.setdefault(obj, {})[name] = value
    return edits


def _program(session: Session, entry: SalesEntry, org: OrgConfig) -> Program:
    """The receiver's program row (created from the config the first time it is needed)."""
    if entry.program_id is not None:
        program = session.get(Program, entry.program_id)
        if program is not None:
            return program
    key = org.receiver.program
    program = session.scalar(select(Program).where(Program.key == key))
    if program is None:
        spec = next(p for p in org.programs if p.key == key)
        program = Program(key=key, name=spec.name, org_connection_id=entry.org_connection_id)
        with session.begin_nested():
            session.add(program)
    entry.program_id = program.id
    return program


def previous_values(session: Session, entry: SalesEntry) -> dict[str, Any]:
    """The trigger record as it was in the most recent earlier entry for the same record.

    Inbound entries carry whole records (PushTopic and polling send current values, not
    deltas), so the record as we last saw it is the best "before" for ``changed_to``. Earlier
    means a lower entry id (arrival order). No earlier entry: {} — the value counts as changed.
    """
    if not entry.record_id:
        return {}
    query = (
        select(SalesEntry.records)
        .where(
            SalesEntry.record_id == entry.record_id,
            SalesEntry.sobject_type == entry.sobject_type,
            SalesEntry.org_connection_id.is_(None)
            if entry.org_connection_id is None
            else SalesEntry.org_connection_id == entry.org_connection_id,
        )
        .order_by(SalesEntry.id.desc())
        .limit(1)
    )
    if entry.id is not None:
        query = query.where(SalesEntry.id < entry.id)
    records = session.scalar(query) or {}
    before = records.get(entry.sobject_type)
    return dict(before) if isinstance(before, Mapping) else {}


def _run(
    session: Session,
    entry: SalesEntry,
    org: OrgConfig,
    *,
    actor: str,
    integration_user_id: str | None = None,
    forced_referral_id: int | None = None,
    forced_member_id: int | None = None,
    reviewed: bool = False,
    action: str = "entry.processed",
    extra: Mapping[str, Any] | None = None,
) -> Decision:
    receiver = org.receiver
    if entry.id is None:
        session.add(entry)
        session.flush()
    program = _program(session, entry, org)
    if not entry.previous:
        entry.previous = previous_values(session, entry)
    data = EntryInput(
        sobject=entry.sobject_type,
        record_id=entry.record_id,
        change_type=entry.change_type,
        records=entry.records or {},
        previous=entry.previous or {},
    )
    plan = plan_lookups(data, receiver)
    forced_ids = [forced_referral_id] if forced_referral_id is not None else []
    for _attempt in range(3):
        candidates = find_referrals(session, program.id, plan, referral_ids=forced_ids)
        members = find_members(
            session,
            program.id,
            plan,
            member_ids=[forced_member_id] if forced_member_id is not None else [],
        )
        decision = decide(
            data,
            receiver,
            candidates=candidates,
            members=members,
            integration_user_id=integration_user_id,
            forced_referral_id=forced_referral_id,
            forced_member_id=forced_member_id,
            reviewed=reviewed,
        )
        target = _lock_target(session, decision)
        # Another worker may have changed the referral between the lookup and the lock
        # (PostgreSQL, read committed): decide again on what is now there.
        if target is None or referral_candidate(target) == next(
            c for c in candidates if c.id == target.id
        ):
            break
    _apply(session, entry, decision, program_id=program.id, actor=actor)
    audit.record(
        session,
        actor,
        action,
        "sales_entry",
        entry.id,
        outcome=decision.outcome,
        reasons=decision.reasons,
        referral_id=entry.referral_id,
        **dict(extra or {}),
    )
    if decision.outcome == REVIEW and receiver.process.notify_on_review is not None:
        notify.schedule(session, entry, receiver.process.notify_on_review)
    return decision


def _lock_target(session: Session, decision: Decision) -> Referral | None:
    if decision.outcome != PROCESSED or decision.referral_id is None:
        return None
    return session.scalars(
        select(Referral)
        .where(Referral.id == decision.referral_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


def _history(
    session: Session, referral: Referral, old: str | None, new: str, entry: SalesEntry, actor: str
) -> None:
    session.add(
        ReferralStatusChange(
            referral_id=referral.id, from_status=old, to_status=new, entry_id=entry.id, actor=actor
        )
    )
    audit.record(
        session,
        actor,
        "referral.status_changed",
        "referral",
        referral.id,
        from_status=old,
        to_status=new,
        entry_id=entry.id,
    )


def _apply(
    session: Session, entry: SalesEntry, decision: Decision, *, program_id: int, actor: str
) -> None:
    """Make the decision true in the database and save it on the entry."""
    referral: Referral | None = None
    if decision.outcome == PROCESSED:
        if decision.create_referral is not None:
            referral = _create_referral(session, entry, decision, program_id, actor)
        elif decision.referral_id is not None:
            referral = session.get(Referral, decision.referral_id)
            assert referral is not None  # it was just found and locked
            if decision.to_status and referral.status != decision.to_status:
                old = referral.status
                referral.status = decision.to_status
                referral.ever_qualified = referral.ever_qualified or (
                    decision.to_status in QUALIFYING
                )
                _history(session, referral, old, decision.to_status, entry, actor)
            if decision.field_updates:
                referral.fields = {**(referral.fields or {}), **decision.field_updates}
            for column, value in decision.links.items():
                if getattr(referral, column) is None:
                    setattr(referral, column, value)
    entry.outcome = decision.outcome
    entry.reasons = list(decision.reasons)
    entry.candidates = list(decision.candidates)
    entry.decision = decision.to_dict()
    entry.error = decision.error
    entry.referral_id = referral.id if referral is not None else decision.referral_id
    entry.member_id = decision.member_id
    entry.attempts = (entry.attempts or 0) + 1
    entry.processed_at = utcnow()
    entry.decided_by = actor


def _create_referral(
    session: Session, entry: SalesEntry, decision: Decision, program_id: int, actor: str
) -> Referral:
    # An entry creates at most one referral: reuse it if this entry already made one.
    if entry.referral_id is not None:
        existing = session.get(Referral, entry.referral_id)
        if existing is not None and existing.member_id == decision.member_id:
            return existing
    values = dict(decision.create_referral or {})
    status = decision.to_status or "pending"
    referral = Referral(
        public_id=new_public_id(),
        program_id=program_id,
        member_id=decision.member_id,
        status=status,
        ever_qualified=status in QUALIFYING,
        fields=dict(decision.field_updates),
        **values,
        **decision.links,
    )
    referral.fill_keys()
    session.add(referral)
    session.flush()
    _history(session, referral, None, status, entry, actor)
    audit.record(
        session,
        actor,
        "referral.created",
        "referral",
        referral.id,
        member_id=decision.member_id,
        entry_id=entry.id,
    )
    return referral
