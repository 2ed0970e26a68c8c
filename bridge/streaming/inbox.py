"""The event inbox: store changes exactly once, and the cursors that only move forward (the
states jobs then move the events through are `bridge.streaming.claims`').

Storing and moving the cursor happen in the caller's transaction, events first: a cursor is
never committed without the events it covers (aiosfstream's automatic replay policy stores the
marker before the handler has saved anything, which loses the event on a crash; we don't).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any, cast

from sqlalchemy import Text, column, func, or_, select, table, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from bridge.store import pgarrays
from bridge.store.models import (
    InboundEvent,
    SyncCursor,
    UTCDateTime,
    utcnow,
)
from bridge.streaming.events import ChangeEvent, latest, payload_json

_CHUNK = 200

#: Cursor channels besides the Bayeux ones: a polling position, an unfinished backfill, and a
#: Pub/Sub API topic (its replay ids are opaque bytes, kept apart from CometD's numbers).
POLL_PREFIX = "poll:"
BACKFILL_PREFIX = "backfill:"
VALUES_PREFIX = "values:"
"""Channels of the formula-field value check: a change no one made (no author to skip)."""
PUBSUB_PREFIX = "pubsub:"
"""Channels of the Pub/Sub subscriber: their cursors are opaque replay ids (bytes)."""


_CURSORS: Any = SyncCursor.__table__


@functools.lru_cache(maxsize=1)
def _insert_events() -> Any:
    """SQLite's INSERT … ON CONFLICT DO NOTHING RETURNING id of inbound events, built and
    compiled once: a delivery runs it as one executemany (SQLAlchemy sends the rows in
    multi-row batches), instead of a fresh statement of 200 rows x 13 values compiled per
    delivery. PostgreSQL takes a delivery in one statement of arrays (below).

    Its payload is the JSON text of the row (`events.payload_json`: a Bayeux message's own
    text, not encoded again), so the statement's table types that column as text."""
    model: Any = InboundEvent.__table__
    columns = [column(c.name, Text() if c.name == "payload" else c.type) for c in model.columns]
    events = table(model.name, *columns)
    return sqlite.insert(events).on_conflict_do_nothing().returning(events.c.id)


def _changes(events: Sequence[ChangeEvent]) -> list[ChangeEvent]:
    """The delivery's events, a change once (a replay overlapping a page can repeat one)."""
    keys = [ev.change_key for ev in events]
    if len(set(keys)) == len(keys):
        return list(events)
    seen: set[str] = set()
    changes = []
    for key, ev in zip(keys, events, strict=True):
        if key not in seen:
            seen.add(key)
            changes.append(ev)
    return changes


def _row(org_connection_id: int, ev: ChangeEvent) -> dict[str, Any]:
    return {
        "org_connection_id": org_connection_id,
        "channel": ev.channel,
        "replay_id": ev.replay_id,
        "change_key": ev.change_key,
        "source": ev.source,
        "sobject_type": ev.sobject_type,
        "record_id": ev.record_id,
        "change_type": ev.change_type,
        "event_created_at": ev.event_created_at,
        "payload": payload_json(ev),
        "state": "new",
        "attempts": 0,
    }


def store_events(
    session: Session, org_connection_id: int, events: Sequence[ChangeEvent]
) -> list[int]:
    """Insert the events that are not stored yet; returns the ids of the new rows.

    A change already stored (same channel + replay id, or same change_key from the other
    source) is absorbed silently: that is how replays, restarts and polling overlap dedupe.
    """
    if session.get_bind().dialect.name == "postgresql":
        return _store_postgresql(session.connection(), org_connection_id, events)
    # The rows are made before the transaction begins (on SQLite: before the writer's turn,
    # so as little as possible runs under the lock), and stamped once it has: received_at is
    # when they are being stored, so commit -> stored counts any wait for the lock.
    rows = [_row(org_connection_id, ev) for ev in _changes(events)]
    connection = session.connection()
    received_at = utcnow()
    for row in rows:
        row["received_at"] = received_at
    if not rows:
        return []
    return sorted(connection.execute(_insert_events(), rows).scalars())


