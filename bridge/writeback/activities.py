"""Activities written to Salesforce as Tasks or Events, upserted by `SFBridge_Activity_Id__c`.

Each kind (email, call, linkedin_message, linkedin_connection, meeting) maps to Task or Event
with static values per `writeback.activities.kinds`; unconfigured kinds use the defaults below.
The person is resolved by email at send time (Contact first, then an unconverted Lead; one
query per object for the whole batch) and set as WhoId. The same activity id always lands on
the same Task/Event: a changed activity is a new push that updates it; an identical one is
absorbed as a duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from simple_salesforce import format_soql
from sqlalchemy.orm import Session

from bridge.config import ActivityMapping, OrgConfig
from bridge.errors import UsageError
from bridge.store.models import OrgConnection, Push
from bridge.vocabulary import ActivityKind
from bridge.writeback.client import LOOKUP_CHUNK, Writer, chunks
from bridge.writeback.mapping import salesforce_email
from bridge.writeback.pushes import payload_digest, queue_push

ACTIVITY_ID_FIELD = "SFBridge_Activity_Id__c"
SUBJECT_MAX = 255  # Task.Subject and Event.Subject are Text(255)
DEFAULT_MEETING_MINUTES = 30

# kind -> (object, static values, subject prefix) when the config names no mapping for it.
DEFAULTS: dict[ActivityKind, tuple[str, dict[str, Any], str]] = {
    "email": ("Task", {"Type": "Email", "Status": "Completed"}, "Email: "),
    "call": ("Task", {"Type": "Call", "Status": "Completed"}, "Call: "),
    "linkedin_message": ("Task", {"Type": "Other", "Status": "Completed"}, "LinkedIn message: "),
    "linkedin_connection": (
        "Task",
        {"Type": "Other", "Status": "Completed"},
        "LinkedIn connection: ",
    ),
    "meeting": ("Event", {"Type": "Meeting"}, "Meeting: "),
}


class Activity(BaseModel):
    """An activity as the API accepts it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # SFBridge_Activity_Id__c is Text(100); the JSON API calls it activity_id
    id: str = Field(
        min_length=1, max_length=100, validation_alias=AliasChoices("id", "activity_id")
    )
    kind: ActivityKind
    # the person it was with: resolves WhoId (the JSON API calls it who_email)
    email: str | None = Field(default=None, validation_alias=AliasChoices("email", "who_email"))
    referral_id: int | None = None  # WhoId falls back to the referral's Lead/Contact
    subject: str = Field(default="", max_length=10000)
    description: str | None = Field(default=None, max_length=32000)
    occurred_at: datetime
    duration_minutes: int | None = Field(default=None, ge=0, le=14 * 24 * 60)
    ended_at: datetime | None = None

    @field_validator("occurred_at", "ended_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            return v.replace(tzinfo=UTC)
        return v


def parse_activity(data: Any) -> Activity:
    """Validate API input; every problem named in one UsageError (code `invalid_activity`)."""
    try:
        return Activity.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or '(body)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise UsageError(
            "invalid activity: " + "; ".join(problems),
            code="invalid_activity",
            fields=[".".join(str(p) for p in err["loc"]) for err in exc.errors()],
        ) from exc


def _sf_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def activity_target(activity: Activity, org_config: OrgConfig) -> tuple[str, dict[str, Any], str]:
    """(object, static values, subject prefix) for the activity's kind."""
    default_object, default_static, default_prefix = DEFAULTS[activity.kind]
    mapping: ActivityMapping | None = org_config.writeback.activities.kinds.get(activity.kind)
    if mapping is None:
        return default_object, dict(default_static), default_prefix
    static = dict(default_static) if mapping.object == default_object else {}
    static.update(mapping.static)
    prefix = default_prefix if mapping.subject_prefix is None else mapping.subject_prefix
    return mapping.object, static, prefix


def activity_object(kind: ActivityKind, org_config: OrgConfig) -> str:
    """Task or Event: what activities of `kind` are written as."""
    mapping = org_config.writeback.activities.kinds.get(kind)
    return mapping.object if mapping is not None else DEFAULTS[kind][0]


def build_record(activity: Activity, org_config: OrgConfig) -> tuple[str, dict[str, Any]]:
    """The Task or Event fields (without WhoId, which is resolved when sending)."""
    sobject, static, prefix = activity_target(activity, org_config)
    subject = (prefix + activity.subject).strip() or prefix.strip() or activity.kind
    record: dict[str, Any] = {"Subject": subject[:SUBJECT_MAX]}
    if activity.description:
        record["Description"] = activity.description
    if sobject == "Task":
        record["ActivityDate"] = activity.occurred_at.astimezone(UTC).date().isoformat()
    else:
        start = activity.occurred_at
        if activity.ended_at is not None and activity.ended_at >= start:
            end = activity.ended_at
        else:
            end = start + timedelta(minutes=activity.duration_minutes or DEFAULT_MEETING_MINUTES)
        record["StartDateTime"] = _sf_datetime(start)
        record["EndDateTime"] = _sf_datetime(end)
    record.update(static)
    record[ACTIVITY_ID_FIELD] = activity.id  # last: static values cannot change the key
    return sobject, record


def queue_activity(
    session: Session, org: OrgConnection, org_config: OrgConfig, activity: Activity | dict[str, Any]
) -> Push:
    """Save the pending push for an activity; the same content twice is absorbed."""
    if not isinstance(activity, Activity):
        activity = parse_activity(activity)
    sobject, record = build_record(activity, org_config)
    payload: dict[str, Any] = {
        "fields": record,
        "email": activity.email,
        "kind": activity.kind,
        "resolve_who": org_config.writeback.activities.lead_resolution == "email",
    }
    push, _created = queue_push(
        session,
        kind="activity",
        idempotency_key=f"activity:{org.id}:{activity.id}:{payload_digest(payload)}",
        sobject_type=sobject,
        payload=payload,
        org_connection_id=org.id,
        external_id_field=ACTIVITY_ID_FIELD,
        external_id=activity.id,
        referral_id=activity.referral_id,
    )
    return push


def record_from_payload(
    payload: dict[str, Any], external_id: str | None, org_config: OrgConfig
) -> tuple[str, dict[str, Any]]:
    """Task/Event fields for a push saved with the activity itself as payload (as the JSON API
    saves it) rather than prepared fields; raises UsageError when the activity is invalid."""
    known = set(Activity.model_fields) | {"activity_id", "who_email"}
    data = {k: v for k, v in payload.items() if k in known}
    data.setdefault("id", external_id)
    if "activity_id" in data:
        data.pop("id")
    return build_record(parse_activity(data), org_config)


def resolve_whos(writer: Writer, emails: Sequence[str | None]) -> dict[str, str]:
    """Email → WhoId: the oldest Contact with it, else the oldest unconverted Lead."""
    keys = sorted({k for k in (salesforce_email(e) for e in emails) if k})
    soqls = [
        format_soql(
            "SELECT Id, Email FROM {sobject:literal} WHERE {converted:literal}"
            "Email IN {emails} ORDER BY CreatedDate ASC, Id ASC",
            sobject=sobject,
            converted="IsConverted = false AND " if sobject == "Lead" else "",
            emails=part,
        )
        for sobject in ("Contact", "Lead")  # Contacts first: they win
        for part in chunks(keys, LOOKUP_CHUNK)
    ]
    whos: dict[str, str] = {}
    for records in writer.queries(soqls):  # both objects in one composite call
        for record in records:
            key = salesforce_email(record.get("Email"))
            if key and key not in whos:
                whos[key] = str(record["Id"])
    return whos
