"""Lead routing: whether, when and to whom a referral goes to Salesforce. Pure.

Signals' model, in three questions answered in order:

1. **Whether** (`verdict`): a person is sent automatically only when their score meets the
   configured minimum (Signals' stars: 0 = all, 1-3 = one to three stars, or any number) and
   the integration's outbound direction is on. A manual sync skips the criteria and the delay.
2. **When**: after the synchronization delay, counted from the moment the person qualified —
   or from when the conversation closed, when the input says there is one. The answer is a due
   time for the store, never a sleep, so it survives restarts; changes made during the delay go
   out together at that time.
3. **To whom** (`lead_owner`, `account_owner`): the owner of a new Lead is the first available
   of the people who touched the conversation, in Signals' order — the user whose calendar the
   meeting was booked on, the user last routed into the conversation, the user who closed it —
   each switchable, each only if it maps to an active Salesforce user; otherwise the configured
   fallback (never silently the integration user). Account ownership rules pick the owner from
   an Account user field ("then by" a second field) for the first segment the Account matches.
4. **The referral's owner** (`record_owner`): one owner rep per person (`Referral.owner`), and
   OwnerId flows from it on create and on update. An explicit owner — given to the API or
   named by a sale or demo — wins; routing (account rules, then the priority above) answers
   only for a new record whose owner is not (or not usably) set, and its choice becomes the
   referral's owner for later sends.

Every answer carries its reason in words, so "why wasn't this sent?" has an answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from bridge.values import is_blank, same_value

# ---- whether and when ----------------------------------------------------------------------

State = Literal["send", "wait", "below_criteria", "paused"]


@dataclass(frozen=True)
class Criteria:
    minimum_score: float = 0  # 0 sends everyone ("all"); Signals' stars are 1, 2 and 3
    delay: timedelta = timedelta(0)


@dataclass(frozen=True)
class Person:
    score: float | None
    qualified_at: datetime | None  # when the score first met the minimum (None: not yet)
    conversation_closed_at: datetime | None = None


@dataclass(frozen=True)
class Verdict:
    state: State
    reason: str
    due_at: datetime | None = None  # when `wait`: the time it goes


def meets(criteria: Criteria, score: float | None) -> bool:
    return criteria.minimum_score <= 0 or (score is not None and score >= criteria.minimum_score)


def verdict(
    person: Person, criteria: Criteria, now: datetime, *, outbound_on: bool = True,
    manual: bool = False,
) -> Verdict:  # fmt: skip
    """Send now, wait until a due time, or stay local — with the reason in words."""
    if not outbound_on:
        return Verdict("paused", "the integration's outbound direction is off")
    if manual:
        return Verdict("send", "sent by hand (criteria and delay do not apply)")
    if not meets(criteria, person.score):
        score = "no score" if person.score is None else f"score {person.score:g}"
        return Verdict(
            "below_criteria", f"{score} is below the minimum of {criteria.minimum_score:g}"
        )
    start = person.conversation_closed_at or person.qualified_at or now
    due = start + criteria.delay
    if due > now:
        since = "the conversation closed" if person.conversation_closed_at else "qualifying"
        until = due.isoformat(timespec="minutes")
        return Verdict("wait", f"waiting {criteria.delay} after {since}, until {until}", due)
    return Verdict("send", "meets the criteria and the delay has passed")


# ---- to whom -------------------------------------------------------------------------------

OwnerSource = Literal["owner", "meeting", "routed", "closed", "account_rule", "fallback"]
OWNER_ORDER: tuple[OwnerSource, ...] = ("meeting", "routed", "closed")
_WHO = {
    "meeting": "the user whose calendar the meeting was booked on",
    "routed": "the user last routed into the conversation",
    "closed": "the user who closed the conversation",
}


@dataclass(frozen=True)
class Touches:
    """The bridge's users (reps) who touched the conversation, by role."""

    meeting: str | None = None
    routed: str | None = None
    closed: str | None = None


@dataclass(frozen=True)
class OwnerChoice:
    user_id: str | None  # the Salesforce user; None: unresolved
    source: OwnerSource | None
    reason: str
    passed_over: tuple[str, ...] = ()  # why each earlier option did not win, in words


