"""Referral add: a referral written to Salesforce as a Lead or Contact (`writeback.referral_add`).

Sending a batch of referral pushes:

1. the Lead/Contact fields are built from the referral as it is now (so fixing a referral and
   repushing sends the fix): name, email, phone, company (Leads), the referral-tracking fields,
   the referring member's fields and the configured `field_mappings`;
2. one query per object looks up existing records by email for the whole batch (``IN``);
3. per referral (`decide`, pure): no existing record → upsert by ``Referral_ID__c`` on
   `create_as` (a re-push updates the same record); a record that already carries this
   referral's id → update it; another record with the email → `on_existing_email`:
   ``update`` writes the referral fields onto it (name, company and phone only where blank),
   ``skip`` skips the push, ``deny`` denies the referral with reason ``existing_email`` unless
   that record was created in the last 60 minutes (then it is updated: it is most likely the
   same person arriving through a form a moment earlier) — but a record that already carries
   another referral's id is never "just arrived": that referral is denied.
   Referrals of one batch sharing an email are sent one after the other, so the second sees
   the record the first made.

Lead requires LastName and Company. When the referral has none, both get ``[not provided]``,
the placeholder Salesforce's own Web-to-Lead uses, so reports and admins recognise it (an email
domain would invent a company, e.g. "gmail.com").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from simple_salesforce import format_soql
from sqlalchemy.orm import Session

from bridge.config import OrgConfig, ReferralAdd, referral_add_for
from bridge.store.models import Member, OrgConnection, Program, Push, Referral
from bridge.vocabulary import SyncMode
from bridge.writeback import phases
from bridge.writeback.client import LOOKUP_CHUNK, Writer, chunks
from bridge.writeback.mapping import is_blank, plan_fields, salesforce_email, sync_action
from bridge.writeback.pushes import queue_push

NOT_PROVIDED = "[not provided]"
"""Placeholder for required Lead fields the referral lacks (as Salesforce Web-to-Lead does)."""

RECENT_RECORD = timedelta(minutes=60)
"""A record created this recently is updated instead of denying the referral."""

REFERRAL_ID_FIELD = "Referral_ID__c"

DEFAULT_MEMBER_FIELDS: dict[str, str] = {
    "name": "Referring_Member_Name__c",
    "email": "Referring_Member_Email__c",
    "external_id": "Referring_Member_External_ID__c",
    "phone": "Referring_Member_Phone__c",
    "url": "Referring_Member_URL__c",
    "referral_code": "Referring_Member_Code__c",
}
"""Member attribute → Salesforce field; `referral_add.member_fields` overrides entries."""

# Identity fields a referral brings; on an existing record they are written only where blank.
IDENTITY_FIELDS = ("FirstName", "LastName", "Email", "Phone", "Company")

REFERRAL_IDENTITY = {
    "FirstName": "first_name", "LastName": "last_name", "Email": "email", "Phone": "phone",
    "Company": "company",
}  # fmt: skip
"""Each identity field and the referral attribute `build_record` writes it from (Company on
Leads only)."""

REFERRAL_ATTRIBUTES = (
    "public_id",
    "external_id",
    "first_name",
    "last_name",
    "email",
    "company",
    "phone",
    "status",
)


TOUCHES = ("meeting_owner", "routed_owner", "closed_by")
"""The reps who touched the conversation, by role: what the Lead owner priority reads."""

ENGAGEMENT = ("phase", "owner")
"""The sales engagement: the lead phase and the owner rep (bridge.writeback.engagement)."""


def referral_values(referral: Referral) -> dict[str, Any]:
    """The referral's local values by name: its columns plus its `fields` (columns win)."""
    values: dict[str, Any] = dict(referral.fields or {})
    for name in REFERRAL_ATTRIBUTES + TOUCHES + ENGAGEMENT:
        values[name] = getattr(referral, name)
    return values


def member_values(member: Member | None) -> dict[str, Any]:
    """The member's values by name: its custom `fields` plus its attributes (these win)."""
    if member is None:
        return {}
    return {
        **(member.fields or {}),
        "name": member.name,
        "email": member.email,
        "external_id": member.external_id,
        "phone": member.phone,
        "url": member.url,
        "referral_code": member.referral_code,
    }


def build_record(
    referral: Mapping[str, Any],
    member: Mapping[str, Any],
    *,
    source: str | None,
    add: ReferralAdd,
    sobject: str,
) -> dict[str, Any]:
    """The Lead/Contact fields for one referral (blank values left out)."""
    record: dict[str, Any] = {
        "FirstName": referral.get("first_name"),
        "LastName": referral.get("last_name") or NOT_PROVIDED,
        "Email": referral.get("email"),
        "Phone": referral.get("phone"),
        REFERRAL_ID_FIELD: referral.get("public_id"),
        "Referral_Code__c": member.get("referral_code"),
        "Referral_Source__c": referral.get("source") or source,
        "Referral_Source_Note__c": referral.get("source_note"),
        "Referral_URL__c": referral.get("referral_url"),
    }
    if sobject == "Lead":
        record["Company"] = referral.get("company") or NOT_PROVIDED
    member_fields = {**DEFAULT_MEMBER_FIELDS, **add.member_fields}
    for attribute, sf_field in member_fields.items():
        if sf_field:
            record[sf_field] = member.get(attribute)
    for local, sf_field in add.field_mappings.items():
        record[sf_field] = referral.get(local)
    return {k: v for k, v in record.items() if not is_blank(v)}


