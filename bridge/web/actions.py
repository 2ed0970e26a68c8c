"""What reviewers and API clients do to entries, referrals and pushes — one place for the UI
and the API, each action audited in the same transaction as the change.

Deciding entries is the receiver's job (`bridge.receiver.service`): approve, reject and retry
call it, and it writes their audit records. Writing to Salesforce is the writeback's job: a
Push row is saved first (state `pending`, `bridge.writeback.queue_*`) and enqueued on the
`outbound` rq queue after the transaction commits (`enqueue_pushes`).

Longer than most modules on purpose: every action the UI and the API share is here, so
neither grows a second version of one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

from flask import abort
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bridge import audit, writeback
from bridge.config import BridgeConfig, OrgConfig
from bridge.errors import UsageError
from bridge.matchkeys import email_key
from bridge.receiver import service
from bridge.salesforce import fieldcache
from bridge.store import get_or_create_program
from bridge.store.models import (
    InboundEvent,
    Member,
    OrgConnection,
    Program,
    Push,
    Referral,
    SalesEntry,
    utcnow,
)
from bridge.vocabulary import (
    FIELD_NAME_PATTERN,
    OPEN_OUTCOMES,
    REPUSHABLE,
    REVIEW,
    STREAMED_OBJECTS,
)
from bridge.web import editing, fitcheck
from bridge.web.extensions import org_config, store, web
from bridge.writeback import gate, phases

log = logging.getLogger(__name__)


class ActionError(UsageError):
    """The request cannot be done as asked; `status` is its HTTP status (400: bad input)."""

    status = 400


class NotFound(ActionError):
    """No such entry, push or referral."""

    code = "not_found"
    status = 404


class Conflict(ActionError):
    """The item's state forbids the action (e.g. approving a processed entry), or a duplicate."""

    code = "conflict"
    status = 409


class Unprocessable(ActionError):
    """Well-formed input that names something that does not exist or cannot be used."""

    code = "unprocessable"
    status = 422


# ---- lookups --------------------------------------------------------------------------------


def get_entry(s: Session, entry_id: int) -> SalesEntry:
    entry = s.get(SalesEntry, entry_id)
    if entry is None:
        raise NotFound(f"no entry with id {entry_id}")
    return entry


def get_push(s: Session, push_id: int) -> Push:
    push = s.get(Push, push_id)
    if push is None:
        raise NotFound(f"no push with id {push_id}")
    return push


def entry_org_name(s: Session, entry: SalesEntry) -> str | None:
    if entry.org_connection_id is None:
        return None
    conn = s.get(OrgConnection, entry.org_connection_id)
    return conn.name if conn else None


def _org_config(name: str | None) -> OrgConfig:
    """The org's config; a missing config file or org is a 422 that says so, not a 500."""
    result: OrgConfig = _receiver_call(org_config, name)
    return result


def _config() -> BridgeConfig | None:
    """The config file (None when SFBRIDGE_CONFIG is not set); a broken file is a 422."""
    result: BridgeConfig | None = _receiver_call(web().config)
    return result


def _entry_org(s: Session, entry: SalesEntry) -> OrgConfig:
    return _org_config(entry_org_name(s, entry))


def _require_outcome(entry: SalesEntry, allowed: tuple[str, ...], action: str) -> None:
    if entry.outcome not in allowed:
        raise Conflict(
            f"entry {entry.id} is {entry.outcome}; only {' or '.join(allowed)} entries can be "
            f"{action}",
            code="entry_state",
        )


