"""Field updates: mapped values written onto one Salesforce record (kind `field_update`).

The values come from `mapping.plan_fields` (sync rules and strategies); the target is a record
id (update), an external id (upsert) or neither (create: avoid where a re-send could
duplicate — prefer an external id).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from bridge.store.models import OrgConnection, Push
from bridge.writeback.pushes import payload_digest, queue_push


def queue_field_update(
    session: Session,
    org: OrgConnection,
    sobject: str,
    fields: dict[str, Any],
    *,
    record_id: str | None = None,
    external_id_field: str | None = None,
    external_id: str | None = None,
    referral_id: int | None = None,
    change: str | None = None,
    owner: str | None = None,
) -> Push:
    """Save a pending field-update push; the same write twice is absorbed.

    `change` names the change that caused the write (a local edit, an entry): the same values
    written again by a later change are a new push, not the earlier one absorbed.
    """
    if external_id_field and external_id is not None:
        fields = {**fields, external_id_field: external_id}
    payload: dict[str, Any] = {"fields": fields, "record_id": record_id}
    if change is not None:
        payload["change"] = change
    if owner is not None:  # the owner rep: OwnerId from the user mapping at send time
        payload["owner"] = owner
    target = record_id or f"{external_id_field}={external_id}"
    push, _created = queue_push(
        session,
        kind="field_update",
        idempotency_key=f"field_update:{org.id}:{sobject}:{target}:{payload_digest(payload)}",
        sobject_type=sobject,
        payload=payload,
        org_connection_id=org.id,
        external_id_field=None if record_id else external_id_field,
        external_id=external_id,
        referral_id=referral_id,
    )
    return push
