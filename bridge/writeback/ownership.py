"""Ownership sync (pure: no I/O): a Salesforce change of a Lead's or Contact's OwnerId is
taken unless the person has future specific-time events, Sellfire's rule that a rep who has a
demo or a callback booked with someone keeps them.

**What counts as a future event** (`future_events`): the referral's demo, replayed from its
events in order (`set` books one, `rescheduled` moves the latest booked one, `cancelled`
removes it) when its time is after now; and each of its activities written as a Salesforce
Event (a meeting, or a call mapped to Event: a callback with a time) starting after now. A
Task has a day, not a time: it does not count.

An owner change taken makes the local owner the rep whose mapped Salesforce user the new
OwnerId is (`users:`); a user no rep maps to leaves the local owner unset, with the reason.
A change refused keeps the local owner, and the reviewers are told.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

OWNER = "owner"
"""The local name of the owner rep (a referral column)."""


@dataclass(frozen=True)
class Scheduled:
    """A future event with the person: what it is (`demo`, `meeting`, `call`) and when."""

    kind: str
    at: datetime


def demo_times(events: Sequence[tuple[str, datetime]]) -> list[datetime]:
    """The demos booked, from the referral's demo events oldest first (state, time)."""
    booked: list[datetime] = []
    for state, at in events:
        if state == "set":
            booked.append(at)
        elif state == "rescheduled":
            if booked:
                booked[-1] = at
            else:
                booked.append(at)
        elif state == "cancelled" and booked:
            booked.pop()
    return booked


def future_events(
    demos: Sequence[tuple[str, datetime]], activities: Sequence[Scheduled], now: datetime
) -> list[Scheduled]:
    """The person's events after `now`, soonest first."""
    out = [Scheduled("demo", at) for at in demo_times(demos) if at > now]
    out += [a for a in activities if a.at > now]
    return sorted(out, key=lambda e: e.at)


@dataclass(frozen=True)
class OwnerChange:
    """A Salesforce owner change: taken (`rep` is the new local owner, None when no rep maps
    to the user) or refused; `reason` in words either way (for a refusal, what follows
    "owner change refused: ")."""

    accepted: bool
    user_id: str
    rep: str | None
    reason: str


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def owner_change(
    *,
    new_user: str | None,
    before_user: str | None,
    local_owner: str | None,
    users: Mapping[str, str | None],
    future: Sequence[Scheduled],
) -> OwnerChange | None:
    """Judge the record's OwnerId. It is a change when it differs from the OwnerId last seen
    (or, never seen before, from the local owner's user); None when it is no change. `users`
    is the user mapping as resolved (rep -> active user id)."""
    if not new_user:
        return None
    ours = users.get(local_owner) if local_owner else None
    if ours and _same_user(new_user, ours):
        return None  # Salesforce has the local owner's user: our own write coming back
    same = _same_user(new_user, before_user) if before_user else _same_user(new_user, ours)
    rep = next((r for r, u in users.items() if u and _same_user(u, new_user)), None)
    if not before_user and not local_owner:  # first seen, no owner here: adopt a rep's user
        return OwnerChange(True, new_user, rep, f"owner {rep} (first seen)") if rep else None
    if same:
        return None
    if future:
        first = future[0]
        events = f"{len(future)} future event{'s' if len(future) > 1 else ''}"
        return OwnerChange(
            False, new_user, rep,
            f"{events}, first {first.kind} {_when(first.at)}; "
            f"the owner stays {local_owner or 'unset'}",
        )  # fmt: skip
    if rep is None:
        return OwnerChange(
            True, new_user, None, f"owner {new_user} is no rep's user (users:): owner unset"
        )
    return OwnerChange(True, new_user, rep, f"owner {local_owner or 'unset'} -> {rep}")


def _same_user(a: str | None, b: str | None) -> bool:
    """Salesforce ids compare by their first 15 characters (18-character ids add a suffix)."""
    return bool(a and b and a[:15] == b[:15])