def _receiver_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a receiver action (or a config lookup); its UsageErrors (e.g. nothing to approve,
    no config file) become 422s."""
    try:
        result = fn(*args, **kwargs)
    except ActionError:
        raise
    except UsageError as exc:
        raise Unprocessable(
            exc.message,
            code=exc.code if exc.code != "usage_error" else "unprocessable",
            fields=exc.fields,
        ) from None
    return result


# ---- entry actions (decided by bridge.receiver.service) -------------------------------------


def approve_entry(s: Session, entry: SalesEntry, *, actor: str) -> SalesEntry:
    _require_outcome(entry, (REVIEW,), "approved")
    return _receiver_call(service.approve_entry, s, entry, _entry_org(s, entry), actor=actor)


def reject_entry(
    s: Session, entry: SalesEntry, *, actor: str, note: str | None = None
) -> SalesEntry:
    _require_outcome(entry, OPEN_OUTCOMES, "rejected")
    return _receiver_call(service.reject_entry, s, entry, actor=actor, note=note)


def retry_entry(
    s: Session,
    entry: SalesEntry,
    *,
    actor: str,
    fields: dict[str, dict[str, Any]] | None = None,
    referral_id: int | None = None,
) -> SalesEntry:
    """Decide the entry again, optionally with edited record fields or a chosen referral.

    `fields` is `{"Lead": {"Email": "..."}}`: values that replace (or add to) the record's.
    """
    _require_outcome(entry, OPEN_OUTCOMES, "retried")
    if referral_id is not None and s.get(Referral, referral_id) is None:
        raise Unprocessable(f"no referral with id {referral_id}", fields=["referral_id"])
    _check_fields(s, entry, fields or {})
    return _receiver_call(
        service.retry_entry,
        s,
        entry,
        _entry_org(s, entry),
        actor=actor,
        fields=fields,
        referral_id=referral_id,
    )


def edit_entry(
    s: Session, entry: SalesEntry, *, actor: str, fields: dict[str, dict[str, Any]]
) -> SalesEntry:
    """Change record fields of a waiting or failed entry without deciding it again."""
    _require_outcome(entry, OPEN_OUTCOMES, "edited")
    _check_fields(s, entry, fields)
    before = {
        obj: {k: (entry.records.get(obj) or {}).get(k) for k in vals}
        for obj, vals in fields.items()
    }
    records = {k: (dict(v) if isinstance(v, dict) else v) for k, v in entry.records.items()}
    for obj, values in fields.items():
        records[obj] = {**(records.get(obj) or {}), **values}
    entry.records = records  # a new dict so the JSON column is seen as changed
    audit.record(s, actor, "entry.edited", "sales_entry", entry.id, before=before, after=fields)
    return entry


_FIELD_NAME = re.compile(FIELD_NAME_PATTERN)


def known_fields(s: Session, entry: SalesEntry) -> dict[str, editing.KnownFields]:
    """The field names a reviewer may set on the entry's records (see bridge.web.editing)."""
    name = entry_org_name(s, entry)
    try:
        org: OrgConfig | None = _org_config(name)
    except ActionError:  # no config: the record's own fields and the describe are all known
        org = None
    described = fieldcache.load_field_names(web().settings.instance_dir, name) if name else {}
    return editing.known_fields(entry.records or {}, org, described)


def _check_fields(s: Session, entry: SalesEntry, fields: dict[str, dict[str, Any]]) -> None:
    known = known_fields(s, entry) if fields else {}
    for obj, values in fields.items():
        if obj not in STREAMED_OBJECTS:
            raise ActionError(
                f"unknown object '{obj}'", code="validation_error", fields=[f"fields.{obj}"]
            )
        for name, value in values.items():
            if not _FIELD_NAME.fullmatch(name) or name == "Id":
                raise ActionError(
                    f"'{obj}.{name}' cannot be edited",
                    code="validation_error",
                    fields=[f"fields.{obj}.{name}"],
                )
            if value is not None and not isinstance(value, (str, int, float, bool)):
                raise ActionError(
                    f"'{obj}.{name}' must be a plain value",
                    code="validation_error",
                    fields=[f"fields.{obj}.{name}"],
                )
        if not entry.records.get(obj):
            raise Unprocessable(f"this entry has no {obj} record to edit", fields=[f"fields.{obj}"])
        for name in values:
            if problem := editing.unknown_field(obj, name, known[obj]):
                raise ActionError(problem, code="unknown_field", fields=[f"fields.{obj}.{name}"])


