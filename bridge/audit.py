"""The audit log: who did what to which object, written in the same transaction as the change.

`record` adds one row to the session. Inside `batched(session)` (the receiver's batch path)
the rows are collected instead and written with one INSERT of many rows when the block ends,
in the order they were recorded: the same rows, without an ORM object each.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

from bridge.store.arrays import insert_rows
from bridge.store.models import AuditLog, utcnow

_BATCH = "sfbridge_audit_rows"
"""Session.info key of the rows collected by `batched`."""

_TABLE: Any = AuditLog.__table__


def record(
    session: Session,
    actor: str,
    action: str,
    object_type: str,
    object_id: object | None = None,
    **detail: Any,
) -> None:
    row = {
        "at": utcnow(),
        "actor": actor,
        "action": action,
        "object_type": object_type,
        "object_id": None if object_id is None else str(object_id),
        "detail": detail,
    }
    rows = session.info.get(_BATCH)
    if rows is not None:
        rows.append(row)
    else:
        session.add(AuditLog(**row))


@contextmanager
def batched(session: Session) -> Iterator[None]:
    """Collect the block's audit rows and write them together at its end (not on error: the
    transaction is then rolled back anyway). Nested blocks write with the outermost."""
    if _BATCH in session.info:
        yield
        return
    rows: list[dict[str, Any]] = []
    session.info[_BATCH] = rows
    try:
        yield
    finally:
        del session.info[_BATCH]
    if rows:
        session.flush()  # rows recorded before the block (added to the session) come first
        insert_rows(session, _TABLE, rows)
