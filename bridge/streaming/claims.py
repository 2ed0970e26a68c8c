"""Claims: the states an inbound job moves stored events through (new → processing → done /
failed / skipped), with the claim a job holds on them while it runs.

The inbox (`bridge.streaming.inbox`) stores events exactly once and moves the cursors; this
module is the worker's side of the same table: claiming a batch, renewing the claim (the
heartbeat), giving it back, re-checking it under the chunk's write transaction and ending it.

Its statements are Core statements on the tables, not on the mapped classes: an UPDATE of a
mapped class runs through SQLAlchemy's ORM bulk-update path, which cost more CPU than the
statement itself (~4.6 % of the worker's). Nothing else changes: the same SQL, no loaded
object synchronised (none was: `synchronize_session=False`), and the session still flushes
before each (SQLAlchemy autoflushes Core statements too) and still sees each
(`do_orm_execute`, on which `bridge.store.readfirst` turns the first write into a write
transaction).
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

_EVENTS_TABLE: Any = InboundEvent.__table__
_EVENTS = _EVENTS_TABLE.c
_ORGS = OrgConnection.__table__.c  # the paused orgs of the claim
_ENTRIES_TABLE: Any = SalesEntry.__table__

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
    _EVENTS.id,
    _EVENTS.org_connection_id,
    _EVENTS.channel,
    _EVENTS.source,
    _EVENTS.sobject_type,
    _EVENTS.record_id,
    _EVENTS.change_type,
    _EVENTS.payload.cast(Text),  # the JSON as stored, decoded later (ClaimedEvent.payload)
)


@functools.cache
def _claim(dialect: str) -> Any:
    """The claim's statement, built once per database: building it took more CPU than running
    it (~0.5 ms a job). The ids (one array on PostgreSQL: `among`), the times and the token
    are its parameters."""
    c = _EVENTS
    paused = select(_ORGS.id).where(_ORGS.inbound_paused.is_(True))
    return (
        update(_EVENTS_TABLE)
        .where(
            among(c.id, "ids", dialect),
            (c.state == "new")
            | (
                (c.state == "processing")
                & (c.claimed_at < bindparam("stale", type_=c.claimed_at.type))
            ),
            c.org_connection_id.not_in(paused),
        )
        .values(
            state="processing",
            claimed_at=bindparam("now", type_=c.claimed_at.type),
            claimed_by=bindparam("token", type_=c.claimed_by.type),
            attempts=c.attempts + 1,
        )
        .returning(*_CLAIMED)
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
        update(_EVENTS_TABLE)
        .where(
            _EVENTS.id.in_(list(ids)),
            _EVENTS.state == "processing",
            _EVENTS.claimed_by == token,
        )
        .values(claimed_at=utcnow())
    )
    return int(cast(CursorResult[Any], result).rowcount)


def release(session: Session, ids: Sequence[int], token: str) -> None:
    """Give claimed events back (state new) so a retry of the job can take them again."""
    session.execute(
        update(_EVENTS_TABLE)
        .where(
            _EVENTS.id.in_(list(ids)),
            _EVENTS.state == "processing",
            _EVENTS.claimed_by == token,
        )
        .values(state="new", claimed_at=None, claimed_by=None)
    )


@functools.cache
def _still_claimed(dialect: str) -> Any:
    entries = _ENTRIES_TABLE.c
    return (
        select(_EVENTS.id, entries.id.is_not(None))
        .select_from(
            _EVENTS_TABLE.outerjoin(_ENTRIES_TABLE, entries.inbound_event_id == _EVENTS.id)
        )
        .where(
            among(_EVENTS.id, "ids", dialect),
            _EVENTS.state == "processing",
            _EVENTS.claimed_by == bindparam("token"),
        )
        .order_by(_EVENTS.id)
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
    c = _EVENTS

    def by_end(column: str, kind: Any) -> Any:
        last = bindparam(f"{column}_{ends - 1}", type_=kind)
        if ends == 1:
            return last
        whens = [
            (c.id.in_(bindparam(f"ids_{n}", expanding=True)),
             bindparam(f"{column}_{n}", type_=kind))
            for n in range(ends - 1)
        ]  # fmt: skip
        return case(*whens, else_=last)

    update_ = update(_EVENTS_TABLE).where(c.id.in_(bindparam("ids", expanding=True)))
    if claimed:
        update_ = update_.where(
            c.state == bindparam("claimed_state"), c.claimed_by == bindparam("token")
        )
    return update_.values(
        state=by_end("state", c.state.type),
        reason=by_end("reason", c.reason.type),
        processed_at=bindparam("now", type_=c.processed_at.type),
    )


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
