"""Claims: the states an inbound job moves stored events through (new → processing → done /
failed / skipped), with the claim a job holds on them while it runs.

The inbox (`bridge.streaming.inbox`) stores events exactly once and moves the cursors; this
module is the worker's side of the same table: claiming a batch, renewing the claim (the
heartbeat), giving it back, re-checking it under the chunk's write transaction and ending it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Text, bindparam, case, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from bridge import defaults
from bridge.store import StoredJSON
from bridge.store.arrays import among
from bridge.store.models import InboundEvent, OrgConnection, SalesEntry, utcnow

_CHUNK = 200
"""Events ended per UPDATE."""


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


@dataclass
class ClaimedEvent:
    """A claimed event as the claim's UPDATE … RETURNING gives it back: what its job makes the
    entry of, with no second read of the events."""

    id: int
    org_connection_id: int
    channel: str
    source: str
    sobject_type: str
    record_id: str | None
    change_type: str
    payload_json: str = field(repr=False)

    @functools.cached_property
    def payload(self) -> dict[str, Any]:
        """Decoded when first asked for, once the claim has committed: on SQLite not under the
        write lock (~14 µs an event, milliseconds for a job of 200); with its text, which the
        entry's `raw` is written as."""
        return StoredJSON(self.payload_json)


_CLAIMED = (
    InboundEvent.id,
    InboundEvent.org_connection_id,
    InboundEvent.channel,
    InboundEvent.source,
    InboundEvent.sobject_type,
    InboundEvent.record_id,
    InboundEvent.change_type,
    InboundEvent.payload.cast(Text),  # the JSON as stored, decoded later (ClaimedEvent.payload)
)


@functools.cache
def _claim(dialect: str) -> Any:
    """The claim's statement, built once per database: building it took more CPU than running
    it (~0.5 ms a job). The ids (one array on PostgreSQL: `among`), the times and the token
    are its parameters."""
    c = InboundEvent.__table__.c
    paused = select(OrgConnection.id).where(OrgConnection.inbound_paused.is_(True))
    return (
        update(InboundEvent)
        .where(
            among(InboundEvent.id, "ids", dialect),
            (InboundEvent.state == "new")
            | (
                (InboundEvent.state == "processing")
                & (InboundEvent.claimed_at < bindparam("stale", type_=c.claimed_at.type))
            ),
            InboundEvent.org_connection_id.not_in(paused),
        )
        .values(
            state="processing",
            claimed_at=bindparam("now", type_=c.claimed_at.type),
            claimed_by=bindparam("token", type_=c.claimed_by.type),
            attempts=InboundEvent.attempts + 1,
        )
        .returning(*_CLAIMED)
        .execution_options(synchronize_session=False)
    )


def claim(session: Session, ids: Sequence[int], token: str) -> list[ClaimedEvent]:
    """Mark the events ours (new → processing) and return them, in id order; a stale claim of
    a dead worker is taken over. The events of an org whose inbound is paused (`sfbridge org
    pause --inbound`) are left alone: they stay stored as new until it is resumed.

    One UPDATE … WHERE state allows it … RETURNING the events: two jobs claiming the same
    events at the same time get disjoint sets, on SQLite and PostgreSQL alike.
    """
    now = utcnow()
    stale = now - timedelta(seconds=defaults.CLAIM_TIMEOUT_SECONDS)
    values = {"ids": list(ids), "stale": stale, "now": now, "token": token}
    rows = session.execute(_claim(_dialect(session)), values).all()
    return sorted((ClaimedEvent(*row) for row in rows), key=lambda ev: ev.id)


