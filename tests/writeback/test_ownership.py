"""Ownership sync's pure rules: which events count as future ones, and an OwnerId change
taken or refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.writeback.ownership import Scheduled, demo_times, future_events, owner_change

NOW = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
D1 = datetime(2026, 12, 9, 14, 0, tzinfo=UTC)
D2 = datetime(2026, 12, 11, 9, 30, tzinfo=UTC)
PAST = NOW - timedelta(days=1)
A, B, C = "005000000000001AAA", "005000000000002AAA", "005000000000003AAA"
USERS = {"alice": A, "bob": B, "gone": None}


@pytest.mark.parametrize(
    ("events", "booked"),
    [
        ([], []),
        ([("set", D1)], [D1]),
        ([("set", D1), ("rescheduled", D2)], [D2]),
        ([("set", D1), ("cancelled", D1)], []),
        ([("set", D1), ("set", D2)], [D1, D2]),
        ([("set", D1), ("set", D2), ("cancelled", D2)], [D1]),
        ([("rescheduled", D2)], [D2]),  # a move of a demo set elsewhere books it
        ([("cancelled", D1)], []),
    ],
)
def test_demo_events_replay_into_booked_demos(
    events: list[tuple[str, datetime]], booked: list[datetime]
) -> None:
    assert demo_times(events) == booked


def test_only_events_after_now_count_soonest_first() -> None:
    call = Scheduled("call", D1 - timedelta(hours=1))
    got = future_events([("set", D2), ("set", PAST)], [call, Scheduled("meeting", PAST)], NOW)
    assert got == [call, Scheduled("demo", D2)]


FUTURE = [Scheduled("demo", D1), Scheduled("meeting", D2)]


@pytest.mark.parametrize(
    ("new", "before", "local", "future", "expect"),
    [
        # a change with no future events is taken: the local owner follows the user
        (B, A, "alice", [], (True, "bob", "owner alice -> bob")),
        (C, A, "alice", [], (True, None, f"owner {C} is no rep's user (users:): owner unset")),
        (B, None, "alice", [], (True, "bob", "owner alice -> bob")),  # never seen: vs ours
        (B[:15], A, "alice", [], (True, "bob", "owner alice -> bob")),  # 15-char ids
        # future events: refused, the owner stays
        (
            B,
            A,
            "alice",
            FUTURE,
            (
                False,
                "bob",
                "2 future events, first demo 2026-12-09 14:00 UTC; the owner stays alice",
            ),
        ),
        (
            C,
            None,
            "alice",
            FUTURE[1:],
            (
                False,
                None,
                "1 future event, first meeting 2026-12-11 09:30 UTC; the owner stays alice",
            ),
        ),
        # no change
        (A, A, "alice", FUTURE, None),
        (A[:15], A, "bob", FUTURE, None),  # the user last seen (15- and 18-character ids)
        (A, None, "alice", FUTURE, None),  # never seen, and already ours
        (B, A, "bob", FUTURE, None),  # the local owner's user: our own OwnerId write echoed
        (None, A, "alice", FUTURE, None),  # OwnerId not read
        # first seen with no owner here: a rep's user is adopted, others leave it unset
        (B, None, None, FUTURE, (True, "bob", "owner bob (first seen)")),
        (C, None, None, FUTURE, None),
    ],
)
def test_owner_change_taken_or_refused(
    new: str | None,
    before: str | None,
    local: str | None,
    future: list[Scheduled],
    expect: tuple[bool, str | None, str] | None,
) -> None:
    got = owner_change(
        new_user=new, before_user=before, local_owner=local, users=USERS, future=future
    )
    if expect is None:
        assert got is None
        return
    assert got is not None
    assert (got.accepted, got.rep, got.reason) == expect
