"""Writeback planning: what each pending push becomes in Salesforce, kind by kind.

A planner takes the pushes of one kind (`Item`s, read and counted by the sender) and returns
the record writes to make (`Write`) and the pushes settled before any write (`Outcome`: a
referral to skip or deny, a push that cannot be built). Lookups go through the `Writer` in
bulk (IN lists), never per push.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from bridge.config import OrgConfig, ReferralAdd
from bridge.errors import Action, PermanentError, failure_of
from bridge.writeback import activities, referrals
from bridge.writeback.client import RecordError, Writer
from bridge.writeback.mapping import salesforce_email

Op = Literal["create", "update", "upsert"]


@dataclass
class Write:
    """One record to write, for one push."""

    push_id: int
    sobject: str
    op: Op
    fields: dict[str, Any]
    record_id: str | None = None
    external_id_field: str | None = None
    local_updates: dict[str, Any] = field(default_factory=dict)
    link_account: bool = False  # a referral's Contact without an account
    who: tuple[str, str] | None = None  # (email, WhoId) an activity's lookup resolved
    who_known: bool = False  # the WhoId came from the known records, not a lookup


@dataclass
class Outcome:
    """What became of one push (sent, failed, still pending, skipped, denied)."""

    push_id: int
    state: Literal["sent", "failed", "pending", "skipped", "denied"]
    sf_id: str | None = None
    sobject: str | None = None
    error: RecordError | None = None
    error_class: str | None = None
    local_updates: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] | None = None  # what was sent, saved on the push payload
    created: bool = False  # Salesforce created the record (an upsert that inserted)
    via: str = "collections"  # or "bulk": how it was sent, kept on the attempt
    note: str | None = None  # why it counts as sent though Salesforce wrote nothing


@dataclass
class Item:
    """A pending push as the planners see it, with its referral as it is now."""

    push_id: int
    kind: str
    sobject: str
    payload: dict[str, Any]
    external_id_field: str | None
    external_id: str | None
    referral: dict[str, Any] | None = None
    record: dict[str, Any] | None = None
    referral_who: str | None = None  # the referral's Contact or Lead, for activities
    org_connection_id: int | None = None
    add: ReferralAdd | None = None  # the referral's program's settings (default: the org's)
    known_who: str | None = None  # the WhoId the known records give the activity's email
    use_known: bool = True  # False once a known id proved stale: look the person up


def plan_referrals(
    writer: Writer, org_config: OrgConfig, items: list[Item], now: datetime
) -> tuple[list[Write], list[Outcome]]:
    for item in items:
        if item.record is None:
            item.record = dict(item.payload.get("fields") or {})
        if item.referral is None:
            item.referral = {
                "public_id": item.record.get(referrals.REFERRAL_ID_FIELD),
                "email": item.record.get("Email"),
            }
    writes: list[Write] = []
    early: list[Outcome] = []
    missing = [i for i in items if not (i.record or {}).get(referrals.REFERRAL_ID_FIELD)]
    for item in missing:
        early.append(
            failure_outcome(
                item.push_id,
                PermanentError(
                    "the referral of this push no longer exists, so there is nothing to write",
                    code="referral_missing",
                ),
            )
        )
    items = [i for i in items if i not in missing]
    emails = [str(i.referral.get("email") or "") for i in items if i.referral]
    adds = [i.add or org_config.writeback.referral_add for i in items]
    existing = referrals.find_existing(writer, org_config, emails, adds) if items else {}
    for item in items:
        assert item.referral is not None and item.record is not None
        key = salesforce_email(item.referral.get("email"))
        decision = referrals.decide(
            referral=item.referral,
            record=item.record,
            candidates=existing.get(key, []) if key else [],
            org_config=org_config,
            now=now,
            add=item.add,
        )
        if decision.action in ("skip", "deny"):
            early.append(
                Outcome(
                    item.push_id,
                    "skipped" if decision.action == "skip" else "denied",
                    sobject=decision.sobject,
                    error=RecordError(decision.reason or "skipped", decision.message or "", []),
                    fields=item.record,
                )
            )
        elif decision.action == "upsert":
            writes.append(
                Write(
                    item.push_id,
                    decision.sobject,
                    "upsert",
                    decision.fields,
                    external_id_field=referrals.REFERRAL_ID_FIELD,
                    local_updates=decision.local_updates,
                    link_account=decision.sobject == "Contact",
                )
            )
        else:
            writes.append(
                Write(
                    item.push_id,
                    decision.sobject,
                    "update",
                    decision.fields,
                    record_id=decision.record_id,
                    local_updates=decision.local_updates,
                    link_account=decision.sobject == "Contact" and not decision.account_id,
                )
            )
    return writes, early


def plan_activities(
    writer: Writer, org_config: OrgConfig, items: list[Item], now: datetime
) -> tuple[list[Write], list[Outcome]]:
    writes: list[Write] = []
    early: list[Outcome] = []
    planned: list[tuple[Item, str, dict[str, Any], str | None]] = []
    for item in items:
        kind = item.payload.get("kind")
        mapping = org_config.writeback.activities.kinds.get(kind) if kind else None
        if mapping is not None and not mapping.enabled:
            early.append(
                Outcome(
                    item.push_id, "skipped",
                    error=RecordError("kind_disabled", f"{kind} activities are switched off "
                                      f"(writeback.activities.kinds.{kind}.enabled)", []),
                )
            )  # fmt: skip
            continue
        email = activity_email(item)
        if "fields" in item.payload:
            sobject, fields = item.sobject, dict(item.payload["fields"])
        else:  # saved with the activity itself as payload: build the Task/Event now
            try:
                sobject, fields = activities.record_from_payload(
                    item.payload, item.external_id, org_config
                )
            except Exception as exc:
                early.append(failure_outcome(item.push_id, exc))
                continue
        planned.append((item, sobject, fields, email))

    wanted = [
        email
        for item, _s, fields, email in planned
        if resolves_who(item, org_config) and "WhoId" not in fields and not item.known_who
    ]
    whos = activities.resolve_whos(writer, wanted) if any(wanted) else {}
    for item, sobject, fields, email in planned:
        key = salesforce_email(email)
        write = Write(
            item.push_id,
            sobject,
            "upsert",
            fields,
            external_id_field=item.external_id_field or activities.ACTIVITY_ID_FIELD,
        )
        if "WhoId" not in fields:
            if resolves_who(item, org_config) and item.known_who:
                fields["WhoId"] = item.known_who
                write.who_known = True
            elif resolves_who(item, org_config) and key and key in whos:
                fields["WhoId"] = whos[key]
                write.who = (key, whos[key])
            elif item.referral_who:
                fields["WhoId"] = item.referral_who
        writes.append(write)
    return writes, early


def activity_email(item: Item) -> str | None:
    """The email an activity's person is found by."""
    return item.payload.get("email") or item.payload.get("who_email")


