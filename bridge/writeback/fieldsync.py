"""Two-way field sync as effects: Salesforce changes update referrals and members, local edits
queue pushes, and matched records are linked back (rules: `bridge.writeback.sync`, pure).

- `from_salesforce`: after the receiver decided an entry for a referral, the trigger record's
  mapped fields update the referral (and its member) by the sync rules; a `read_write`
  conflict is judged by recency and both values go into the field history (`FieldChange`);
  when the local value wins it is written back.
- `edit_referral` / `edit_member`: a local edit (API, UI) is saved with its time (the local
  change time recency compares against) and queues a `field_update` push onto each Salesforce
  record of the referral for the fields whose rule sends them.
- `link_back`: an entry matched by fuzzy match, member match or a reviewer gets the referral's
  id and the referring member's fields written onto its Lead/Contact, so the next change of
  that record matches directly (`writeback.link_back`, on by default).

Echoes: the bridge's own writes stream back as `own_write` and are skipped before the
receiver; a value we pushed that comes back with someone else's change equals ours and is no
conflict (`sync.inbound`). Fields of a record are compared with the record as last seen (the
previous entry of the record), so an edit elsewhere on the record does not count as an edit
of the field.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bridge import audit
from bridge.config import FieldMapping, OrgConfig, parse_field_ref, referral_add_for
from bridge.store.models import (
    FieldChange,
    Member,
    OrgConnection,
    Program,
    Push,
    Referral,
    SalesEntry,
    utcnow,
)
from bridge.streaming.events import parse_sf_datetime
from bridge.vocabulary import READ_SYNC_RULES
from bridge.writeback import engagement, history, ownership, phases, sync
from bridge.writeback.field_updates import queue_field_update
from bridge.writeback.mapping import is_blank
from bridge.writeback.referrals import (
    DEFAULT_MEMBER_FIELDS,
    IDENTITY_FIELDS,
    REFERRAL_ID_FIELD,
    REFERRAL_IDENTITY,
    build_record,
    member_values,
    referral_values,
)

REFERRAL_COLUMNS = ("first_name", "last_name", "email", "company", "phone", "phase", "owner")
"""Referral attributes a sync or an edit may set (other local names live in `fields`)."""

MEMBER_ATTRIBUTES = ("name", "email", "phone", "url", "external_id", "referral_code")

RECORD_COLUMNS: dict[str, str] = {
    "Lead": "sf_lead_id",
    "Contact": "sf_contact_id",
    "Account": "sf_account_id",
    "Opportunity": "sf_opportunity_id",
}
"""Each object and the referral column holding its record's id."""

LINKED_MATCHES = ("fuzzy", "member", "reviewer")
"""Matches that found the referral without an id on the record: those get linked back."""


@dataclass(frozen=True)
class Target:
    """An org connection the bridge writes to, with its config."""

    connection: OrgConnection
    config: OrgConfig


_T = TypeVar("_T")


def per_config(build: Callable[[OrgConfig, str], _T]) -> Callable[[OrgConfig, str], _T]:
    """`build(config, sobject)` made once per config object and object: the receiver asks
    for these for every entry about a referral. A config is frozen, so a changed one is a new
    object, and built again; the cache lets go of a config with the config itself."""
    cache: dict[tuple[int, str], tuple[weakref.ref[OrgConfig], _T]] = {}

    @functools.wraps(build)
    def cached(config: OrgConfig, sobject: str) -> _T:
        key = (id(config), sobject)
        hit = cache.get(key)
        if hit is not None and hit[0]() is config:
            return hit[1]
        value = build(config, sobject)
        cache[key] = (weakref.ref(config, lambda _ref: cache.pop(key, None)), value)
        return value

    return cached


@per_config
def mappings_for(org_config: OrgConfig, sobject: str) -> tuple[FieldMapping, ...]:
    """The object's mapped fields, then the referral add's member fields (rule `ours`) for any
    member attribute not mapped: the referral add writes them, so edits of a member keep them
    up to date."""
    spec = org_config.writeback.objects.get(sobject)  # type: ignore[call-overload]
    out = list(spec.fields) if spec else []
    if sobject in ("Lead", "Contact"):
        mapped = {m.local for m in out}
        member_fields = {**DEFAULT_MEMBER_FIELDS, **org_config.writeback.referral_add.member_fields}
        out += [m for m in _member_mappings(tuple(member_fields.items())) if m.local not in mapped]
    return tuple(out)