def idempotency_key(org: OrgConnection, referral: Referral) -> str:
    return f"referral:{org.id}:{referral.public_id}"


def referral_record(
    session: Session, org_config: OrgConfig, referral: Referral
) -> tuple[str, dict[str, Any]]:
    """The object and fields the referral add writes for `referral`, as it is now."""
    program = session.get(Program, referral.program_id)
    add = referral_add_for(org_config, program.key if program else None)
    member = session.get(Member, referral.member_id) if referral.member_id else None
    record = build_record(
        referral_values(referral),
        member_values(member),
        source=program.name if program else None,
        add=add,
        sobject=add.create_as,
    ) | phases.outbound(org_config, add.create_as, {phases.PHASE: referral.phase})
    return add.create_as, record


def queue_referral_add(
    session: Session, org: OrgConnection, org_config: OrgConfig, referral: Referral
) -> Push:
    """Save the pending push that writes `referral` to Salesforce (once per referral and org)."""
    sobject, record = referral_record(session, org_config, referral)
    push, _created = queue_push(
        session,
        kind="referral",
        idempotency_key=idempotency_key(org, referral),
        sobject_type=sobject,
        payload={"fields": record, "email": referral.email},
        org_connection_id=org.id,
        external_id_field=REFERRAL_ID_FIELD,
        external_id=referral.public_id,
        referral_id=referral.id,
    )
    return push


# --------------------------------------------------------------------------------------------
# Lookup (batched) and decision (pure)
# --------------------------------------------------------------------------------------------


def lookup_objects(add: ReferralAdd) -> list[str]:
    """Where an existing person is looked for: a Contact is never duplicated as a Lead."""
    return ["Lead", "Contact"] if add.create_as == "Lead" else ["Contact"]


def lookup_fields(sobject: str, org_config: OrgConfig) -> list[str]:
    fields = ["Id", "Email", "CreatedDate", REFERRAL_ID_FIELD, "FirstName", "LastName", "Phone"]
    fields.append("Company" if sobject == "Lead" else "AccountId")
    sync = org_config.writeback.objects.get(sobject)  # type: ignore[call-overload]
    for mapping in sync.fields if sync else []:
        fields += [f for f in mapping.salesforce if f not in fields]
    return fields


