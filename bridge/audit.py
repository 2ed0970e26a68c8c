"""The audit log: who did what to which object, written in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from bridge.store.models import AuditLog


def record(
    session: Session,
    actor: str,
    action: str,
    object_type: str,
    object_id: object | None = None,
    **detail: Any,
) -> AuditLog:
    entry = AuditLog(
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        detail=detail,
    )
    session.add(entry)
    return entry