def local_names(org_config: OrgConfig, program: str | None, sobject: str) -> dict[str, str]:
    """Salesforce field → the local name a push to `sobject` writes it from: a referral
    attribute or `fields` key, or `member.<attribute>` — the referral add's record
    (`referrals.build_record`) first, then the object's field mappings."""
    add = referral_add_for(org_config, program)
    out: dict[str, str] = {}
    if sobject == add.create_as:
        out |= {
            sf: local
            for sf, local in REFERRAL_IDENTITY.items()
            if sobject == "Lead" or sf != "Company"
        }
        member_fields = {**DEFAULT_MEMBER_FIELDS, **add.member_fields}
        out |= {sf: sync.MEMBER_PREFIX + attr for attr, sf in member_fields.items() if sf}
        out |= {sf: local for local, sf in add.field_mappings.items()}
    for m in mappings_for(org_config, sobject):
        for sf in m.salesforce:
            out.setdefault(sf, m.local)
    return out


@functools.lru_cache(maxsize=64)
def _member_mappings(member_fields: tuple[tuple[str, str | None], ...]) -> tuple[FieldMapping, ...]:
    """The referral add's member fields as mappings (rule `ours`), built once per set (the
    receiver asks for them twice for every entry about a referral)."""
    return tuple(
        FieldMapping(local=sync.MEMBER_PREFIX + attribute, salesforce=[sf_field], sync="ours")
        for attribute, sf_field in member_fields
        if sf_field
    )


def local_values(referral: Referral, member: Member | None) -> dict[str, Any]:
    values = referral_values(referral)
    for name, value in member_values(member).items():
        values[sync.MEMBER_PREFIX + name] = value
    return values


def _set_local(referral: Referral, member: Member | None, name: str, value: Any) -> bool:
    """Set one local field; False when it is a member field and there is no member."""
    if name.startswith(sync.MEMBER_PREFIX):
        attribute = name[len(sync.MEMBER_PREFIX) :]
        if member is None or attribute not in MEMBER_ATTRIBUTES:
            return False
        setattr(member, attribute, "" if attribute == "name" and value is None else value)
    elif name in REFERRAL_COLUMNS:
        setattr(referral, name, value)
    else:
        extra = dict(referral.fields or {})
        if value is None:
            extra.pop(name, None)
        else:
            extra[name] = value
        referral.fields = extra
    return True


def changed_at(session: Session, referral: Referral) -> dict[str, datetime]:
    """When each local field of the referral (and its member) last changed here."""
    out: dict[str, datetime] = {}
    local = (FieldChange.source == "local") & (FieldChange.outcome == "applied")
    rows = session.execute(
        select(FieldChange.field, func.max(FieldChange.at))
        .where(FieldChange.referral_id == referral.id, local)
        .group_by(FieldChange.field)
    ).all()
    out.update({name: at for name, at in rows if at is not None})
    if referral.member_id is not None:
        rows = session.execute(
            select(FieldChange.field, func.max(FieldChange.at))
            .where(FieldChange.member_id == referral.member_id, local)
            .group_by(FieldChange.field)
        ).all()
        out.update({name: at for name, at in rows if at is not None})
    return out


def last_seen(
    session: Session, org_connection_id: int, sobject: str, record_id: str
) -> dict[str, Any]:
    """The record as the latest entry about it carried it ({} when none did)."""
    records = session.scalar(
        select(SalesEntry.records)
        .where(
            SalesEntry.org_connection_id == org_connection_id,
            SalesEntry.sobject_type == sobject,
            SalesEntry.record_id == record_id,
        )
        .order_by(SalesEntry.id.desc())
        .limit(1)
    )
    record = (records or {}).get(sobject)
    return dict(record) if isinstance(record, Mapping) else {}


# ---- Salesforce -> local ----------------------------------------------------------------------