# ---- PostgreSQL: a delivery in one statement ------------------------------------------------
#
# The rows go as one array per column (`unnest`), so the statement's text is the same whatever
# the delivery's size: psycopg converts it once and the server prepares and plans it once,
# where a multi-row VALUES of 13 parameters a row was a new text for every size, too long for
# psycopg to cache (it parsed those 57 KB for each delivery of 200) or to prepare. The
# cursor's upsert rides in the same statement (a data-modifying WITH), so a delivery is
# BEGIN, one statement, COMMIT: the commit is durable as the server's synchronous_commit
# says before the caller acknowledges anything.

_ARRAYS: dict[str, tuple[str, Callable[[Any], pgarrays.PgArray], Callable[[ChangeEvent], Any]]]
_ARRAYS = {
    "channel": ("text", pgarrays.text_array, attrgetter("channel")),
    "replay_id": ("bigint", pgarrays.bigint_array, attrgetter("replay_id")),
    "change_key": ("text", pgarrays.text_array, attrgetter("change_key")),
    "source": ("text", pgarrays.text_array, attrgetter("source")),
    "sobject_type": ("text", pgarrays.text_array, attrgetter("sobject_type")),
    "record_id": ("text", pgarrays.text_array, attrgetter("record_id")),
    "change_type": ("text", pgarrays.text_array, attrgetter("change_type")),
    "event_created_at": ("timestamptz", pgarrays.timestamptz_array, attrgetter("event_created_at")),
    "payload": ("json", pgarrays.json_array, payload_json),
}
"""The columns sent as arrays: their type, how a column becomes one array, an event's value."""

_PG_EVENTS = (  # built from the constant column names above
    "INSERT INTO inbound_events (org_connection_id, state, attempts, received_at, "  # noqa: S608
    + ", ".join(_ARRAYS)
    + ") SELECT %(org)s, 'new', 0, %(now)s, * FROM unnest("
    + ", ".join(f"%({name})b::{kind}[]" for name, (kind, _array, _value) in _ARRAYS.items())
    + ") ON CONFLICT DO NOTHING RETURNING id"
)

_PG_REPLAY_CURSORS = """INSERT INTO sync_cursors
    (org_connection_id, channel, replay_id, modstamp, updated_at)
  SELECT %(org)s, *, %(now)s
  FROM unnest(%(cursor_channels)b::text[], %(cursor_replay_ids)b::bigint[],
              %(cursor_modstamps)b::timestamptz[])
  ON CONFLICT (org_connection_id, channel) DO UPDATE
  SET replay_id = excluded.replay_id, modstamp = excluded.modstamp,
      updated_at = excluded.updated_at
  WHERE sync_cursors.replay_id IS NULL OR sync_cursors.replay_id < excluded.replay_id"""
"""Each channel's cursor to the delivery's last replay id, never back (advance_replay)."""

_PG_BYTES_CURSOR = """INSERT INTO sync_cursors
    (org_connection_id, channel, replay_bytes, modstamp, updated_at)
  VALUES (%(org)s, %(cursor_channel)s, %(replay_bytes)s, %(at)s, %(now)s)
  ON CONFLICT (org_connection_id, channel) DO UPDATE
  SET replay_bytes = excluded.replay_bytes, updated_at = excluded.updated_at,
      modstamp = coalesce(excluded.modstamp, sync_cursors.modstamp)
  WHERE excluded.modstamp IS NULL OR sync_cursors.modstamp IS NULL
     OR sync_cursors.modstamp <= excluded.modstamp"""
"""A Pub/Sub topic's cursor, never back to an earlier commit (store_and_advance_bytes)."""

_STAMP = UTCDateTime()


def _store_postgresql(
    connection: Any,
    org_connection_id: int,
    events: Sequence[ChangeEvent],
    cursor: str | None = None,
    cursor_values: Mapping[str, Any] | None = None,
) -> list[int]:
    """Insert the events' changes (and upsert a cursor, `cursor` with its `cursor_values`) in
    one statement; returns the ids of the new rows, which the server sorts and sends as one
    array (a row each cost the client more than the array's values)."""
    changes = _changes(events)
    params: dict[str, Any] = {
        name: array(list(map(value, changes))) for name, (_kind, array, value) in _ARRAYS.items()
    }
    params.update(org=org_connection_id, now=utcnow(), **(cursor_values or {}))
    moved = f", moved AS ({cursor})" if cursor is not None else ""
    statement = f"WITH stored AS ({_PG_EVENTS}){moved} SELECT array_agg(id ORDER BY id) FROM stored"  # noqa: S608
    return connection.exec_driver_sql(statement, params).scalar() or []


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def get_cursor(session: Session, org_connection_id: int, channel: str) -> SyncCursor | None:
    return session.get(SyncCursor, (org_connection_id, channel))