def _content_key(data: dict[str, Any]) -> str:
    content = {k: data.get(k) for k in ("sobject_type", "record", "related", "previous")}
    content["change_type"] = data.get("change_type", "updated")
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def submit_entry(s: Session, data: dict[str, Any], *, actor: str) -> tuple[SalesEntry, bool]:
    """Store a change sent directly (Flow/Apex) like a streamed one, then decide it.

    Idempotent on (org, record id, SystemModstamp): sending the same change twice returns the
    first entry.
    """
    org_name: str = data["org"]
    conn = s.scalar(select(OrgConnection).where(OrgConnection.name == org_name))
    if conn is None:
        raise Unprocessable(
            f"org '{org_name}' is not connected (run `sfbridge org connect {org_name}`)",
            code="org_not_connected",
            fields=["org"],
        )
    org = _org_config(org_name)
    sobject: str = data["sobject_type"]
    record: dict[str, Any] = dict(data["record"])
    record_id = record["Id"]
    # Without a SystemModstamp the same content is the same change (never a random key: a
    # client sending again must get the first entry back, not a second one).
    stamp = record.get("SystemModstamp") or _content_key(data)
    change_key = f"api:{sobject}:{record_id}:{stamp}"
    existing = s.scalar(
        select(InboundEvent).where(
            InboundEvent.org_connection_id == conn.id, InboundEvent.change_key == change_key
        )
    )
    if existing is not None:
        entry = s.scalar(select(SalesEntry).where(SalesEntry.inbound_event_id == existing.id))
        if entry is not None:
            return entry, False
    records: dict[str, Any] = dict.fromkeys(STREAMED_OBJECTS)
    records.update(data.get("related") or {})
    records[sobject] = record
    event = InboundEvent(
        org_connection_id=conn.id,
        channel="api",
        replay_id=None,
        change_key=change_key,
        source="api",
        sobject_type=sobject,
        record_id=record_id,
        change_type=data.get("change_type", "updated"),
        payload={
            "record": record,
            "related": data.get("related") or {},
            "previous": data.get("previous") or {},
        },
        state="done",
        received_at=utcnow(),
        processed_at=utcnow(),
    )
    s.add(event)
    s.flush()
    entry = SalesEntry(
        org_connection_id=conn.id,
        inbound_event_id=event.id,
        source="api",
        sobject_type=sobject,
        record_id=record_id,
        change_type=event.change_type,
        raw=event.payload,
        records=records,
        previous=data.get("previous") or {},
        outcome="new",
    )
    s.add(entry)
    s.flush()
    audit.record(
        s,
        actor,
        "entry.submitted",
        "sales_entry",
        entry.id,
        sobject_type=sobject,
        record_id=record_id,
    )
    entry = _receiver_call(
        service.process_entry, s, entry, org, integration_user_id=conn.integration_user_id
    )
    return entry, True


# ---- referrals, members, activities ---------------------------------------------------------


def ensure_program(s: Session, key: str) -> Program:
    """The program `key`: from the store, or created from the config file on first use."""
    program = s.scalar(select(Program).where(Program.key == key))
    if program is not None:
        return program
    cfg = _config()
    for org_name, org in cfg.orgs.items() if cfg else []:
        for p in org.programs:
            if p.key == key:
                conn = s.scalar(select(OrgConnection).where(OrgConnection.name == org_name))
                return get_or_create_program(s, key, p.name, conn.id if conn else None)
    raise Unprocessable(f"no program '{key}'", code="unknown_program", fields=["program"])


def _find_member(s: Session, program: Program, ref: dict[str, Any]) -> Member:
    query = select(Member).where(Member.program_id == program.id)
    if ref.get("id") is not None:
        member = s.get(Member, ref["id"])
        member = member if member is not None and member.program_id == program.id else None
    elif ref.get("external_id"):
        member = s.scalar(query.where(Member.external_id == ref["external_id"]))
    elif ref.get("referral_code"):
        member = s.scalar(query.where(Member.referral_code == ref["referral_code"]))
    elif ref.get("email"):
        key = email_key(ref["email"])  # the stored key, as matching uses it
        member = s.scalar(query.where(Member.email_key == key)) if key else None
    else:
        raise ActionError(
            "name the member by id, external_id, referral_code or email",
            code="validation_error",
            fields=["member"],
        )
    if member is None:
        raise Unprocessable(
            f"no member {ref} in program '{program.key}'", code="unknown_member", fields=["member"]
        )
    return member