def from_salesforce(
    session: Session, entry: SalesEntry, referral: Referral, target: Target, *, actor: str
) -> tuple[list[Push], bool]:
    """Apply the entry's record to the referral by the sync rules; returns the pushes made (a
    local value that won a conflict, written back) and whether a local field changed."""
    record = (entry.records or {}).get(entry.sobject_type)
    if not isinstance(record, Mapping) or entry.change_type == "deleted" or not entry.record_id:
        return [], False
    mappings = mappings_for(target.config, entry.sobject_type)
    if not any(m.sync in READ_SYNC_RULES for m in mappings):
        return [], False  # nothing read from Salesforce: no lookups spent
    member = session.get(Member, referral.member_id) if referral.member_id else None
    plan = sync.inbound(
        local_values(referral, member),
        changed_at(session, referral),
        record,
        entry.previous or {},
        parse_sf_datetime(record.get("SystemModstamp")),
        mappings,
    )
    before = local_values(referral, member)
    synced = False
    for name, value in plan.local_updates.items():
        if _set_local(referral, member, name, value):
            synced = True
            history.record(
                session, name, referral=referral, source="salesforce", outcome="applied",
                value=value, previous=before.get(name), actor=actor, entry_id=entry.id,
            )  # fmt: skip
    for conflict in plan.conflicts:
        history.record(
            session, conflict.local, referral=referral, outcome="lost", value=conflict.lost,
            source="local" if conflict.winner == "salesforce" else "salesforce",
            previous=conflict.kept, actor=actor, entry_id=entry.id,
        )  # fmt: skip
    if plan.conflicts:
        audit.record(
            session, actor, "referral.sync_conflict", "referral", referral.id, entry_id=entry.id,
            conflicts=[
                {"field": c.local, "winner": c.winner, "kept": c.kept, "lost": c.lost}
                for c in plan.conflicts
            ],
        )  # fmt: skip
    if not plan.writes:
        return [], synced
    push = queue_field_update(
        session, target.connection, entry.sobject_type, plan.writes,
        record_id=entry.record_id, referral_id=referral.id, change=f"entry:{entry.id}",
    )  # fmt: skip
    return [push], synced


# ---- link-back --------------------------------------------------------------------------------


class _LinkFields(NamedTuple):
    """What a link-back to one object writes, from the config alone."""

    id_field: str  # the field the referral's id goes into
    hands_off: frozenset[str]  # fields mapped `read_only` or `none`: never written


@per_config
def _link_fields_of(org_config: OrgConfig, sobject: str) -> _LinkFields:
    direct = [
        name
        for obj, name in map(parse_field_ref, org_config.receiver.target_match.direct_fields)
        if obj == sobject
    ]
    hands_off = frozenset(
        f for m in mappings_for(org_config, sobject) if m.sync in ("read_only", "none")
        for f in m.salesforce
    )  # fmt: skip
    return _LinkFields(direct[0] if direct else REFERRAL_ID_FIELD, hands_off)


def link_fields(
    org_config: OrgConfig, sobject: str, referral: Referral, member: Member | None, source: str
) -> dict[str, Any]:
    """What a link-back writes: the referral's id into the object's first direct-match field
    (Referral_ID__c by default) and the referral-tracking and member fields of the referral
    add — never a field mapped `read_only` or `none`."""
    id_field, hands_off = _link_fields_of(org_config, sobject)
    record = build_record(
        referral_values(referral), member_values(member), source=source,
        add=org_config.writeback.referral_add, sobject=sobject,
    )  # fmt: skip
    fields = {k: v for k, v in record.items() if k not in IDENTITY_FIELDS}
    if id_field != REFERRAL_ID_FIELD:
        fields.pop(REFERRAL_ID_FIELD, None)
    fields[id_field] = referral.public_id
    return {k: v for k, v in fields.items() if k not in hands_off}


def link_back(
    session: Session,
    entry: SalesEntry,
    match: str | None,
    referral: Referral,
    target: Target,
) -> Push | None:
    """Queue the link-back push for an entry matched without an id on its record."""
    if not target.config.writeback.link_back or match not in LINKED_MATCHES:
        return None
    sobject = entry.sobject_type
    record = (entry.records or {}).get(sobject)
    if sobject not in ("Lead", "Contact") or not entry.record_id or entry.change_type == "deleted":
        return None
    if isinstance(record, Mapping) and record.get("IsConverted") is True:
        return None  # a converted Lead cannot be updated; its Contact carries the link
    member = session.get(Member, referral.member_id) if referral.member_id else None
    program = session.get(Program, referral.program_id)
    fields = link_fields(target.config, sobject, referral, member, program.name if program else "")
    seen = dict(record) if isinstance(record, Mapping) else {}
    if all(k in seen and not is_blank(seen[k]) and seen[k] == v for k, v in fields.items()):
        return None  # already linked
    return queue_field_update(
        session, target.connection, sobject, fields, record_id=entry.record_id,
        referral_id=referral.id, change="link_back",
    )  # fmt: skip