def renew_claim(session: Session, ids: Sequence[int], token: str) -> int:
    """The heartbeat of a running batch: its events still claimed by `token` get a fresh
    claim time, so no other job takes them over. Returns how many are still claimed (0: the
    batch is through, or its claim was taken over)."""
    result = session.execute(
        update(InboundEvent)
        .where(
            InboundEvent.id.in_(list(ids)),
            InboundEvent.state == "processing",
            InboundEvent.claimed_by == token,
        )
        .values(claimed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(cast(CursorResult[Any], result).rowcount)


def release(session: Session, ids: Sequence[int], token: str) -> None:
    """Give claimed events back (state new) so a retry of the job can take them again."""
    session.execute(
        update(InboundEvent)
        .where(
            InboundEvent.id.in_(list(ids)),
            InboundEvent.state == "processing",
            InboundEvent.claimed_by == token,
        )
        .values(state="new", claimed_at=None, claimed_by=None)
        .execution_options(synchronize_session=False)
    )


@functools.cache
def _still_claimed(dialect: str) -> Any:
    return (
        select(InboundEvent.id, SalesEntry.id.is_not(None))
        .outerjoin(SalesEntry, SalesEntry.inbound_event_id == InboundEvent.id)
        .where(
            among(InboundEvent.id, "ids", dialect),
            InboundEvent.state == "processing",
            InboundEvent.claimed_by == bindparam("token"),
        )
        .order_by(InboundEvent.id)
    )


def still_claimed(session: Session, ids: Sequence[int], token: str) -> dict[int, bool]:
    """The events among `ids` still claimed by `token` (a slow job whose claim was taken
    over must not act on them), in id order, each with whether it has an entry already
    (one made outside the claim, e.g. submitted through the API). One SELECT, built once."""
    rows = session.execute(_still_claimed(_dialect(session)), {"ids": list(ids), "token": token})
    return {event_id: bool(has_entry) for event_id, has_entry in rows}


@functools.cache
def _finish(ends: int, claimed: bool) -> Any:
    """The UPDATE of events with `ends` different ends, built once per number of ends: the
    state and reason of all ends but the last by a CASE over their ids (`ids_<n>`);
    `claimed`: only the events still claimed by `token`."""
    c = InboundEvent.__table__.c

    def by_end(column: str, kind: Any) -> Any:
        last = bindparam(f"{column}_{ends - 1}", type_=kind)
        if ends == 1:
            return last
        whens = [
            (InboundEvent.id.in_(bindparam(f"ids_{n}", expanding=True)),
             bindparam(f"{column}_{n}", type_=kind))
            for n in range(ends - 1)
        ]  # fmt: skip
        return case(*whens, else_=last)

    update_ = update(InboundEvent).where(InboundEvent.id.in_(bindparam("ids", expanding=True)))
    if claimed:
        update_ = update_.where(
            InboundEvent.state == bindparam("claimed_state"),
            InboundEvent.claimed_by == bindparam("token"),
        )
    return update_.values(
        state=by_end("state", c.state.type),
        reason=by_end("reason", c.reason.type),
        processed_at=bindparam("now", type_=c.processed_at.type),
    ).execution_options(synchronize_session=False)


def finish(
    session: Session, ends: Mapping[int, tuple[str, str | None]], token: str | None = None
) -> int:
    """The events are through: each `done`, `failed` or `skipped` (with the reason code);
    one UPDATE (per 200 events), its state and reason by the event's id where they differ.
    With `token`, only the events still claimed by it (the claim re-checked in the same
    statement). Returns how many events were ended."""
    now = utcnow()
    ids = list(ends)
    ended = 0
    for start in range(0, len(ids), _CHUNK):
        part = ids[start : start + _CHUNK]
        groups: dict[tuple[str, str | None], list[int]] = {}
        for event_id in part:
            groups.setdefault(ends[event_id], []).append(event_id)
        values: dict[str, Any] = {"ids": part, "now": now}
        if token is not None:
            values.update(token=token, claimed_state="processing")
        for n, ((state, reason), group) in enumerate(groups.items()):
            values.update({f"ids_{n}": group, f"state_{n}": state, f"reason_{n}": reason})
        result = session.execute(_finish(len(groups), token is not None), values)
        ended += int(cast(CursorResult[Any], result).rowcount)
    return ended