def create_member(s: Session, data: dict[str, Any], *, actor: str) -> Member:
    program = ensure_program(s, data["program"])
    for col in ("external_id", "referral_code"):
        if data.get(col) and s.scalar(
            select(Member).where(Member.program_id == program.id, getattr(Member, col) == data[col])
        ):
            raise Conflict(
                f"a member with {col} '{data[col]}' exists in this program",
                code="duplicate",
                fields=[col],
            )
    member = Member(
        program_id=program.id,
        external_id=data.get("external_id"),
        referral_code=data.get("referral_code"),
        name=data.get("name") or "",
        email=data.get("email"),
        phone=data.get("phone"),
        url=data.get("url"),
        fields=dict(data.get("fields") or {}),
    )
    s.add(member)
    s.flush()
    audit.record(s, actor, "member.create", "member", member.id, program=program.key)
    return member


ROUTING_ATTRIBUTES = ("score", "meeting_owner", "routed_owner", "closed_by",
                      "conversation_closed_at")  # fmt: skip
"""What lead routing reads from a referral, set by the API on create and by PATCH."""


def _program_org(s: Session, program: Program) -> tuple[OrgConnection, OrgConfig] | None:
    """The program's connected org and its config, or None when it has none yet."""
    return gate.program_target(s, _config(), program.id)


def check_phase(org: OrgConfig | None, phase: str | None) -> None:
    """A phase given to the API must be one of the org's phases (`writeback.sales.phases`)."""
    if phase is None:
        return
    why = (
        phases.unknown_phase(org, phase)
        if org is not None
        else "the referral's program is not connected to a Salesforce org: it has no phases"
    )
    if why:
        raise Unprocessable(why, code="unknown_phase", fields=["phase"])


def check_owner(org: OrgConfig | None, owner: str | None) -> None:
    """An owner given to the API must be a rep of the org's user mapping (`users:`)."""
    if owner is None:
        return
    if org is None:
        why = "the referral's program is not connected to a Salesforce org: it has no users"
    elif owner not in org.users:
        known = ", ".join(sorted(org.users)) or "none"
        why = f"owner '{owner}' is not a rep of the org's users: (known: {known})"
    else:
        return
    raise Unprocessable(why, code="unknown_owner", fields=["owner"])


def create_referral(
    s: Session, data: dict[str, Any], *, actor: str
) -> tuple[Referral, Push | None]:
    """Save a referral and the pending push that writes it to its program's org (if any)."""
    program = ensure_program(s, data["program"])
    if data.get("phase") is not None or data.get("owner") is not None:
        found = _program_org(s, program)
        check_phase(found[1] if found else None, data.get("phase"))
        check_owner(found[1] if found else None, data.get("owner"))
    if data.get("external_id") and s.scalar(
        select(Referral).where(Referral.external_id == data["external_id"])
    ):
        raise Conflict(
            f"a referral with external_id '{data['external_id']}' exists",
            code="duplicate",
            fields=["external_id"],
        )
    member = _find_member(s, program, data["member"]) if data.get("member") else None
    referral = Referral(
        public_id=service.new_public_id(),  # the *_key columns are filled on insert
        external_id=data.get("external_id"),
        program_id=program.id,
        member_id=member.id if member else None,
        first_name=data.get("first_name"),
        last_name=data.get("last_name"),
        email=data.get("email"),
        company=data.get("company"),
        phone=data.get("phone"),
        status="pending",
        fields=dict(data.get("fields") or {}),
        phase=data.get("phase"),
        owner=data.get("owner"),
        **{k: data.get(k) for k in ROUTING_ATTRIBUTES},
    )
    s.add(referral)
    s.flush()
    target = _program_org(s, program)
    push = None
    if target is not None:
        # Refused at the door even when routing holds the push back (criteria, delay).
        sobject, record = writeback.referral_record(s, target[1], referral)
        require_fit(target[0].name, sobject, record, fitcheck.REFERRAL_INPUT)
        # Routing decides whether (criteria) and when (delay) the referral add push is made.
        push = gate.route_referral(s, target[0], target[1], referral)
    audit.record(
        s,
        actor,
        "referral.create",
        "referral",
        referral.id,
        program=program.key,
        push_id=push.id if push else None,
    )
    return referral, push