# ---- local -> Salesforce ----------------------------------------------------------------------


def to_salesforce(
    session: Session, referral: Referral, changed: Mapping[str, Any], targets: Sequence[Target]
) -> list[Push]:
    """Queue the writes a local change makes onto each Salesforce record of the referral (a
    converted Lead is left alone once the referral has its Contact)."""
    pushes: list[Push] = []
    stamp = utcnow().isoformat()
    for target in targets:
        for sobject, column in RECORD_COLUMNS.items():
            record_id = getattr(referral, column)
            if not record_id or (sobject == "Lead" and referral.sf_contact_id):
                continue
            current = last_seen(session, target.connection.id, sobject, record_id)
            writes = sync.outbound(changed, current, mappings_for(target.config, sobject))
            writes |= phases.outbound(target.config, sobject, changed)
            # a new owner rep: its user's OwnerId is set at send time (bridge.writeback.lead_owners)
            owner = changed.get(ownership.OWNER) if target.config.users else None
            if writes or owner:
                pushes.append(
                    queue_field_update(
                        session,
                        target.connection,
                        sobject,
                        writes,
                        record_id=record_id,
                        referral_id=referral.id,
                        change=f"local:{stamp}",
                        owner=owner,
                    )  # fmt: skip
                )
    return pushes


def edit_referral(
    session: Session,
    referral: Referral,
    changes: Mapping[str, Any],
    targets: Sequence[Target],
    *,
    actor: str,
) -> list[Push]:
    """A local edit of a referral's fields: saved, timed, audited, and pushed by the rules.
    `changes` holds referral columns and `fields` keys (None removes a `fields` key)."""
    before = local_values(referral, None)
    changed = {k: v for k, v in changes.items() if before.get(k) != v}
    for name, value in changed.items():
        _set_local(referral, None, name, value)
        history.record(
            session, name, referral=referral, source="local", outcome="applied", value=value,
            previous=before.get(name), actor=actor,
        )  # fmt: skip
    if phases.PHASE in changed and targets:
        engagement.end_cycle(
            session, referral, targets[0].config, before.get(phases.PHASE), actor=actor,
            source="local",
        )  # fmt: skip
    pushes = to_salesforce(session, referral, changed, targets) if changed else []
    audit.record(
        session, actor, "referral.update", "referral", referral.id, fields=sorted(changed),
        push_ids=[p.id for p in pushes],
    )  # fmt: skip
    return pushes


def edit_member(
    session: Session,
    member: Member,
    changes: Mapping[str, Any],
    targets_of: Mapping[int, Sequence[Target]],
    *,
    actor: str,
) -> list[Push]:
    """A local edit of a member: saved, audited, and pushed onto the Salesforce records of the
    member's referrals (`targets_of`: program id → its orgs)."""
    before = member_values(member)
    changed = {k: v for k, v in changes.items() if before.get(k) != v}
    for name, value in changed.items():
        setattr(member, name, "" if name == "name" and value is None else value)
    for name, value in changed.items():
        history.record(
            session, sync.MEMBER_PREFIX + name, source="local", outcome="applied",
            value=value, previous=before.get(name), actor=actor, member_id=member.id,
        )  # fmt: skip
    pushes: list[Push] = []
    if changed:
        named = {sync.MEMBER_PREFIX + k: v for k, v in changed.items()}
        for referral in session.scalars(
            select(Referral).where(Referral.member_id == member.id).order_by(Referral.id)
        ):
            targets = targets_of.get(referral.program_id, [])
            pushes += to_salesforce(session, referral, named, targets)
    audit.record(
        session, actor, "member.update", "member", member.id, fields=sorted(changed),
        push_ids=[p.id for p in pushes],
    )  # fmt: skip
    return pushes
