"""The inbox stores each change once and its cursors only move forward (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, func, select

from bridge.store import Store
from bridge.store.models import InboundEvent, SyncCursor
from bridge.streaming import inbox
from bridge.streaming.events import ChangeEvent, from_bayeux, from_polled_record
from tests import factories
from tests.factories import pushtopic_message
from tests.roundtrips import traced

LEAD = "00Q000000000001AAA"


def streamed(
    replay_id: int, modstamp: str, record_id: str = LEAD, channel: str = "/topic/SFB_Lead"
) -> ChangeEvent:
    record = {"Id": record_id, "SystemModstamp": modstamp}
    return from_bayeux(pushtopic_message(channel, replay_id, record), {})[0]


def count(store: Store) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(InboundEvent)) or 0)


def cursor(store: Store, org_id: int, channel: str) -> SyncCursor | None:
    with store.session() as session:
        return inbox.get_cursor(session, org_id, channel)


def test_replayed_and_polled_duplicates_are_absorbed(store: Store, org_id: int) -> None:
    first = [streamed(1, "2026-01-05T10:00:00.001Z"), streamed(2, "2026-01-05T10:00:00.002Z")]
    with store.session() as s:
        ids = inbox.store_and_advance(s, org_id, first)
    assert len(ids) == 2
    # The same delivery again (replay after a restart), and polling seeing both changes.
    polled = [
        from_polled_record("Lead", {"Id": LEAD, "SystemModstamp": m}, "poll:Lead")
        for m in ("2026-01-05T10:00:00.001Z", "2026-01-05T10:00:00.002Z")
    ]
    with store.session() as s:
        assert inbox.store_and_advance(s, org_id, first) == []
        assert inbox.store_events(s, org_id, polled) == []
    assert count(store) == 2
    # A new change is stored.
    with store.session() as s:
        assert len(inbox.store_events(s, org_id, [streamed(3, "2026-01-05T10:00:01.000Z")])) == 1
    assert count(store) == 3


def test_the_cursor_never_moves_back(store: Store, org_id: int) -> None:
    ch = "/topic/SFB_Lead"
    with store.session() as s:
        inbox.store_and_advance(s, org_id, [streamed(10, "2026-01-05T10:00:00.010Z")])
    assert cursor(store, org_id, ch).replay_id == 10  # type: ignore[union-attr]
    with store.session() as s:
        # An older event replayed later: stored if new, but the cursor stays.
        assert inbox.store_and_advance(s, org_id, [streamed(4, "2026-01-05T09:00:00.000Z")])
        assert inbox.advance_replay(s, org_id, ch, 9) is False
        assert inbox.advance_replay(s, org_id, ch, 11) is True
    assert cursor(store, org_id, ch).replay_id == 11  # type: ignore[union-attr]


def test_cursor_of_a_delivery_is_its_highest_replay_id(store: Store, org_id: int) -> None:
    events = [streamed(r, f"2026-01-05T10:00:00.{r:03d}Z") for r in (5, 8, 6)]
    with store.session() as s:
        inbox.store_and_advance(s, org_id, events)
    row = cursor(store, org_id, "/topic/SFB_Lead")
    assert row is not None and row.replay_id == 8
    assert row.modstamp == datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def test_events_and_cursor_commit_together(store: Store, org_id: int) -> None:
    with pytest.raises(RuntimeError), store.session() as s:
        inbox.store_and_advance(s, org_id, [streamed(20, "2026-01-05T10:00:00.020Z")])
        raise RuntimeError("crash before commit")
    assert count(store) == 0
    assert cursor(store, org_id, "/topic/SFB_Lead") is None


def test_poll_cursor_moves_forward_only(store: Store, org_id: int) -> None:
    t1 = datetime(2026, 1, 5, 10, tzinfo=UTC)
    t0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
    with store.session() as s:
        assert inbox.advance_modstamp(s, org_id, "poll:Lead", t1)
        assert not inbox.advance_modstamp(s, org_id, "poll:Lead", t0)
    assert cursor(store, org_id, "poll:Lead").modstamp == t1  # type: ignore[union-attr]


def test_pubsub_replay_ids_are_stored_as_bytes_and_never_move_back(
    store: Store, org_id: int
) -> None:
    topic = "/data/LeadChangeEvent"
    channel = inbox.PUBSUB_PREFIX + topic
    t1, t2 = datetime(2026, 1, 5, 10, 0, 1, tzinfo=UTC), datetime(2026, 1, 5, 10, 0, 2, tzinfo=UTC)
    opaque = b"\x00\xff\x00\x10\x80"  # any bytes: not a number, not text
    events = [streamed(1, "2026-01-05T10:00:01.000Z")]
    with store.session() as s:
        assert len(inbox.store_and_advance_bytes(s, org_id, topic, events, opaque, t2)) == 1
    row = cursor(store, org_id, channel)
    assert row is not None and bytes(row.replay_bytes or b"") == opaque
    assert row.replay_id is None and row.modstamp == t2
    # an older delivery (two subscribers overlapping) does not move it back
    with store.session() as s:
        inbox.store_and_advance_bytes(s, org_id, topic, [], b"\x01", t1)
    assert bytes(cursor(store, org_id, channel).replay_bytes or b"") == opaque  # type: ignore[union-attr]
    # a keepalive (no commit time) moves the replay id only
    with store.session() as s:
        inbox.store_and_advance_bytes(s, org_id, topic, [], b"\x02\x00", None)
    row = cursor(store, org_id, channel)
    assert row is not None and bytes(row.replay_bytes or b"") == b"\x02\x00" and row.modstamp == t2
    # the Bayeux cursor of the same channel name is another row
    assert cursor(store, org_id, topic) is None


def test_a_delivery_is_one_statement_and_three_round_trips_on_postgresql(
    postgres_store: Store,
) -> None:
    """BEGIN, one statement (the events and every channel's cursor), COMMIT, whatever the
    delivery's size, and the same statement text for every size (psycopg converts it once,
    the server prepares it once): a multi-row VALUES was a new 57 KB text per size."""
    with postgres_store.session() as s:
        org_id = factories.connected_org(s).id
    statements: list[str] = []

    def on_statement(_conn: Any, _cur: Any, statement: str, *_a: Any) -> None:
        statements.append(statement)

    other = "/topic/SFB_Contact"
    sizes = (1, 250, 7)
    replay = 0
    event.listen(postgres_store.engine, "before_cursor_execute", on_statement)
    try:
        with traced(postgres_store) as trips:
            for size in sizes:
                delivery = [
                    streamed(
                        replay + i, f"2026-01-05T10:00:00.{i % 1000:03d}Z", f"00Q{replay + i:015d}"
                    )
                    for i in range(1, size + 1)
                ] + [
                    streamed(
                        replay + size + 1, "2026-01-05T11:00:00.000Z", f"003{replay:015d}", other
                    )
                ]
                replay += size + 1
                with postgres_store.session() as s:
                    assert len(inbox.store_and_advance(s, org_id, delivery)) == size + 1
    finally:
        event.remove(postgres_store.engine, "before_cursor_execute", on_statement)
    assert len(statements) == len(sizes) and len(set(statements)) == 1
    assert trips.round_trips == 3 * len(sizes)
    assert trips.commands == ["BEGIN", "COMMIT"] * len(sizes)
    assert count(postgres_store) == sum(sizes) + len(sizes)
    assert cursor(postgres_store, org_id, "/topic/SFB_Lead").replay_id == replay - 1  # type: ignore[union-attr]
    assert cursor(postgres_store, org_id, other).replay_id == replay  # type: ignore[union-attr]