def lead_owner(
    touches: Touches,
    users: Mapping[str, str | None],
    *,
    enabled: Sequence[OwnerSource] = OWNER_ORDER,
    fallback: str | None = None,
) -> OwnerChoice:
    """The owner of a new Lead. `users` maps a rep to their active Salesforce user (None when
    the rep is unmapped or the user inactive); `enabled` lists the options switched on."""
    passed: list[str] = []
    for source in OWNER_ORDER:
        rep = getattr(touches, source)
        if source not in enabled:
            passed.append(f"{source}: switched off")
        elif rep is None:
            passed.append(f"{source}: nobody")
        elif users.get(rep) is None:
            passed.append(f"{source}: {rep} maps to no active Salesforce user")
        else:
            return OwnerChoice(users[rep], source, f"{_WHO[source]} ({rep})", tuple(passed))
    if fallback:
        return OwnerChoice(fallback, "fallback", "the configured fallback user", tuple(passed))
    return OwnerChoice(None, None, "no owner: no option applied and no fallback user is set",
                       tuple(passed))  # fmt: skip


Op = Literal["equals", "not_equals", "in", "gte", "lt", "blank", "not_blank"]


@dataclass(frozen=True)
class Condition:
    field: str
    op: Op
    value: Any = None

    def holds(self, record: Mapping[str, Any]) -> bool:
        actual = record.get(self.field)
        if self.op == "blank":
            return is_blank(actual)
        if self.op == "not_blank":
            return not is_blank(actual)
        if self.op == "equals":
            return same_value(actual, self.value)
        if self.op == "not_equals":
            return not same_value(actual, self.value)
        if self.op == "in":
            return any(same_value(actual, v) for v in self.value)
        if actual is None or is_blank(actual):
            return False
        try:
            number, limit = float(actual), float(self.value)
        except (TypeError, ValueError):
            return False
        return number >= limit if self.op == "gte" else number < limit


@dataclass(frozen=True)
class AccountRule:
    name: str
    segment: tuple[Condition, ...]  # all must hold; empty matches every Account
    owner_field: str  # an Account user field, e.g. OwnerId or a custom lookup to User
    then_by: str | None = None  # used when owner_field is empty
    fallback: str | None = None  # when the owner found is not a mapped rep


@dataclass(frozen=True)
class AccountRules:
    rules: tuple[AccountRule, ...] = ()
    no_segment_fallback: str | None = None  # for companies matching no segment
    mapped_users: frozenset[str] = field(default_factory=frozenset)  # active, mapped reps


def account_owner(account: Mapping[str, Any], rules: AccountRules) -> OwnerChoice:
    """The owner for people sent for this Account, by the first rule whose segment it is in."""
    for rule in rules.rules:
        if not all(c.holds(account) for c in rule.segment):
            continue
        candidates = [(rule.owner_field, account.get(rule.owner_field))]
        if rule.then_by:
            candidates.append((rule.then_by, account.get(rule.then_by)))
        passed: list[str] = []
        for fld, user in candidates:
            if is_blank(user):
                passed.append(f"{fld} is empty")
            elif user not in rules.mapped_users:
                passed.append(f"{fld} ({user}) is not a mapped rep")
            else:
                return OwnerChoice(str(user), "account_rule", f"{rule.name}: {fld}", tuple(passed))
        if rule.fallback:
            return OwnerChoice(rule.fallback, "fallback", f"{rule.name}: its fallback user",
                               tuple(passed))  # fmt: skip
        return OwnerChoice(None, None, f"{rule.name}: no owner and no fallback user",
                           tuple(passed))  # fmt: skip
    if rules.no_segment_fallback:
        return OwnerChoice(rules.no_segment_fallback, "fallback",
                           "in no segment: the fallback user for other companies")  # fmt: skip
    return OwnerChoice(None, None, "in no segment, and no fallback user is set")


def record_owner(
    owner: str | None,
    users: Mapping[str, str | None],
    *,
    new: bool,
    route: Callable[[tuple[str, ...]], OwnerChoice] | None,
) -> OwnerChoice | None:
    """The OwnerId of a write for a person whose owner rep is `owner`. Precedence: the
    explicit owner when it maps to an active Salesforce user (create or update); else, for a
    `new` record only, routing's choice (`route`, given why the owner was passed over);
    else None — the record's OwnerId is left as it is (Salesforce's assignment on create)."""
    passed: tuple[str, ...] = ()
    if owner is not None:
        if users.get(owner):
            return OwnerChoice(users[owner], "owner", f"the referral's owner ({owner})")
        passed = (f"owner: {owner} maps to no active Salesforce user",)
    if not new or route is None:
        return None
    return route(passed)