def resolves_who(item: Item, org_config: OrgConfig) -> bool:
    """Whether the activity's WhoId is found by its email (`lead_resolution: email`)."""
    resolve = org_config.writeback.activities.lead_resolution == "email"
    return bool(item.payload.get("resolve_who", resolve))


def plan_field_updates(
    writer: Writer, org_config: OrgConfig, items: list[Item], now: datetime
) -> tuple[list[Write], list[Outcome]]:
    writes = []
    for item in items:
        fields = dict(item.payload.get("fields") or {})
        record_id = item.payload.get("record_id")
        if record_id:
            writes.append(Write(item.push_id, item.sobject, "update", fields, record_id=record_id))
        elif item.external_id_field:
            writes.append(
                Write(
                    item.push_id,
                    item.sobject,
                    "upsert",
                    fields,
                    external_id_field=item.external_id_field,
                )
            )
        else:
            writes.append(Write(item.push_id, item.sobject, "create", fields))
    return writes, []


def failure_outcome(push_id: int, exc: Exception, fields: dict[str, Any] | None = None) -> Outcome:
    """The push's outcome for a failure; called in an `except` block, it re-raises what is not
    the push's to carry (a bug), as the failure policy says."""
    failure = failure_of(exc)
    if failure.action is Action.RAISE:
        raise exc
    # RETRY (transient) is saved like the rest: mark_error keeps the push pending for it.
    return Outcome(
        push_id,
        "failed",
        error=RecordError(failure.code, failure.message, list(failure.fields)),
        error_class=failure.error_class,
        fields=fields,
    )


Planner = Callable[[Writer, OrgConfig, list[Item], datetime], tuple[list[Write], list[Outcome]]]

#: Each push kind and its planner, in the order the sender runs them.
PLANNERS: tuple[tuple[str, Planner], ...] = (
    ("referral", plan_referrals),
    ("activity", plan_activities),
    ("field_update", plan_field_updates),
)