def connected_org(s: Session, org_name: str) -> tuple[OrgConnection, OrgConfig]:
    """The connection and config of an org named in a request body (`org`), else a 422."""
    cfg = _config()
    conn = s.scalar(select(OrgConnection).where(OrgConnection.name == org_name))
    if cfg is None or org_name not in cfg.orgs or conn is None:
        raise Unprocessable(
            f"org '{org_name}' is not a connected org of this bridge",
            code="unknown_org",
            fields=["org"],
        )
    return conn, cfg.orgs[org_name]


def referral_named(s: Session, referral_id: int) -> Referral:
    """A referral named in a request body (`referral_id`), else a 422."""
    referral = s.get(Referral, referral_id)
    if referral is None:
        raise Unprocessable(
            f"no referral with id {referral_id}", code="unknown_referral", fields=["referral_id"]
        )
    return referral


def create_activity(s: Session, data: dict[str, Any], *, actor: str) -> tuple[Push, bool]:
    """Save an activity push. The same content twice is absorbed (200 with the first push);
    the same activity id with new content is a new push that updates the Task/Event (upsert by
    SFBridge_Activity_Id__c)."""
    conn, org_cfg = connected_org(s, data["org"])
    if data.get("referral_id") is not None:
        referral_named(s, data["referral_id"])
    activity = {k: v for k, v in data.items() if k != "org"}
    # queue_activity returns the saved push for content it has seen; a new row has a new id.
    before = s.scalar(select(func.max(Push.id))) or 0
    try:
        push = writeback.queue_activity(s, conn, org_cfg, activity)
    except UsageError as exc:
        raise ActionError(exc.message, code="validation_error", fields=exc.fields) from None
    created = push.id > before
    if created:
        require_fit(
            data["org"],
            push.sobject_type,
            push.payload.get("fields") or {},
            fitcheck.ACTIVITY_INPUT,
        )
        audit.record(s, actor, "activity.create", "push", push.id, kind=data["kind"])
    return push, created


# ---- pushes ---------------------------------------------------------------------------------


def repush(s: Session, push: Push, *, actor: str, fields: dict[str, Any] | None = None) -> Push:
    """Put a failed or skipped push back to pending (the writeback audits it), with `fields`
    overriding Salesforce fields of the write once they fit the org's fields."""
    if push.state not in REPUSHABLE:
        raise Conflict(
            f"push {push.id} is {push.state}; only failed or skipped pushes can be repushed",
            code="push_state",
        )
    if fields:
        conn = s.get(OrgConnection, push.org_connection_id) if push.org_connection_id else None
        if conn is not None:
            require_fit(conn.name, push.sobject_type, fields, {})
    result: Push = writeback.repush(s, push.id, actor=actor, fields=fields)
    return result


def require_fit(org: str, sobject: str, record: dict[str, Any], inputs: dict[str, str]) -> None:
    """400 `value_does_not_fit` for a write the org's fields cannot take (`bridge.web.fitcheck`)."""
    refused = fitcheck.misfit(org, sobject, record, inputs)
    if refused:
        raise ActionError(refused[0], code="value_does_not_fit", fields=refused[1])


def enqueue_pushes(push_ids: list[int]) -> str:
    """Enqueue the send job for committed pushes. Returns a sentence for the user."""
    if not push_ids:
        return ""
    conn = web().redis()
    if conn is None:
        return "saved as pending: no Redis configured (SFBRIDGE_REDIS_URL), so nothing is queued"
    try:
        writeback.request_drain_for(store(), conn, push_ids)
    except Exception as exc:  # Redis down: the push is saved; `enqueue_pending` finds it later
        log.warning("could not enqueue pushes %s: %s", push_ids, exc)
        return "saved as pending: the job queue is unavailable; it is sent when the queue is back"
    return "queued for sending"


def get_entry_or_404(s: Session, entry_id: int) -> SalesEntry:
    """For the UI: a missing entry is a 404 page, not an action error."""
    entry = s.get(SalesEntry, entry_id)
    if entry is None:
        abort(404)
    return entry
