"""Two-way field sync over time (pure: no I/O): what a Salesforce change does to local fields,
and what a local change sends to Salesforce, mapping by mapping.

The write at the moment a referral is added is `mapping.plan_fields`; this module keeps the
rules holding afterwards, in both directions:

=========================  ==================================  ===============================
rule                       a Salesforce change                 a local change
=========================  ==================================  ===============================
``read_only``              sets the local field (a cleared     is not sent
                           value clears it, with ``override``)
``read_write``             sets it unless the local change is  is sent
                           newer (recency decides a conflict)
``salesforce_unless_blank`` sets it when Salesforce has a      is sent only into a blank
                           value                               Salesforce field
``ours``                   is ignored                          is sent
``none``                   is ignored                          is not sent
=========================  ==================================  ===============================

``read_write`` conflicts: a Salesforce value that differs from ours *and* from what we last saw
of the record is a Salesforce edit. It wins when the record's SystemModstamp is at or after
the local field's last change (or the local field never changed here); otherwise the local
value wins and is written back. Either way the losing value is reported (`Conflict`) for the
referral's history. A Salesforce value we have already seen (the record changed elsewhere) or
equal to ours (our own write coming back) is no conflict, so echoes never flap a field; a
blank Salesforce value never clears a ``read_write`` field (as a blank local value never
clears Salesforce).

Local field names: referral attributes and `fields` keys (``company``, ``plan``), and the
referring member's attributes as ``member.<attribute>`` (``member.email``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from bridge.config import FieldMapping
from bridge.writeback.mapping import is_blank, plan_fields

MEMBER_PREFIX = "member."

_UNSEEN = object()


@dataclass(frozen=True)
class Conflict:
    """A ``read_write`` field both sides changed: which won, the value kept and the one lost."""

    local: str
    winner: Literal["salesforce", "local"]
    kept: Any
    lost: Any


@dataclass(frozen=True)
class InboundPlan:
    """What one Salesforce change does: local fields to set, Salesforce fields to write back
    (the local value won a conflict), and the conflicts."""

    local_updates: dict[str, Any] = field(default_factory=dict)
    writes: dict[str, Any] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)


def _same(a: Any, b: Any) -> bool:
    if is_blank(a) and is_blank(b):
        return True
    if isinstance(a, str) and isinstance(b, str):
        return a.strip() == b.strip()
    return bool(a == b)


def _first_value(record: Mapping[str, Any], names: Sequence[str]) -> Any:
    """The first non-blank of `names` in `record`; None if all blank; _UNSEEN if none read."""
    known = [n for n in names if n in record]
    if not known:
        return _UNSEEN
    return next((record[n] for n in known if not is_blank(record[n])), None)


def inbound(
    local: Mapping[str, Any],
    changed_at: Mapping[str, datetime],
    record: Mapping[str, Any],
    previous: Mapping[str, Any],
    modstamp: datetime | None,
    mappings: Sequence[FieldMapping],
) -> InboundPlan:
    """The local updates a Salesforce change makes.

    `local`: the local values by local name; `changed_at`: when each local field last changed
    here (absent: never since it was created); `record`: the Salesforce record as the change
    carries it; `previous`: the record as we last saw it ({} if never); `modstamp`: the
    record's SystemModstamp. A Salesforce field absent from `record` was not read: its
    mapping does nothing. When two mappings read one local field, the first listed wins.
    """
    updates: dict[str, Any] = {}
    writes: dict[str, Any] = {}
    conflicts: list[Conflict] = []
    done: set[str] = set()
    for m in mappings:
        if m.sync in ("ours", "none") or m.local in done:
            continue
        theirs = _first_value(record, m.salesforce)
        if theirs is _UNSEEN:
            continue
        done.add(m.local)
        ours = local.get(m.local)
        if _same(ours, theirs):
            continue
        if m.sync in ("read_only", "salesforce_unless_blank"):
            if is_blank(theirs) and (
                m.sync == "salesforce_unless_blank" or m.strategy != "override"
            ):
                continue
            if m.strategy == "if_empty" and not is_blank(ours):
                continue
            updates[m.local] = None if is_blank(theirs) else theirs
            continue
        # read_write
        if is_blank(theirs):
            continue
        if is_blank(ours):
            updates[m.local] = theirs
            continue
        if m.strategy == "if_empty":
            continue
        before = _first_value(previous, m.salesforce)
        if before is not _UNSEEN and _same(before, theirs):
            continue  # not a Salesforce edit of this field: the record changed elsewhere
        local_at = changed_at.get(m.local)
        if local_at is None or modstamp is None or modstamp >= local_at:
            updates[m.local] = theirs
            conflicts.append(Conflict(m.local, "salesforce", kept=theirs, lost=ours))
        else:
            conflicts.append(Conflict(m.local, "local", kept=ours, lost=theirs))
            for name in m.salesforce:
                writes.setdefault(name, ours)
    return InboundPlan(local_updates=updates, writes=writes, conflicts=conflicts)


def outbound(
    changed: Mapping[str, Any],
    current: Mapping[str, Any] | None,
    mappings: Sequence[FieldMapping],
) -> dict[str, Any]:
    """The Salesforce fields a local change writes onto an existing record.

    `changed`: the changed local fields with their new values; `current`: the record's
    Salesforce values as last seen (None or missing fields: not known, treated as blank).
    Only mappings of the changed fields take part; the rules and strategies are those of the
    first write (`mapping.plan_fields`), so ``read_only`` and ``none`` never write and a blank
    local value never clears Salesforce.
    """
    relevant = [m for m in mappings if m.local in changed]
    return plan_fields(changed, current or {}, relevant).writes