def find_existing(
    writer: Writer,
    org_config: OrgConfig,
    emails: Sequence[str],
    adds: Sequence[ReferralAdd] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Existing Leads (not converted) and Contacts by normalized email, oldest first; the
    objects are those any of `adds` (the programs' settings; default the org's) looks in."""
    keys = sorted({k for k in (salesforce_email(e) for e in emails) if k})
    wanted = {o for add in adds or [org_config.writeback.referral_add] for o in lookup_objects(add)}
    soqls: list[tuple[str, str]] = []
    for sobject in [o for o in ("Lead", "Contact") if o in wanted]:
        fields = lookup_fields(sobject, org_config)
        for part in chunks(keys, LOOKUP_CHUNK):
            soql = format_soql(
                "SELECT {fields:literal} FROM {sobject:literal} WHERE {converted:literal}"
                "Email IN {emails} ORDER BY CreatedDate ASC, Id ASC",
                fields=", ".join(fields),
                sobject=sobject,
                converted="IsConverted = false AND " if sobject == "Lead" else "",
                emails=part,
            )
            soqls.append((sobject, soql))
    found: dict[str, list[dict[str, Any]]] = {}
    # Lead and Contact lookups in one composite call per five queries
    answers = writer.queries([q for _, q in soqls])
    for (found_in, _soql), records in zip(soqls, answers, strict=True):
        for record in records:
            record.pop("attributes", None)
            record["_type"] = found_in
            key = salesforce_email(record.get("Email"))
            if key:
                found.setdefault(key, []).append(record)
    return found


@dataclass(frozen=True)
class ReferralDecision:
    action: Literal["upsert", "update", "skip", "deny"]
    sobject: str
    fields: dict[str, Any] = field(default_factory=dict)
    record_id: str | None = None
    reason: str | None = None
    message: str | None = None
    local_updates: dict[str, Any] = field(default_factory=dict)
    account_id: str | None = None  # the existing Contact's account, if it has one


def parse_sf_datetime(value: Any) -> datetime | None:
    if not value:
        return None
    text = str(value).replace("Z", "+00:00")
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(text, fmt).astimezone(UTC)
        except ValueError:
            continue
    return None


def pick_existing(
    public_id: str | None, candidates: Sequence[Mapping[str, Any]], create_as: str
) -> dict[str, Any] | None:
    if not candidates:
        return None
    ours = [c for c in candidates if public_id and c.get(REFERRAL_ID_FIELD) == public_id]
    if ours:
        return dict(ours[0])
    same_type = [c for c in candidates if c.get("_type") == create_as]
    return dict((same_type or list(candidates))[0])


def decide(
    *,
    referral: Mapping[str, Any],
    record: Mapping[str, Any],
    candidates: Sequence[Mapping[str, Any]],
    org_config: OrgConfig,
    now: datetime,
    add: ReferralAdd | None = None,
) -> ReferralDecision:
    """What to do with one referral, given the records that already have its email (`add`:
    the settings of its program, default the org's)."""
    add = add or org_config.writeback.referral_add
    if add.on_existing_email == "overwrite_leads":
        # Leads only: a Contact with the email is never written, nor duplicated as a Lead
        leads = [c for c in candidates if c.get("_type") == "Lead"]
        if not leads and candidates:
            contact = candidates[0]
            return ReferralDecision(
                "skip", "Contact", record_id=contact["Id"], reason="existing_email",
                message=f"Contact {contact['Id']} already has the email "
                f"{contact.get('Email')}; overwrite_leads writes Leads only",
            )  # fmt: skip
        candidates = leads
    public_id = referral.get("public_id")
    existing = pick_existing(public_id, candidates, add.create_as)
    sobject = str(existing["_type"]) if existing else add.create_as
    sync = org_config.writeback.objects.get(sobject)  # type: ignore[call-overload]
    mode: SyncMode = sync.sync_mode if sync else "create_update"
    action = sync_action(mode, existing["Id"] if existing else None)
    if action == "skip":
        reason = "sync_disabled" if mode == "disabled" else "no_existing_record"
        return ReferralDecision(
            "skip",
            sobject,
            reason=reason,
            message=f"{sobject} sync mode is {mode}: nothing written",
        )

    mappings = sync.fields if sync else []
    # Fields the admin mapped as read_only or none are never written by the bridge, except
    # the external id and what Salesforce requires to create the record.
    hands_off = {f for m in mappings if m.sync in ("read_only", "none") for f in m.salesforce}
    keep = {REFERRAL_ID_FIELD} | ({"LastName", "Company"} if existing is None else set())
    record = {k: v for k, v in record.items() if k not in hands_off or k in keep}
    if existing is None:
        plan = plan_fields(referral, None, mappings)
        fields = {**record, **plan.writes}
        if sobject == "Contact":
            fields.pop("Company", None)
        return ReferralDecision("upsert", sobject, fields=fields, local_updates=plan.local_updates)

    ours = bool(public_id) and existing.get(REFERRAL_ID_FIELD) == public_id
    if add.on_existing_email == "overwrite_leads":
        # Signals' overwrite: the Lead takes every referral value, name and company included
        fields = dict(record)
        plan = plan_fields(referral, existing, mappings)
        fields.update(plan.writes)
        return ReferralDecision(
            "update", sobject, fields=fields, record_id=existing["Id"],
            local_updates=plan.local_updates,
        )  # fmt: skip
    if not ours and add.on_existing_email != "update":
        label = f"{sobject} {existing['Id']} already has the email {existing.get('Email')}"
        if add.on_existing_email == "skip":
            return ReferralDecision(
                "skip",
                sobject,
                record_id=existing["Id"],
                reason="existing_email",
                message=f"{label}; on_existing_email is skip",
            )
        created = parse_sf_datetime(existing.get("CreatedDate"))
        # The grace hour is for a person who just arrived another way (a form, an import),
        # not for a record the bridge made for another referral: that one is no new person.
        other_referral = not is_blank(existing.get(REFERRAL_ID_FIELD))
        if created is None or now - created >= RECENT_RECORD or other_referral:
            return ReferralDecision(
                "deny",
                sobject,
                record_id=existing["Id"],
                reason="existing_email",
                message=f"{label}; on_existing_email is deny: the referral was denied",
            )
        # Created within the hour: the same person, just entered another way; update it.

    fields = {k: v for k, v in record.items() if k not in IDENTITY_FIELDS}
    for name in IDENTITY_FIELDS:
        if name in record and is_blank(existing.get(name)):
            fields[name] = record[name]
    if sobject == "Contact":
        fields.pop("Company", None)
    plan = plan_fields(referral, existing, mappings)
    fields.update(plan.writes)
    return ReferralDecision(
        "update",
        sobject,
        fields=fields,
        record_id=existing["Id"],
        local_updates=plan.local_updates,
        account_id=existing.get("AccountId"),
    )
