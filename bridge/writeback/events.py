"""Sales-engagement events in: a sale or a demo about a referral, saved once, sent as a push.

`record(...)` saves the event (`Sale` / `Demo`) and its pending push in the caller's
transaction, so the event is stored before anything is sent. The client's id makes it
idempotent per org: the same id with the same body is the saved event again (`created` False),
the same id with another body is refused (`EventConflict`), since an event's meaning cannot
change under its id — a rescheduled demo is a new event. An event naming its rep (`owner`)
makes that rep the person's owner (`Referral.owner`, in the field history).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bridge.errors import UsageError
from bridge.store.models import Demo, OrgConnection, Push, Referral, Sale
from bridge.vocabulary import SalesKind
from bridge.writeback import history, ownership
from bridge.writeback.pushes import payload_digest, queue_push

MODELS: dict[SalesKind, type[Sale] | type[Demo]] = {"sale": Sale, "demo": Demo}


class EventConflict(UsageError):
    """The client id was used before for another body."""


def record(
    session: Session,
    kind: SalesKind,
    org: OrgConnection,
    referral: Referral,
    body: dict[str, Any],
    at: datetime,
) -> tuple[Sale | Demo, Push, bool]:
    """Save a sale or demo (`body` validated, its `id` the client's) and its pending push.

    `at` is the sale's close time or the demo's time. Returns (event, push, created).
    """
    model = MODELS[kind]
    client_id = str(body["id"])
    digest = payload_digest(body)
    found = _find(session, model, org.id, client_id)
    if found is None:
        event = model(
            org_connection_id=org.id,
            client_id=client_id,
            referral_id=referral.id,
            digest=digest,
            body=body,
        )
        if isinstance(event, Sale):
            event.closed_at = at
        else:
            event.state = str(body["state"])
            event.scheduled_at = at
        try:
            with session.begin_nested():  # a concurrent insert of the same id wins the race
                session.add(event)
                session.flush()
        except IntegrityError:
            found = _find(session, model, org.id, client_id)
            if found is None:
                raise
    if found is not None:
        if found.digest != digest:
            raise EventConflict(
                f"{kind} {client_id!r} was sent before with other values; a changed {kind} "
                "needs a new id",
                code="id_conflict",
                fields=["id"],
            )
        push = session.get(Push, found.push_id) if found.push_id else None
        assert push is not None, f"{kind} {found.id} has no push"
        return found, push, False
    push, _ = queue_push(
        session,
        kind=kind,
        idempotency_key=f"{kind}:{org.id}:{client_id}",
        sobject_type="Opportunity",
        payload={"event_id": event.id, "client_id": client_id},
        org_connection_id=org.id,
        referral_id=referral.id,
    )
    event.push_id = push.id
    rep = body.get("owner")
    if rep and rep != referral.owner:  # the rep of the demo or sale owns the person now
        history.record(
            session, ownership.OWNER, source="local", outcome="applied", value=rep,
            previous=referral.owner, actor=f"{kind}:{client_id}", referral=referral,
        )  # fmt: skip
        referral.owner = rep
    session.flush()
    return event, push, True


def _find(
    session: Session, model: type[Sale] | type[Demo], org_id: int, client_id: str
) -> Sale | Demo | None:
    query = select(model).where(model.org_connection_id == org_id, model.client_id == client_id)
    return cast("Sale | Demo | None", session.scalar(query))