def advance_replay(
    session: Session,
    org_connection_id: int,
    channel: str,
    replay_id: int,
    modstamp: datetime | None = None,
) -> bool:
    """Move the channel's replay cursor to `replay_id` unless it is already there or beyond.

    One conditional UPDATE (or an insert for a new channel), so two processes racing cannot
    move it backwards. Returns whether it moved.
    """
    c = _CURSORS.c
    moved = _rowcount(
        session.execute(
            update(_CURSORS)
            .where(
                c.org_connection_id == org_connection_id,
                c.channel == channel,
                or_(c.replay_id.is_(None), c.replay_id < replay_id),
            )
            .values(replay_id=replay_id, modstamp=modstamp, updated_at=utcnow())
        )
    )
    if moved:
        return True
    if get_cursor(session, org_connection_id, channel) is not None:
        return False
    return _insert_cursor(session, org_connection_id, channel, replay_id, modstamp)


def advance_modstamp(
    session: Session, org_connection_id: int, channel: str, modstamp: datetime
) -> bool:
    """Move a polling cursor forward to `modstamp` (never back)."""
    moved = _rowcount(
        session.execute(
            update(SyncCursor)
            .where(
                SyncCursor.org_connection_id == org_connection_id,
                SyncCursor.channel == channel,
                or_(SyncCursor.modstamp.is_(None), SyncCursor.modstamp < modstamp),
            )
            .values(modstamp=modstamp, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    )
    if moved:
        return True
    if get_cursor(session, org_connection_id, channel) is not None:
        return False
    return _insert_cursor(session, org_connection_id, channel, None, modstamp)


def mark_subscribed(session: Session, org_connection_id: int, channel: str) -> None:
    """Remember that `channel` was subscribed (a cursor without a replay id yet)."""
    _insert_cursor(session, org_connection_id, channel, None, None)


def _insert_cursor(
    session: Session,
    org_connection_id: int,
    channel: str,
    replay_id: int | None,
    modstamp: datetime | None,
    replay_bytes: bytes | None = None,
) -> bool:
    name = session.get_bind().dialect.name
    ins = postgresql.insert(SyncCursor) if name == "postgresql" else sqlite.insert(SyncCursor)
    stmt = ins.values(
        org_connection_id=org_connection_id,
        channel=channel,
        replay_id=replay_id,
        replay_bytes=replay_bytes,
        modstamp=modstamp,
        updated_at=utcnow(),
    ).on_conflict_do_nothing()
    return bool(_rowcount(session.execute(stmt)))


def store_and_advance(
    session: Session, org_connection_id: int, events: Sequence[ChangeEvent]
) -> list[int]:
    """Store a delivery of stream events, then move each channel's cursor to its last one."""
    cursors = latest(events)
    if session.get_bind().dialect.name == "postgresql":
        moves = {
            "cursor_channels": pgarrays.text_array(list(cursors)),
            "cursor_replay_ids": pgarrays.bigint_array([ev.replay_id for ev in cursors.values()]),
            "cursor_modstamps": pgarrays.timestamptz_array(
                [ev.event_created_at for ev in cursors.values()]
            ),
        }
        return _store_postgresql(
            session.connection(), org_connection_id, events, _PG_REPLAY_CURSORS, moves
        )
    new_ids = store_events(session, org_connection_id, events)
    now = utcnow()
    cursor_moves: list[dict[str, Any]] = [
        {"org_connection_id": org_connection_id, "channel": channel, "replay_id": ev.replay_id,
         "modstamp": ev.event_created_at, "updated_at": now}
        for channel, ev in cursors.items()
    ]  # fmt: skip
    if cursor_moves:
        session.connection().execute(_move_replay_cursors(), cursor_moves)
    return new_ids


@functools.lru_cache(maxsize=1)
def _move_replay_cursors() -> Any:
    """SQLite: each channel's cursor to the delivery's last replay id, never back
    (advance_replay), as one upsert built once, the statement PostgreSQL runs: building an
    UPDATE for every delivery, and looking for the cursor when it moved nothing, cost the
    stream more than storing a small delivery's events."""
    c = _CURSORS.c
    move = sqlite.insert(_CURSORS)
    return move.on_conflict_do_update(
        index_elements=[c.org_connection_id, c.channel],
        set_={
            "replay_id": move.excluded.replay_id,
            "modstamp": move.excluded.modstamp,
            "updated_at": move.excluded.updated_at,
        },
        where=or_(c.replay_id.is_(None), c.replay_id < move.excluded.replay_id),
    )


def store_and_advance_bytes(
    session: Session,
    org_connection_id: int,
    channel: str,
    events: Sequence[ChangeEvent],
    replay_id: bytes,
    at: datetime | None,
) -> list[int]:
    """Store a Pub/Sub API delivery, then move the topic's cursor to its last replay id.

    Replay ids are opaque, so "never backwards" is judged by the commit time the cursor has
    (`at`, the delivery's last commitTimestamp): the cursor's upsert applies unless the
    stored cursor is at a later commit. A keepalive (no events, `at` None) moves only the replay id.
    """
    cursor_channel = PUBSUB_PREFIX + channel
    if session.get_bind().dialect.name == "postgresql":
        move = {
            "cursor_channel": cursor_channel,
            "replay_bytes": replay_id,
            "at": _STAMP.process_bind_param(at, None),
        }
        return _store_postgresql(
            session.connection(), org_connection_id, events, _PG_BYTES_CURSOR, move
        )
    new_ids = store_events(session, org_connection_id, events)
    cursor_move = {"org_connection_id": org_connection_id, "channel": cursor_channel,
                   "replay_bytes": replay_id, "modstamp": at, "updated_at": utcnow()}  # fmt: skip
    session.connection().execute(_move_bytes_cursor(), cursor_move)
    return new_ids


@functools.lru_cache(maxsize=1)
def _move_bytes_cursor() -> Any:
    """SQLite: a Pub/Sub topic's cursor, never back to an earlier commit; one upsert built
    once, the statement PostgreSQL runs (`_PG_BYTES_CURSOR`)."""
    c = _CURSORS.c
    move = sqlite.insert(_CURSORS)
    return move.on_conflict_do_update(
        index_elements=[c.org_connection_id, c.channel],
        set_={
            "replay_bytes": move.excluded.replay_bytes,
            "updated_at": move.excluded.updated_at,
            "modstamp": func.coalesce(move.excluded.modstamp, c.modstamp),
        },
        where=or_(
            move.excluded.modstamp.is_(None),
            c.modstamp.is_(None),
            c.modstamp <= move.excluded.modstamp,
        ),
    )


def pending_events(
    session: Session,
    *,
    new_before: datetime,
    claimed_before: datetime,
    limit: int = 5000,
) -> list[int]:
    """Events that should have been processed by now: still new, or claimed by a dead job.

    Two queries, one per state, each read through the (state, id) index in id order; an OR
    of the two made both databases scan the table."""
    waiting = select(InboundEvent.id).where(
        InboundEvent.state == "new",
        InboundEvent.received_at < new_before,
        or_(InboundEvent.queued_at.is_(None), InboundEvent.queued_at < new_before),
    )
    stale = select(InboundEvent.id).where(
        InboundEvent.state == "processing", InboundEvent.claimed_at < claimed_before
    )
    ids: list[int] = []
    for query in (waiting, stale):
        ids += session.scalars(query.order_by(InboundEvent.id).limit(limit))
    return sorted(ids)[:limit]


def mark_queued(session: Session, ids: Iterable[int]) -> None:
    ids = list(ids)
    for start in range(0, len(ids), _CHUNK):
        session.execute(
            update(InboundEvent)
            .where(InboundEvent.id.in_(ids[start : start + _CHUNK]))
            .values(queued_at=utcnow())
            .execution_options(synchronize_session=False)
        )
